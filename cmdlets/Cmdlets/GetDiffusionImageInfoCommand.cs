using System.Collections;
using System.Collections.Specialized;
using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.Imaging;
using Diffusion.Engine.Schedulers;

namespace Diffusion.Cmdlets;

/// <summary>
/// How an image file was made, read back from its parameters. The properties that are Invoke-Diffusion parameters
/// carry their names (Prompt, NegativePrompt, Steps, GuidanceScale, GuidanceRescale, Seed, Width, Height, Scheduler,
/// BatchSize, BatchPosition); <see cref="ToParameters"/> (or -AsHashtable) gives them as a hashtable to splat.
/// </summary>
public sealed class DiffusionImageInfo
{
    public string Prompt { get; init; } = "";
    public string? NegativePrompt { get; init; }
    public int Steps { get; init; }
    public double GuidanceScale { get; init; }
    public double GuidanceRescale { get; init; }
    public long Seed { get; init; }
    public int Width { get; init; }
    public int Height { get; init; }
    /// <summary>The -Scheduler name that rebuilds the sampler (e.g. 'euler_a' for "Euler a").</summary>
    public string Scheduler { get; init; } = "";
    public int BatchSize { get; init; } = 1;
    public int BatchPosition { get; init; }
    /// <summary>The sampler as written in the file ("PLMS", "Euler a", "DPM++ 2M Karras").</summary>
    public string Sampler { get; init; } = "";
    public string Size => $"{Width}x{Height}";
    public string Model { get; init; } = "";
    public string? ModelHash { get; init; }
    /// <summary>True when the guidance is FLUX's distilled guidance ("Guidance" in the text).</summary>
    public bool DistilledGuidance { get; init; }
    /// <summary>img2img: the strength the image was made with (A1111's "Denoising strength"); null for text-to-image. Replaying needs its init image too (-InitImage).</summary>
    public double? Strength { get; init; }
    /// <summary>The LoRAs the image was made with ("name: hash: scale, ..."; A1111's "Lora hashes" has no scales). Replaying needs them added (Add-DiffusionLora).</summary>
    public string? Loras { get; init; }
    /// <summary>The file read.</summary>
    public string Path { get; init; } = "";
    /// <summary>The A1111 parameters text.</summary>
    public string Parameters { get; init; } = "";

    /// <summary>The Invoke-Diffusion parameters that replay the image: @{ Prompt = ...; Seed = ...; ... } for splatting.</summary>
    public Hashtable ToParameters()
    {
        var p = new OrderedDictionary(StringComparer.OrdinalIgnoreCase)
        {
            ["Prompt"] = Prompt, ["Steps"] = Steps, ["GuidanceScale"] = GuidanceScale, ["Seed"] = Seed,
            ["Width"] = Width, ["Height"] = Height, ["Scheduler"] = Scheduler,
        };
        if (!string.IsNullOrEmpty(NegativePrompt)) p["NegativePrompt"] = NegativePrompt;
        if (GuidanceRescale != 0) p["GuidanceRescale"] = GuidanceRescale;
        if (BatchSize > 1) { p["BatchSize"] = BatchSize; p["BatchPosition"] = BatchPosition; }
        var table = new Hashtable(StringComparer.OrdinalIgnoreCase);
        foreach (DictionaryEntry e in p) table[e.Key] = e.Value;
        return table;
    }

    internal static DiffusionImageInfo From(GenerationParameters g, string path) => new()
    {
        Prompt = g.Prompt, NegativePrompt = g.NegativePrompt, Steps = g.Steps, GuidanceScale = g.GuidanceScale,
        GuidanceRescale = g.GuidanceRescale, Seed = g.Seed, Width = g.Width, Height = g.Height,
        Scheduler = SamplerNames.ToSchedulerName(g.SamplerName, g.Scheduler == g.SamplerName ? null : g.Scheduler),
        BatchSize = g.BatchSize, BatchPosition = g.BatchPosition, Sampler = g.SamplerName, Model = g.Model, ModelHash = g.ModelHash,
        DistilledGuidance = g.DistilledGuidance, Strength = g.Strength, Loras = g.Loras, Path = path, Parameters = g.ToA1111String(),
    };
}

/// <summary>Reads the generation parameters of PNG, JPEG and WebP files (this module's, or AUTOMATIC1111's) as objects.</summary>
[Cmdlet(VerbsCommon.Get, "DiffusionImageInfo", DefaultParameterSetName = PathSet)]
[OutputType(typeof(DiffusionImageInfo), typeof(Hashtable))]
public sealed class GetDiffusionImageInfoCommand : DiffusionCmdlet
{
    private const string PathSet = "Path", LiteralSet = "LiteralPath";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = PathSet)]
    [SupportsWildcards]
    public string[] Path { get; set; } = [];

    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = LiteralSet)]
    [Alias("PSPath", "LP", "FullName")]
    public string[] LiteralPath { get; set; } = [];

    /// <summary>Output the Invoke-Diffusion parameters as a hashtable, to splat: Invoke-Diffusion -Pipeline $p @info.</summary>
    [Parameter] public SwitchParameter AsHashtable { get; set; }

    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName == LiteralSet;
        foreach (var p in literal ? LiteralPath : Path)
        {
            foreach (var file in Resolve(p, literal))
            {
                GenerationParameters? parameters;
                try { parameters = DiffusionImage.ReadParameters(file); }
                catch (DiffusionException e) { WriteEngineError(e, file); continue; }
                if (parameters is null)
                {
                    WriteError(new ErrorRecord(new InvalidDataException($"'{file}' has no generation parameters."), "ImageParametersMissing", ErrorCategory.InvalidData, file)
                    { ErrorDetails = new ErrorDetails($"'{file}' has no generation parameters (no PNG 'parameters' text, no EXIF UserComment). Only images saved with their parameters can be read back.") });
                    continue;
                }
                var info = DiffusionImageInfo.From(parameters, file);
                WriteObject(AsHashtable ? info.ToParameters() : info);
            }
        }
    }

    private IEnumerable<string> Resolve(string path, bool literal)
    {
        if (literal) return [GetUnresolvedProviderPathFromPSPath(path)];
        try { return GetResolvedProviderPathFromPSPath(path, out _); }
        catch (ItemNotFoundException e)
        {
            WriteError(new ErrorRecord(e, "ImageFileNotFound", ErrorCategory.ObjectNotFound, path)
            { ErrorDetails = new ErrorDetails($"No image file matches '{path}'.") });
            return [];
        }
    }
}
