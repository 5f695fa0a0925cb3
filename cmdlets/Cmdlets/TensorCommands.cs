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
        WriteObject(FileItems.Get(this, target));
    }
}

/// <summary>Reads embeddings or latents written by Export-DiffusionTensor back as objects. -Path takes wildcards; -LiteralPath (and piped files) does not.</summary>
[Cmdlet(VerbsData.Import, "DiffusionTensor", DefaultParameterSetName = PathSet)]
[OutputType(typeof(DiffusionEmbedding), typeof(DiffusionLatent))]
public sealed class ImportDiffusionTensorCommand : DiffusionCmdlet
{
    private const string PathSet = "Path", LiteralSet = "LiteralPath";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = PathSet)]
    [SupportsWildcards]
    public string[] Path { get; set; } = [];

    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = LiteralSet)]
    [Alias("PSPath", "LP", "FullName")]
    public string[] LiteralPath { get; set; } = [];

    protected override void ProcessRecord()
    {
        EnsureBackendOrThrow();
        foreach (var target in ResolvePaths(ParameterSetName == LiteralSet ? LiteralPath : Path, ParameterSetName == LiteralSet))
        {
            try { WriteObject(TensorExchange.Import(target), enumerateCollection: true); }
            catch (DiffusionException e) { WriteEngineError(e, target); }
        }
    }

    /// <summary>File system paths: wildcards expanded (an error for a pattern or path that matches nothing), or taken literally.</summary>
    private IEnumerable<string> ResolvePaths(string[] paths, bool literal)
    {
        foreach (var p in paths)
        {
            if (literal || !WildcardPattern.ContainsWildcardCharacters(p))
            {
                yield return GetUnresolvedProviderPathFromPSPath(p);
                continue;
            }
            System.Collections.ObjectModel.Collection<string> resolved;
            try { resolved = GetResolvedProviderPathFromPSPath(p, out _); }
            catch (ItemNotFoundException) { resolved = []; }
            if (resolved.Count == 0)
                WriteError(new ErrorRecord(new ItemNotFoundException($"No tensor file matches '{p}'."), "TensorFileNotFound", ErrorCategory.ObjectNotFound, p)
                { ErrorDetails = new ErrorDetails($"No tensor file matches '{p}'. Check the folder and the pattern (e.g. 'stage1/*.safetensors').") });
            foreach (var r in resolved) yield return r;
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
