using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Cmdlets.Parallel;
using Diffusion.Engine;
using Diffusion.Engine.Devices;

namespace Diffusion.Cmdlets;

/// <summary>
/// The PowerShell `accelerate launch`: starts worker pwsh processes with RANK, WORLD_SIZE and LOCAL_RANK set (one
/// device each), runs the same script in each, shows one progress view with a bar per rank, and outputs the workers'
/// objects in rank order. A failed worker is reported with its rank and error; the others' results are kept. Ctrl+C
/// kills every worker and its children.
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "DiffusionParallel", DefaultParameterSetName = ScriptBlockSet)]
[OutputType(typeof(PSObject))]
public sealed class StartDiffusionParallelCommand : DiffusionCmdlet
{
    private const string ScriptBlockSet = "ScriptBlock";
    private const string FilePathSet = "FilePath";

    /// <summary>
    /// Runs in every worker, in the module's session: the user's script file (a script block is written to one by this
    /// process, which deletes it afterwards however the workers end) with the arguments, so `exit N` ends it with code
    /// N as pwsh -File does; a non-zero exit code fails the worker.
    /// </summary>
    private const string WorkerScript = """
        param([string] $DiffusionWorkerFile, [object[]] $DiffusionWorkerArguments)
        $global:LASTEXITCODE = 0
        if ($null -eq $DiffusionWorkerArguments) { $DiffusionWorkerArguments = @() }
        & $DiffusionWorkerFile @DiffusionWorkerArguments
        if (-not $? -and $global:LASTEXITCODE) {
            throw [System.Management.Automation.ErrorRecord]::new([Exception]::new("the script exited with code $global:LASTEXITCODE"), 'WorkerExitCode', 'NotSpecified', $global:LASTEXITCODE)
        }
        """;

    [Parameter] [ValidateRange(1, 1024)] public int? NumProcesses { get; set; }

    /// <summary>cpu, or one CUDA device per process (cuda:0,cuda:1); process i takes Device[i mod count].</summary>
    [Parameter] [ArgumentCompleter(typeof(DeviceCompleter))] public string[]? Device { get; set; }

    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ScriptBlockSet)] public ScriptBlock ScriptBlock { get; set; } = null!;
    [Parameter(Mandatory = true, ParameterSetName = FilePathSet)] public string FilePath { get; set; } = "";
    [Parameter] [Alias("Args")] public object[]? ArgumentList { get; set; }

    private WorkerPool? _pool;

    protected override void EndProcessing()
    {
        string? file = null;
        if (ParameterSetName == FilePathSet)
        {
            file = GetUnresolvedProviderPathFromPSPath(FilePath);
            if (!File.Exists(file))
                ThrowTerminatingError(ArgumentError("ParallelScriptNotFound", $"The script '{file}' does not exist. Give the path of a .ps1 file.", file));
        }
        var launches = ParallelLaunch.Plan(this, NumProcesses, Device);
        string? scriptCopy = null;
        if (file is null)
        {
            scriptCopy = file = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"diffusion-worker-{Guid.NewGuid():N}.ps1");
            File.WriteAllText(scriptCopy, ScriptBlock.ToString(), new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
        }
        _pool = new WorkerPool(launches);
        var progress = new ParallelProgress($"Start-DiffusionParallel: {launches.Count} worker process(es)", _pool.Workers);
        try
        {
            WriteProgress(progress.Overall("starting workers", 0));
            _pool.Open(ParallelLaunch.ModulePath, SessionState.Path.CurrentFileSystemLocation.ProviderPath);
            StopIfAsked();
            var parameters = new Dictionary<string, object?> { ["DiffusionWorkerFile"] = file, ["DiffusionWorkerArguments"] = ArgumentList };
            Drive(progress, parameters);
        }
        finally
        {
            _pool.Dispose();
            if (scriptCopy is not null) File.Delete(scriptCopy);
            if (!Stopping) foreach (var bar in progress.Completed()) WriteProgress(bar); // writing throws once Ctrl+C was pressed
        }
    }

    /// <summary>Runs the script in every live worker and writes what comes back: objects in rank order, the rest as it comes.</summary>
    private void Drive(ParallelProgress progress, Dictionary<string, object?> parameters)
    {
        var workers = _pool!.Workers;
        var buffered = workers.Select(_ => new List<PSObject?>()).ToArray();
        var finished = new bool[workers.Count];
        int nextRank = 0, done = 0;
        void Finish(WorkerProcess w, WorkerFailure? failure)
        {
            finished[w.Rank] = true;
            done++;
            if (failure is not null) WriteError(WorkerForwarding.WorkerFailed(failure, "The other workers' results are kept."));
            WriteProgress(progress.Rank(w, failure is null ? "done" : "failed", failure is null ? 100 : -1));
            WriteProgress(progress.Overall($"{done}/{workers.Count} worker(s) finished", 100 * done / workers.Count));
            for (; nextRank < workers.Count && finished[nextRank]; nextRank++)
            {
                WriteObject(buffered[nextRank], enumerateCollection: true);
                buffered[nextRank].Clear();
            }
        }
        foreach (var w in workers)
        {
            if (w.Death is { } death) Finish(w, death);
            else
            {
                WriteProgress(progress.Rank(w, "running"));
                w.BeginInvoke(WorkerScript, parameters);
            }
        }
        WriteProgress(progress.Overall($"{done}/{workers.Count} worker(s) finished", 100 * done / workers.Count));
        while (done < workers.Count)
        {
            StopIfAsked();
            var e = _pool.Next(200);
            if (e is null || WorkerForwarding.TryForward(this, e)) continue;
            switch (e)
            {
                case WorkerOutput o:
                    var value = Annotate(o.Value, o.Worker.Rank);
                    if (o.Worker.Rank == nextRank) WriteObject(value);
                    else buffered[o.Worker.Rank].Add(value);
                    break;
                case WorkerProgress p:
                    WriteProgress(progress.FromWorker(p.Worker, p.Record));
                    break;
                case WorkerFinished f:
                    Finish(f.Worker, f.Failure);
                    break;
            }
        }
    }

    /// <summary>The worker's object with a ProcessRank property saying which worker it came from.</summary>
    private static PSObject? Annotate(PSObject? value, int rank)
    {
        if (value is not null && value.Properties["ProcessRank"] is null) value.Properties.Add(new PSNoteProperty("ProcessRank", rank));
        return value;
    }

    protected override void StopProcessing()
    {
        base.StopProcessing();
        _pool?.KillAll();
    }
}
