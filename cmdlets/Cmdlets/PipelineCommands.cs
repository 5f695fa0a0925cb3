using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>Loads a diffusers pipeline folder (all components, or only those a stage needs) on a device in a dtype.</summary>
[Cmdlet(VerbsCommon.New, "DiffusionPipeline", SupportsShouldProcess = true)]
[OutputType(typeof(DiffusionPipeline))]
public sealed class NewDiffusionPipelineCommand : ModelPlacementCmdlet
{
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(SchedulerCompleter))]
    public string? Scheduler { get; set; }

    /// <summary>
    /// One folder per input item: a folder that cannot be planned or loaded is a non-terminating error for that item
    /// (-ErrorAction applies) and the next folders go on; only a backend that cannot load stops the command.
    /// </summary>
    protected override void ProcessRecord()
    {
        if (!ModelResolution.ShouldDownload(this, Path, Revision, Variant, Component)) return; // -WhatIf on a repo id not in the cache fetches nothing
        if (!TryRun(() => ModelResolution.Resolve(this, Path, Revision, Variant, Component, StopToken), Path, out var path)) return;
        if (!TryRun(() => ModelConfigArgument.Resolve(this, path, Config, StopToken), Config, out var config)) return;
        var options = PlacementOptions(config);
        options.Scheduler = Scheduler;
        if (!TryRun(() => DiffusionPipeline.PlanComponents(path, options), null, out var plan)) return;
        Engine.Sharding.PipelineDevicePlan? placement = null;
        if ((options.DeviceMap is not null || Offload is not null || MaxMemory is not null)
            && !TryRun(() => DiffusionPipeline.PlanDevices(path, options), null, out placement)) return;
        var where = placement is null ? $"on {Device ?? "the default device"}" : $"with this device plan:{Environment.NewLine}{placement}{Environment.NewLine}";
        var what = $"{string.Join(", ", plan.Select(c => $"{c.Name} ({c.ClassName})"))} as {DType} {where}";
        if (!ShouldProcess(path, $"Load {what}")) return;
        if (placement is not null)
            foreach (var warning in placement.Warnings) WriteWarning(warning);
        EnsureBackendOrThrow();
        WriteDebug($"Loading {what.TrimEnd()}");
        int done = 0;
        var progress = new ProgressRecord(1, $"Loading {path}", "starting");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        bool loaded = TryRun(() => DiffusionPipeline.Load(path, options,
            name =>
            {
                progress.StatusDescription = name;
                progress.PercentComplete = 100 * done++ / Math.Max(1, plan.Count);
                WriteProgressSnapshot(progress);
            }, StopToken), null, out var pipeline);
        progress.RecordType = ProgressRecordType.Completed;
        WriteProgressSnapshot(progress);
        if (!loaded) return;
        VerboseReport.Loaded(this, pipeline, clock.Elapsed.TotalSeconds);
        if (Offload is not null && !Offload.Trim().Equals("none", StringComparison.OrdinalIgnoreCase) && pipeline.Device == "cpu")
            WriteWarning($"-Offload {Offload} runs on the CPU here (no GPU{(Device is null ? " in the loaded backend" : " given")}): the weights already live in CPU memory, so offloading only adds copies. " +
                "Give -Device cuda with a CUDA libtorch ($env:DIFFUSION_LIBTORCH), or leave -Offload out.");
        WriteObject(pipeline);
    }
}

/// <summary>Frees a pipeline's components (their weights); the guide's `del pipeline`.</summary>
[Cmdlet(VerbsCommon.Remove, "DiffusionPipeline", SupportsShouldProcess = true)]
public sealed class RemoveDiffusionPipelineCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    public DiffusionPipeline[] Pipeline { get; set; } = [];

    protected override void ProcessRecord()
    {
        foreach (var p in Pipeline)
            if (ShouldProcess(p.Path, $"Free {string.Join(", ", p.Components.Keys)}"))
                p.Dispose();
    }
}

/// <summary>
/// The guide's flush(): frees tensors nothing refers to any more, returns cached memory, and resets the peak counters.
/// </summary>
[Cmdlet(VerbsCommon.Clear, "DiffusionMemory")]
[OutputType(typeof(Diffusion.Engine.Devices.DeviceInfo))]
public sealed class ClearDiffusionMemoryCommand : DiffusionCmdlet
{
    /// <summary>Output the devices' memory after clearing.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void EndProcessing()
    {
        Diffusion.Engine.Devices.MemoryCleaner.Flush();
        if (PassThru)
            foreach (var d in Run(Diffusion.Engine.Devices.DeviceCatalog.List)) WriteObject(d);
    }
}
