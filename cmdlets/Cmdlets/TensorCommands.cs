using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.IO;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Tokenizers;

namespace Diffusion.Cmdlets;

/// <summary>Writes embeddings or latents (all objects received) to one safetensors file, so a later stage can run in another process.</summary>
[Cmdlet(VerbsData.Export, "DiffusionTensor", SupportsShouldProcess = true)]
[OutputType(typeof(FileInfo))]
public sealed class ExportDiffusionTensorCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    public object[] InputObject { get; set; } = [];

    [Parameter(Mandatory = true, Position = 0)]
    public string Path { get; set; } = "";

    [Parameter] public SwitchParameter Force { get; set; }

    private readonly List<object> _items = new();

    protected override void ProcessRecord()
    {
        foreach (var o in InputObject)
        {
            var value = o is PSObject ps ? ps.BaseObject : o;
            if (value is DiffusionEmbedding or DiffusionLatent) _items.Add(value);
            else
                WriteError(ArgumentError("UnsupportedTensorObject",
                    $"Export-DiffusionTensor takes embeddings (ConvertTo-DiffusionEmbedding) or latents (Invoke-Denoise), not {value?.GetType().Name ?? "null"}.", value));
        }
    }

    protected override void EndProcessing()
    {
        if (_items.Count == 0) return;
        var target = GetUnresolvedProviderPathFromPSPath(Path);
        if (!ShouldProcess(target, $"Export {_items.Count} {(_items[0] is DiffusionLatent ? "latent(s)" : "embedding(s)")}")) return;
        Run(() => TensorExchange.Export(target, _items, Force));
        WriteObject(new FileInfo(target));
    }
}

/// <summary>Reads embeddings or latents written by Export-DiffusionTensor back as objects.</summary>
[Cmdlet(VerbsData.Import, "DiffusionTensor")]
[OutputType(typeof(DiffusionEmbedding), typeof(DiffusionLatent))]
public sealed class ImportDiffusionTensorCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName")]
    public string[] Path { get; set; } = [];

    protected override void ProcessRecord()
    {
        EnsureBackendOrThrow();
        foreach (var p in Path)
        {
            var target = GetUnresolvedProviderPathFromPSPath(p);
            try { WriteObject(TensorExchange.Import(target), enumerateCollection: true); }
            catch (DiffusionException e) { WriteEngineError(e, target); }
        }
    }
}

/// <summary>Tokenizes a prompt with a model's tokenizer: ids, count and whether it fits (CLIP 77 tokens, T5 max_sequence_length).</summary>
[Cmdlet(VerbsCommon.Get, "DiffusionPromptToken")]
[OutputType(typeof(PromptTokens))]
public sealed class GetDiffusionPromptTokenCommand : DiffusionCmdlet
{
    /// <summary>A tokenizer folder (vocab.json+merges.txt, or spiece.model/tokenizer.json), or a model folder (its tokenizer/ is used).</summary>
    [Parameter(Mandatory = true)]
    public string Path { get; set; } = "";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [AllowEmptyString]
    public string[] Prompt { get; set; } = [];

    [Parameter] [ValidateRange(1, 4096)] public int? MaxLength { get; set; }

    protected override void ProcessRecord()
    {
        var dir = GetUnresolvedProviderPathFromPSPath(Path);
        foreach (var p in Prompt)
            WriteObject(Run(() => PromptTokens.Tokenize(dir, p, MaxLength)));
    }
}
