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
public sealed class GetDiffusionDeviceMapCommand : ModelPlacementCmdlet
{
    /// <summary>accelerate's head-room policy (largest layer reserved, no activations), to compare with.</summary>
    [Parameter]
    public SwitchParameter AcceleratePolicy { get; set; }

    protected override void ProcessRecord()
    {
        var path = Run(() => ModelResolution.Resolve(this, Path, Revision, Variant, Component, StopToken));
        var options = PlacementOptions(Run(() => ModelConfigArgument.Resolve(this, path, Config, StopToken)));
        options.HeadroomPolicy = AcceleratePolicy ? HeadroomPolicy.Accelerate : HeadroomPolicy.Activations;
        WriteObject(Run(() => DiffusionPipeline.PlanDevices(path, options, defaultStrategy: true)));
    }
}
