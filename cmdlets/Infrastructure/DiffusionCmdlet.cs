using System.Management.Automation;
using Diffusion.Engine;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// Base of every cmdlet: loads the torch backend on first use and turns engine errors into ErrorRecords with
/// stable ids and categories.
/// </summary>
public abstract class DiffusionCmdlet : PSCmdlet
{
    protected void EnsureBackendOrThrow() => Run(() => TorchBackend.EnsureLoaded());

    /// <summary>Passes engine warnings to the user.</summary>
    protected Action<Diffusion.Engine.Pipelines.PipelineWarning> Warn => w => WriteWarning(w.Message);

    /// <summary>Ctrl+C between steps: stop cleanly.</summary>
    internal void StopIfAsked()
    {
        if (Stopping) throw new PipelineStoppedException();
    }

    internal T RunEngine<T>(Func<T> func) => Run(func);

    /// <summary>
    /// An output path template ({index:0000}, {seed}, {prompt}, {rank}) resolved against PowerShell's current location
    /// and drives. The placeholders are set aside while the path is resolved: PowerShell would read 'out/{index' of
    /// 'out/{index:0000}.png' as a drive name.
    /// </summary>
    internal string ResolveTemplatePath(string template)
    {
        var placeholders = new List<string>();
        var masked = System.Text.RegularExpressions.Regex.Replace(template, @"\{[^{}]*\}", m =>
        {
            placeholders.Add(m.Value);
            return $"DiffusionPlaceholder{placeholders.Count - 1}Z";
        });
        var resolved = GetUnresolvedProviderPathFromPSPath(masked);
        for (int i = 0; i < placeholders.Count; i++) resolved = resolved.Replace($"DiffusionPlaceholder{i}Z", placeholders[i], StringComparison.Ordinal);
        return resolved;
    }

    private readonly CancellationTokenSource _stop = new();

    /// <summary>Cancelled by Ctrl+C (StopProcessing); engine calls that take it stop at their next check and free what they built.</summary>
    internal CancellationToken StopToken => _stop.Token;

    /// <summary>Ctrl+C: cancels <see cref="StopToken"/>. Cmdlets that override this call the base too.</summary>
    protected override void StopProcessing() => _stop.Cancel();

    /// <summary>
    /// Runs an engine call; a DiffusionException becomes a terminating ErrorRecord, and so does a libtorch failure the
    /// engine did not name a stage for (as NativeError / OutOfMemory of this cmdlet).
    /// </summary>
    protected void Run(Action action) => Run<object?>(() => { action(); return null; });

    protected T Run<T>(Func<T> func)
    {
        try { return func(); }
        catch (DiffusionException e) { ThrowTerminatingError(ToErrorRecord(e, null)); throw; }
        catch (OperationCanceledException) when (Stopping || _stop.IsCancellationRequested) { throw new PipelineStoppedException(); }
        catch (Exception e) when (NativeFailure.IsNative(e)) { ThrowTerminatingError(ToErrorRecord(NativeFailure.From(e, MyInvocation.MyCommand.Name), null)); throw; }
    }

    /// <summary>
    /// Runs an engine call for one input item: a DiffusionException (or a libtorch failure) becomes a non-terminating
    /// error for that item, so -ErrorAction and -ErrorVariable apply and the next items go on; false comes back then.
    /// Ctrl+C still stops the command. <paramref name="target"/> null: the error's own target.
    /// </summary>
    internal bool TryRun<T>(Func<T> func, object? target, out T result)
    {
        try
        {
            result = func();
            return true;
        }
        catch (DiffusionException e) { WriteError(ToErrorRecord(e, target)); }
        catch (OperationCanceledException) when (Stopping || _stop.IsCancellationRequested) { throw new PipelineStoppedException(); }
        catch (Exception e) when (NativeFailure.IsNative(e)) { WriteError(ToErrorRecord(NativeFailure.From(e, MyInvocation.MyCommand.Name), target)); }
        result = default!;
        return false;
    }

    /// <summary>
    /// Writes a copy of a progress record that the caller goes on updating: a caller that keeps the records it gets
    /// (PowerShell.Streams.Progress, a remoting client) sees each state as it was, not the last one repeated.
    /// </summary>
    internal void WriteProgressSnapshot(ProgressRecord r) =>
        WriteProgress(new ProgressRecord(r.ActivityId, r.Activity, r.StatusDescription)
        {
            ParentActivityId = r.ParentActivityId, PercentComplete = r.PercentComplete, SecondsRemaining = r.SecondsRemaining,
            CurrentOperation = r.CurrentOperation, RecordType = r.RecordType,
        });

    /// <summary>Writes a non-terminating error for one input object and lets the pipeline go on.</summary>
    protected void WriteEngineError(DiffusionException e, object? target) => WriteError(ToErrorRecord(e, target));

    internal static ErrorRecord ToErrorRecord(DiffusionException e, object? target) =>
        new(e, e.ErrorId, Category(e.Kind), target ?? e.Target)
        {
            ErrorDetails = new ErrorDetails(e.Message),
        };

    /// <summary>The error record of a cmdlet-side argument problem (a missing folder is ObjectNotFound, the rest InvalidArgument).</summary>
    internal static ErrorRecord ArgumentError(string errorId, string message, object? target, ErrorCategory category = ErrorCategory.InvalidArgument) =>
        new(new ArgumentException(message), errorId, category, target)
        {
            ErrorDetails = new ErrorDetails(message),
        };

    private static ErrorCategory Category(DiffusionErrorKind kind) => kind switch
    {
        DiffusionErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
        DiffusionErrorKind.ObjectNotFound => ErrorCategory.ObjectNotFound,
        DiffusionErrorKind.InvalidData => ErrorCategory.InvalidData,
        DiffusionErrorKind.NotSupported => ErrorCategory.NotImplemented,
        DiffusionErrorKind.ResourceUnavailable => ErrorCategory.ResourceUnavailable,
        DiffusionErrorKind.OperationStopped => ErrorCategory.OperationStopped,
        _ => ErrorCategory.InvalidOperation,
    };
}
