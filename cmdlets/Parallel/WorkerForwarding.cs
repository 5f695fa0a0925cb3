using System.Management.Automation;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>Passes a worker's errors, warnings and messages on to the cmdlet's streams, marked with the worker's rank.</summary>
internal static class WorkerForwarding
{
    /// <summary>Writes <paramref name="e"/> if it is an error or message; false for other events.</summary>
    public static bool TryForward(Cmdlet cmdlet, WorkerEvent e)
    {
        var tag = $"[rank {e.Worker.Rank}]";
        switch (e)
        {
            case WorkerError { Record: var r }:
                cmdlet.WriteError(new ErrorRecord(r, null) { ErrorDetails = new ErrorDetails($"{tag} {r.ErrorDetails?.Message ?? r.Exception?.Message ?? r.ToString()}") });
                return true;
            case WorkerMessage { Record: WarningRecord w }:
                cmdlet.WriteWarning($"{tag} {w.Message}");
                return true;
            case WorkerMessage { Record: VerboseRecord v }:
                cmdlet.WriteVerbose($"{tag} {v.Message}");
                return true;
            case WorkerMessage { Record: DebugRecord d }:
                cmdlet.WriteDebug($"{tag} {d.Message}");
                return true;
            case WorkerMessage { Record: InformationRecord i }:
                cmdlet.WriteInformation(i);
                return true;
            default:
                return false;
        }
    }

    /// <summary>The error for a worker that failed: its rank, device, process id, exit code and the worker's own error.</summary>
    public static ErrorRecord WorkerFailed(WorkerFailure failure, string? consequence = null)
    {
        var exit = failure.ExitCode is int code ? $" (exit code {code})" : "";
        var reason = failure.Message.TrimEnd();
        if (!reason.EndsWith('.')) reason += ".";
        var message = $"Worker rank {failure.ProcessRank} ({failure.Device}{(failure.ProcessId is int pid ? $", pid {pid}" : "")}) failed{exit}: {reason}" +
                      (consequence is null ? "" : $" {consequence}");
        return new ErrorRecord(new InvalidOperationException(message), "ParallelWorkerFailed",
            failure.ProcessDied ? ErrorCategory.OperationStopped : ErrorCategory.InvalidResult, failure)
        {
            ErrorDetails = new ErrorDetails(message),
        };
    }
}
