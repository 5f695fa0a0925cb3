using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Models;

/// <summary>A model's typed config.json: the only reader of that file, with diffusers' (or transformers') defaults for absent keys.</summary>
public interface IModelConfig
{
    /// <summary>Where the config was read from (for messages); "config.json" when built in code.</summary>
    string SourcePath { get; }
}

/// <summary>
/// Everything the engine knows about one model class named in model_index.json, in one place: its typed config (the
/// only reader of its config.json), its constructor, the renaming of its checkpoints' keys (a folder's files, and the
/// single-file layout's key map), the units a device map must not split (diffusers' <c>_no_split_modules</c>) and its
/// activation estimate. The loader, the device-map planner, header-only checkpoints and the single-file reader ask
/// here (<see cref="ModelClasses.For"/>) instead of switching on class names.
/// </summary>
public abstract class ModelClass
{
    private protected ModelClass(string className, string library, Func<string, string>? moduleKey, KeyMap? singleFileKeyMap)
    {
        ClassName = className; Library = library; ModuleKey = moduleKey; SingleFileKeyMap = singleFileKeyMap;
    }

    /// <summary>The class name as model_index.json gives it (e.g. UNet2DConditionModel).</summary>
    public string ClassName { get; }

    /// <summary>The library model_index.json names with it: "diffusers" or "transformers".</summary>
    public string Library { get; }

    /// <summary>The type of its typed config.</summary>
    public abstract Type ConfigType { get; }

    /// <summary>
    /// Checkpoint key → module key for a folder's weight files (CLIP: transformers 5 dropped the "text_model." level),
    /// or null when the files' keys are the module's.
    /// </summary>
    public Func<string, string>? ModuleKey { get; }

    /// <summary>How a single-file checkpoint's keys for this class map to the module's, or null when no single-file layout holds it.</summary>
    internal KeyMap? SingleFileKeyMap { get; }

    /// <summary>Reads and checks <paramref name="configJsonPath"/> (errors name the file, the key and the fix).</summary>
    public abstract IModelConfig ReadConfig(string configJsonPath);

    /// <summary>Parses and checks a config's JSON text; <paramref name="source"/> names it in messages.</summary>
    public abstract IModelConfig ParseConfig(string json, string source = "config.json");

    /// <summary>The config of a config.json that gives no keys: every value the library's default.</summary>
    public abstract IModelConfig DefaultConfig();

    /// <summary>Builds the model from its config on <see cref="Construction"/>'s device and dtype (the meta device inside <see cref="Construction.OnMeta"/>).</summary>
    public abstract nn.Module Build(IModelConfig config);

    /// <summary>How the model splits into units for a device map (its no-split blocks), or null when it is placed whole.</summary>
    internal abstract LayoutRules? Layout(IModelConfig config);

    /// <summary>Counted activation bytes of one forward at the request (before <see cref="ActivationEstimator"/>'s margin), and what they are.</summary>
    internal abstract (double Bytes, string What) Activations(IModelConfig config, int elementBytes, ActivationRequest request);

    public override string ToString() => $"{Library}.{ClassName}";
}

/// <summary>A <see cref="ModelClass"/> whose config is a <typeparamref name="TConfig"/>.</summary>
public sealed class ModelClass<TConfig> : ModelClass where TConfig : class, IModelConfig, new()
{
    private readonly Func<string, TConfig> _load;
    private readonly Func<string, string, TConfig> _parse;
    private readonly Func<TConfig, nn.Module> _build;
    private readonly Func<TConfig, LayoutRules>? _layout;
    private readonly Func<TConfig, int, ActivationRequest, (double, string)> _activations;

    internal ModelClass(string className, string library,
        Func<string, TConfig> load, Func<string, string, TConfig> parse, Func<TConfig, nn.Module> build,
        Func<TConfig, LayoutRules>? layout, Func<TConfig, int, ActivationRequest, (double, string)> activations,
        Func<string, string>? moduleKey = null, KeyMap? singleFileKeyMap = null)
        : base(className, library, moduleKey, singleFileKeyMap)
    {
        _load = load; _parse = parse; _build = build; _layout = layout; _activations = activations;
    }

    public override Type ConfigType => typeof(TConfig);

    public override IModelConfig ReadConfig(string configJsonPath) => _load(configJsonPath);

    public override IModelConfig ParseConfig(string json, string source = "config.json") => _parse(json, source);

    public override IModelConfig DefaultConfig() => new TConfig();

    public override nn.Module Build(IModelConfig config) => _build(Typed(config));

    internal override LayoutRules? Layout(IModelConfig config) => _layout?.Invoke(Typed(config));

    internal override (double Bytes, string What) Activations(IModelConfig config, int elementBytes, ActivationRequest request) =>
        _activations(Typed(config), elementBytes, request);

    /// <summary>The config as this class's; another class's config is a programming error, named here.</summary>
    public TConfig Typed(IModelConfig config) => config as TConfig
        ?? throw new ArgumentException($"A {ClassName} is built from a {typeof(TConfig).Name}, not a {config.GetType().Name} (from '{config.SourcePath}').", nameof(config));
}
