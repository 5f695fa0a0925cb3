using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.Lora;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>
/// Invoke-Diffusion's LoRAs: -Lora adds files to the pipeline the call loads (in every worker of a parallel run), and
/// -ParseLoraTags reads A1111's <c>&lt;lora:name:scale&gt;</c> tags: each prompt runs with the LoRAs it tags, at their
/// scales, and the others off (the engine's <see cref="GenerationRequest.ParseLoraTags"/>, see <see cref="LoraTags"/>).
/// </summary>
public sealed partial class InvokeDiffusionCommand
{
    /// <summary>LoRA files to add to the pipeline this call loads: paths at scale 1, or @{ path = scale }.</summary>
    [Parameter(ParameterSetName = PathSet)]
    [LoraFileArgumentTransformation]
    [ValidateNotNullOrEmpty]
    public LoraFileArgument[]? Lora { get; set; }

    /// <summary>A1111's prompt syntax: &lt;lora:name:scale&gt; tags are taken out of each prompt and choose its LoRAs.</summary>
    [Parameter] public SwitchParameter ParseLoraTags { get; set; }

    /// <summary>-Lora with full paths, checked before anything is loaded: each file readable as a LoRA, their names distinct.</summary>
    internal IReadOnlyList<LoraFileArgument> ResolvedLoras()
    {
        if (Lora is null) return [];
        var resolved = new List<LoraFileArgument>();
        foreach (var entry in Lora)
        {
            var path = GetUnresolvedProviderPathFromPSPath(entry.Path);
            path = Run(() => { using var file = LoraFile.Open(path); return file.Path; }); // a folder gives its file; a bad file fails here, once
            resolved.Add(entry with { Path = path });
        }
        if (resolved.GroupBy(l => System.IO.Path.GetFileNameWithoutExtension(l.Path), StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1) is { } twice)
            ThrowTerminatingError(ArgumentError("LoraNameTaken",
                $"-Lora has two files named '{twice.Key}' ({string.Join(", ", twice.Select(l => l.Path))}): a LoRA is named by its file name. " +
                "Rename one, or add them to a pipeline with Add-DiffusionLora -Name and use -Pipeline.", "Lora"));
        return resolved;
    }

    /// <summary>Adds -Lora's files to the pipeline this call loaded, each under its file name.</summary>
    private void AddLoras(DiffusionPipeline pipeline, IReadOnlyList<LoraFileArgument> loras)
    {
        foreach (var l in loras)
        {
            var adapter = Run(() => LoraApplier.Add(pipeline, l.Path, null, l.Scale));
            WriteVerbose($"Added the LoRA {adapter}.");
        }
    }
}
