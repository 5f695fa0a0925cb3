using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Sharding;

namespace Diffusion.Cmdlets;

/// <summary>
/// Plans where a model folder's components (or one component's modules) would go, from the weights' headers and
/// configs, without loading anything: what New-DiffusionPipeline -DeviceMap would do, as an object.
/// </summary>
[Cmdlet(VerbsCommon.Get, "DiffusionDeviceMap")]
[OutputType(typeof(PipelineDevicePlan))]
public sealed class GetDiffusionDeviceMapCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "ModelPath")]
    [ArgumentCompleter(typeof(ModelPathCompleter))]
    public string Path { get; set; } = "";

    /// <summary>With a Hugging Face repo id as -Path: the branch, tag or commit to load (default main).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Revision { get; set; }

    [Parameter]
    [ArgumentCompleter(typeof(ComponentCompleter))]
    public string[]? Component { get; set; }

    /// <summary>Default: auto for one model component, balanced for several.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(DeviceMapCompleter))]
    public object? DeviceMap { get; set; }

    [Parameter]
    public System.Collections.Hashtable? MaxMemory { get; set; }

    [Parameter]
    [ValidateSet("model", "sequential")]
    public string? Offload { get; set; }

    /// <summary>With -Offload: the GPU that runs the offloaded models.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(DeviceCompleter))]
    public string? Device { get; set; }

    [Parameter]
    [ValidateSet("float32", "float16", "bfloat16")]
    public string DType { get; set; } = "float32";

    [Parameter]
    [ValidateRange(16, 16384)]
    public int? Height { get; set; }

    [Parameter]
    [ValidateRange(16, 16384)]
    public int? Width { get; set; }

    /// <summary>accelerate's head-room policy (largest layer reserved, no activations), to compare with.</summary>
    [Parameter]
    public SwitchParameter AcceleratePolicy { get; set; }

    /// <summary>diffusers' variant: plan from the *.fp16.safetensors (etc.) headers of each component that has them.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Variant { get; set; }

    /// <summary>For a single-file checkpoint: the diffusers folder with its configs.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Config { get; set; }

    protected override void ProcessRecord()
    {
        var path = Run(() => ModelResolution.Resolve(this, Path, Revision, Variant, Component, StopToken));
        var options = new PipelineLoadOptions
        {
            Device = Device, DType = DType, Components = Component, Variant = Variant,
            Config = Run(() => ModelConfigArgument.Resolve(this, path, Config, StopToken)),
            DeviceMap = DeviceMapArguments.Unwrap(DeviceMap), MaxMemory = DeviceMapArguments.Dictionary(MaxMemory), Offload = Offload,
            Height = Height, Width = Width,
            HeadroomPolicy = AcceleratePolicy ? HeadroomPolicy.Accelerate : HeadroomPolicy.Activations,
        };
        WriteObject(Run(() => DiffusionPipeline.PlanDevices(path, options, defaultStrategy: true)));
    }
}
