using System.Collections;
using System.Management.Automation;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// The parameters New-DiffusionPipeline and Get-DiffusionDeviceMap share, declared once: which model (a folder, a
/// single file with -Config, or a Hub repo id with -Revision/-Variant), which components, in what dtype, and where
/// they go (-Device, -DeviceMap, -MaxMemory, -Offload, with -Height/-Width for the activation head-room).
/// </summary>
public abstract class ModelPlacementCmdlet : DiffusionCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "ModelPath")]
    [ArgumentCompleter(typeof(ModelPathCompleter))]
    public string Path { get; set; } = "";

    /// <summary>With a Hugging Face repo id as -Path: the branch, tag or commit to load (default main).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Revision { get; set; }

    /// <summary>The device to load on; with -Offload, the GPU that runs the offloaded models.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(DeviceCompleter))]
    public string? Device { get; set; }

    [Parameter]
    [ValidateSet("float32", "float16", "bfloat16")]
    public string DType { get; set; } = "float32";

    /// <summary>Only these components (e.g. text_encoder,text_encoder_2 for the encode stage).</summary>
    [Parameter]
    [ArgumentCompleter(typeof(ComponentCompleter))]
    public string[]? Component { get; set; }

    /// <summary>diffusers' variant: the *.fp16.safetensors (etc.) weights of each component that has them.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Variant { get; set; }

    /// <summary>For a single-file checkpoint (-Path x.safetensors): the diffusers folder with its configs, tokenizers and scheduler.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Config { get; set; }

    /// <summary>auto, balanced, balanced_low_0, sequential, or a hashtable (module path or component -> device).</summary>
    [Parameter]
    [ArgumentCompleter(typeof(DeviceMapCompleter))]
    public object? DeviceMap { get; set; }

    /// <summary>Device -> memory for -DeviceMap, e.g. @{0='16GB'; 1='16GB'; cpu='64GB'}.</summary>
    [Parameter]
    public Hashtable? MaxMemory { get; set; }

    /// <summary>model or sequential CPU offload onto -Device.</summary>
    [Parameter]
    [ValidateSet("model", "sequential")]
    public string? Offload { get; set; }

    /// <summary>The image height a device map keeps activation head-room for.</summary>
    [Parameter]
    [ValidateRange(16, 16384)]
    public int? Height { get; set; }

    /// <summary>The image width a device map keeps activation head-room for.</summary>
    [Parameter]
    [ValidateRange(16, 16384)]
    public int? Width { get; set; }

    /// <summary>These parameters as load options, with <paramref name="config"/> the resolved -Config.</summary>
    protected PipelineLoadOptions PlacementOptions(string? config) => new()
    {
        Device = Device, DType = DType, Components = Component, Variant = Variant, Config = config,
        DeviceMap = DeviceMapArguments.Unwrap(DeviceMap), MaxMemory = DeviceMapArguments.Dictionary(MaxMemory), Offload = Offload,
        Height = Height, Width = Width,
    };
}
