using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.Lora;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>
/// Applies a LoRA file to a pipeline's loaded models (diffusers' load_lora_weights): diffusers/PEFT and kohya-ss files,
/// for every component the file patches that the pipeline has loaded. The weights are not changed (see Remove-DiffusionLora).
/// </summary>
[Cmdlet(VerbsCommon.Add, "DiffusionLora", SupportsShouldProcess = true)]
[OutputType(typeof(LoraAdapter))]
public sealed class AddDiffusionLoraCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    /// <summary>The LoRA .safetensors file (or a folder holding pytorch_lora_weights.safetensors).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "LiteralPath")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>This LoRA's weight (diffusers' adapter_weights): its delta is multiplied by it, and by -LoraScale of a run.</summary>
    [Parameter]
    [ValidateRange(-100.0, 100.0)]
    public double Scale { get; set; } = 1.0;

    /// <summary>The adapter's name (diffusers' adapter_name); default: the file name without extension.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    protected override void ProcessRecord()
    {
        var path = GetUnresolvedProviderPathFromPSPath(Path);
        if (!ShouldProcess(Pipeline.Path, $"Apply the LoRA '{path}' at scale {Scale}")) return;
        EnsureBackendOrThrow();
        var adapter = Run(() => LoraApplier.Add(Pipeline, path, Name, Scale));
        foreach (var skipped in adapter.SkippedComponents)
            WriteWarning($"'{adapter.Path}' also patches {skipped}, which this pipeline was loaded without; those layers are not applied. " +
                         $"Add the LoRA to the pipeline that loads {skipped} too (the staged flow's encode pipeline).");
        WriteObject(adapter);
    }
}

/// <summary>The LoRAs applied to a pipeline.</summary>
[Cmdlet(VerbsCommon.Get, "DiffusionLora")]
[OutputType(typeof(LoraAdapter))]
public sealed class GetDiffusionLoraCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    /// <summary>Names to list (wildcards); all when omitted.</summary>
    [Parameter(Position = 0)]
    [SupportsWildcards]
    public string[]? Name { get; set; }

    protected override void ProcessRecord()
    {
        var patterns = (Name ?? ["*"]).Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
        foreach (var a in Pipeline.Loras.Adapters)
            if (patterns.Any(p => p.IsMatch(a.Name))) WriteObject(a);
    }
}

/// <summary>Takes LoRAs off a pipeline: its models compute exactly as before the LoRA was added.</summary>
[Cmdlet(VerbsCommon.Remove, "DiffusionLora", SupportsShouldProcess = true, DefaultParameterSetName = ByName)]
public sealed class RemoveDiffusionLoraCommand : DiffusionCmdlet
{
    private const string ByName = "ByName";
    private const string ByAdapter = "ByAdapter";

    [Parameter(Mandatory = true, ParameterSetName = ByName, ValueFromPipeline = true)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    /// <summary>Names to remove (wildcards); all when omitted.</summary>
    [Parameter(Position = 0, ParameterSetName = ByName)]
    [SupportsWildcards]
    public string[]? Name { get; set; }

    /// <summary>Adapters as Add-DiffusionLora or Get-DiffusionLora output them.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ByAdapter, ValueFromPipeline = true)]
    public LoraAdapter[] Lora { get; set; } = [];

    protected override void ProcessRecord()
    {
        IEnumerable<LoraAdapter> chosen;
        if (ParameterSetName == ByAdapter) chosen = Lora;
        else
        {
            var patterns = (Name ?? ["*"]).Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
            chosen = Pipeline.Loras.Adapters.Where(a => patterns.Any(p => p.IsMatch(a.Name))).ToList();
            foreach (var n in Name ?? [])
                if (!WildcardPattern.ContainsWildcardCharacters(n) && Pipeline.Loras.Find(n) is null)
                    WriteError(new ErrorRecord(new ItemNotFoundException($"The pipeline has no LoRA named '{n}'."), "LoraNotFound", ErrorCategory.ObjectNotFound, n)
                    {
                        ErrorDetails = new ErrorDetails($"The pipeline has no LoRA named '{n}'. Its LoRAs: {string.Join(", ", Pipeline.Loras.Adapters.Select(a => a.Name).DefaultIfEmpty("(none)"))}."),
                    });
        }
        foreach (var a in chosen.ToList())
            if (!a.IsRemoved && ShouldProcess(a.Name, "Remove the LoRA")) a.Dispose();
    }
}
