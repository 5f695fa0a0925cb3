using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.SingleFile;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// Where the model components of one load take their weights from: the model folder's files (of -Variant, if given), or
/// a single-file checkpoint read through its key maps with the configs of the -Config folder. The loaders and the
/// device-map planner ask here, so a single file plans and loads exactly as its folder form would.
/// </summary>
internal sealed class ComponentWeights
{
    public DiffusersFolder Folder { get; }
    public SingleFileCheckpoint? SingleFile { get; }
    public string? Variant { get; }

    private ComponentWeights(DiffusersFolder folder, SingleFileCheckpoint? singleFile, string? variant)
    {
        Folder = folder; SingleFile = singleFile; Variant = variant;
    }

    /// <summary>
    /// The source of a load of <paramref name="path"/>: a diffusers folder, or a single file (.safetensors) with its
    /// configs, tokenizers and scheduler from <see cref="PipelineLoadOptions.Config"/> (diffusers' from_single_file(config=...)).
    /// </summary>
    public static ComponentWeights Open(string path, PipelineLoadOptions options)
    {
        var full = Path.GetFullPath(path);
        if (!SingleFileCheckpoint.IsSingleFilePath(full))
        {
            if (options.Config is not null)
                throw new DiffusionException("ConfigWithFolder", DiffusionErrorKind.InvalidArgument,
                    $"-Config gives the configs of a single-file checkpoint, but '{full}' is a folder, which has its own. Drop -Config, or give a .safetensors file.", "Config");
            return new ComponentWeights(DiffusersFolder.Open(full), null, options.Variant);
        }
        var checkpoint = SingleFileCheckpoint.Open(full); // refuses pickle files and unknown layouts first
        if (options.Config is null)
            throw new DiffusionException("SingleFileConfigMissing", DiffusionErrorKind.InvalidArgument,
                $"'{full}' is a single-file checkpoint ({SingleFileCheckpoint.Describe(checkpoint.Layout)}); its configs, tokenizers and scheduler come " +
                "from a diffusers folder of the same model: give it with -Config <folder>.", "Config");
        if (options.Variant is not null)
            throw new DiffusionException("VariantWithSingleFile", DiffusionErrorKind.InvalidArgument,
                $"-Variant picks weight files in a model folder; '{full}' is one file. Drop -Variant.", "Variant");
        return new ComponentWeights(DiffusersFolder.Open(options.Config), checkpoint, null);
    }

    /// <summary>The path the pipeline is known by: the single file, or the folder.</summary>
    public string ModelPath => SingleFile?.Path ?? Folder.Path;

    /// <summary>
    /// Before anything is read: the variant exists somewhere in the folder (diffusers' rule), and a single file holds
    /// every diffusers model being loaded. Text encoders it lacks come from the -Config folder's weights, as diffusers'
    /// from_single_file loads them; a UNet, transformer or VAE it lacks is an error, as there.
    /// </summary>
    public void Check(IReadOnlyList<ComponentSpec> specs)
    {
        var models = specs.Where(s => ModelClasses.IsModel(s.ClassName)).ToList();
        if (SingleFile is null)
        {
            WeightVariants.RequireSomewhere(Folder.Path,
                Folder.Components.Values.Where(s => ModelClasses.IsModel(s.ClassName)).Select(s => Path.Combine(Folder.Path, s.Name)), Variant);
            return;
        }
        var missing = models.Where(s => !SingleFile.Holds(s.ClassName) && !IsTextEncoder(s.ClassName)).ToList();
        if (missing.Count == 0) return;
        var held = Folder.Components.Values.Where(s => SingleFile.Holds(s.ClassName)).Select(s => s.Name).ToList();
        throw new DiffusionException("SingleFileComponentMissing", DiffusionErrorKind.ObjectNotFound,
            $"'{SingleFile.Path}' ({SingleFileCheckpoint.Describe(SingleFile.Layout)}) holds no weights for {string.Join(", ", missing.Select(s => $"{s.Name} ({s.ClassName})"))}. " +
            (held.Count > 0 ? $"Load what it holds with -Component {string.Join(",", held)}, and the rest from its own file or from the folder " +
                $"(New-DiffusionPipeline '{Folder.Path}' -Component {string.Join(",", missing.Select(s => s.Name))})." : "It holds none of this pipeline's models."),
            SingleFile.Path);
    }

    /// <summary>transformers' models (the text encoders) that a single file lacks come from the -Config folder, as diffusers' from_single_file loads them.</summary>
    private static bool IsTextEncoder(string className) => ModelClasses.Find(className)?.Library == "transformers";

    /// <summary>Whether this component's weights come from the single file.</summary>
    public bool FromSingleFile(ComponentSpec spec) => SingleFile?.Holds(spec.ClassName) == true;

    /// <summary>The weights of a model component, under the module's keys (<paramref name="moduleKey"/> renames a folder file's keys).</summary>
    /// <param name="config">The component's typed config, for a single file's key map; null: read from the folder's config.json.</param>
    public WeightSource For(ComponentSpec spec, Func<string, string>? moduleKey, IModelConfig? config = null)
    {
        if (FromSingleFile(spec))
            return SingleFile!.Source(spec.ClassName, config ?? ConfigOf(spec));
        return WeightSource.FromFiles(WeightLoader.FindWeightFiles(Folder.ComponentPath(spec.Name), Variant), moduleKey);
    }

    /// <summary>The typed config of a model component: its config.json in the folder (for a single file, the -Config folder's).</summary>
    public IModelConfig ConfigOf(ComponentSpec spec) =>
        ModelClasses.For(spec.ClassName, spec.Name).ReadConfig(Folder.ComponentFile(spec.Name, "config.json"));

    /// <summary>The module-key renaming of a class's folder files (transformers 5 dropped CLIPTextModel's "text_model." level).</summary>
    public static Func<string, string>? ModuleKeyOf(string className) => ModelClasses.Find(className)?.ModuleKey;
}
