using Diffusion.Engine.IO;
using Diffusion.Engine.Models;

namespace Diffusion.Engine.SingleFile;

/// <summary>The single-file layouts this module converts.</summary>
public enum SingleFileLayout
{
    /// <summary>CompVis/LDM Stable Diffusion 1.x (A1111's v1-5-pruned-emaonly.safetensors): model.diffusion_model, first_stage_model, cond_stage_model.transformer.</summary>
    CompVisLdm,
    /// <summary>Black Forest Labs' FLUX.1 transformer (flux1-dev.safetensors): double_blocks, single_blocks, img_in, ...; optionally under model.diffusion_model.</summary>
    BflFluxTransformer,
    /// <summary>An LDM autoencoder on its own (BFL's ae.safetensors, SD's vae-ft-mse): encoder.down.N, decoder.up.N, mid.attn_1.</summary>
    LdmAutoencoder,
}

/// <summary>
/// A single-file checkpoint (one safetensors file holding one or more models in their original, non-diffusers layout):
/// its header, the layout recognised from its keys, which model classes it holds and, per class, the
/// <see cref="WeightSource"/> that gives the diffusers model its tensors through the layout's key map. Only the header is
/// read here; the loaders read the tensors one at a time, so host memory stays at the model's size.
/// </summary>
public sealed class SingleFileCheckpoint
{
    private const string LdmUNet = "model.diffusion_model.";
    private static readonly string[] LdmVaePrefixes = ["first_stage_model.", "vae."];
    private const string LdmClip = "cond_stage_model.transformer.";

    public string Path { get; }
    public SingleFileLayout Layout { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Header { get; }
    /// <summary>The diffusers / transformers classes whose weights the file holds, with the key prefix of each.</summary>
    public IReadOnlyDictionary<string, string> Models { get; }

    private SingleFileCheckpoint(string path, SingleFileLayout layout, IReadOnlyDictionary<string, SafeTensorInfo> header, Dictionary<string, string> models)
    {
        Path = path; Layout = layout; Header = header; Models = models;
    }

    /// <summary>Layout names for messages.</summary>
    public static string Describe(SingleFileLayout layout) => layout switch
    {
        SingleFileLayout.CompVisLdm => "CompVis/LDM Stable Diffusion 1.x (model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.*)",
        SingleFileLayout.BflFluxTransformer => "Black Forest Labs FLUX.1 transformer (double_blocks.*, single_blocks.*, img_in.*)",
        _ => "LDM / Black Forest Labs autoencoder (encoder.down.*, decoder.up.*, mid.attn_1.*)",
    };

    /// <summary>Whether a path names a single file rather than a model folder (by what is there, or by its extension).</summary>
    public static bool IsSingleFilePath(string path) =>
        File.Exists(path) || (!Directory.Exists(path) && (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || WeightLoader.IsPickle(path)));

    /// <summary>Reads the header and recognises the layout; a pickle file or an unknown layout is refused.</summary>
    public static SingleFileCheckpoint Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        if (WeightLoader.IsPickle(path)) throw WeightLoader.PickleRefused(path);
        if (!path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new DiffusionException("SingleFileNotSafetensors", DiffusionErrorKind.NotSupported,
                $"'{path}' is not a .safetensors file. Give a diffusers model folder, or a single-file checkpoint in safetensors format.", path);
        Dictionary<string, SafeTensorInfo> header;
        using (var file = SafeTensorsFile.Open(path))
            header = new Dictionary<string, SafeTensorInfo>(file.Tensors, StringComparer.Ordinal);
        var layout = DetectLayout(header.Keys) ?? throw UnknownLayout(path, header.Keys);
        var models = new Dictionary<string, string>(StringComparer.Ordinal);
        switch (layout)
        {
            case SingleFileLayout.CompVisLdm:
                models[UNet2DConditionModel.Registration.ClassName] = LdmUNet;
                if (LdmVaePrefixes.FirstOrDefault(p => header.Keys.Any(k => k.StartsWith(p, StringComparison.Ordinal))) is { } vae) models[AutoencoderKL.Registration.ClassName] = vae;
                if (header.Keys.Any(k => k.StartsWith(LdmClip, StringComparison.Ordinal))) models[CLIPTextModel.Registration.ClassName] = LdmClip;
                break;
            case SingleFileLayout.BflFluxTransformer:
                models[FluxTransformer2DModel.Registration.ClassName] = header.Keys.Any(k => k.StartsWith(LdmUNet + "double_blocks.", StringComparison.Ordinal)) ? LdmUNet : "";
                break;
            default:
                models[AutoencoderKL.Registration.ClassName] = "";
                break;
        }
        return new SingleFileCheckpoint(path, layout, header, models);
    }

    /// <summary>The layout of a checkpoint from its keys, or null when none fits (as diffusers' infer_diffusers_model_type looks at marker keys).</summary>
    public static SingleFileLayout? DetectLayout(IEnumerable<string> keys)
    {
        var set = keys as ICollection<string> ?? keys.ToList();
        bool Has(string prefix) => set.Any(k => k.StartsWith(prefix, StringComparison.Ordinal));
        if ((Has("double_blocks.") && Has("single_blocks.")) || (Has(LdmUNet + "double_blocks.") && Has(LdmUNet + "single_blocks.")))
            return SingleFileLayout.BflFluxTransformer;
        if (Has(LdmUNet + "input_blocks.") && Has(LdmUNet + "output_blocks."))
            return SingleFileLayout.CompVisLdm;
        if (Has("encoder.down.") && Has("decoder.up.") && set.All(k => k.StartsWith("encoder.", StringComparison.Ordinal) || k.StartsWith("decoder.", StringComparison.Ordinal)
                || k.StartsWith("quant_conv.", StringComparison.Ordinal) || k.StartsWith("post_quant_conv.", StringComparison.Ordinal)))
            return SingleFileLayout.LdmAutoencoder;
        return null;
    }

    private static DiffusionException UnknownLayout(string path, IEnumerable<string> keys)
    {
        var sample = keys.Order(StringComparer.Ordinal).Take(5).ToList();
        return new DiffusionException("SingleFileLayoutUnknown", DiffusionErrorKind.NotSupported,
            $"'{path}' is not a single-file layout this module converts. Its keys begin: {string.Join(", ", sample)}{(keys.Count() > 5 ? $" (of {keys.Count()})" : "")}. " +
            $"Known layouts: {string.Join("; ", Enum.GetValues<SingleFileLayout>().Select(Describe))}. " +
            "For a diffusers model's own file (keys like down_blocks.0...), load its folder instead; other checkpoints: convert them with diffusers' from_single_file and save_pretrained.", path);
    }

    /// <summary>Whether the file holds the weights of a model of this class.</summary>
    public bool Holds(string className) => Models.ContainsKey(className);

    /// <summary>
    /// The weights of a <paramref name="className"/> model from this file, through its registration's key map;
    /// <paramref name="config"/> is its typed diffusers config (null: the class's defaults).
    /// </summary>
    public WeightSource Source(string className, IModelConfig? config)
    {
        if (!Models.TryGetValue(className, out var prefix))
            throw new DiffusionException("SingleFileComponentMissing", DiffusionErrorKind.ObjectNotFound,
                $"'{Path}' ({Describe(Layout)}) holds no {className} weights; it holds: {string.Join(", ", Models.Keys)}.", Path);
        var model = ModelClasses.For(className);
        var map = model.SingleFileKeyMap
            ?? throw new InvalidOperationException($"{className} is held by the {Layout} layout but has no single-file key map in its registration.");
        // A prefix "" takes every key; otherwise the keys under the prefix, without it (other models' keys, LDM's
        // scheduler buffers such as alphas_cumprod and model_ema.* are not this model's and are not read).
        var stored = Header.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value, StringComparer.Ordinal);
        var mappings = map.Map(stored, config ?? model.DefaultConfig(), prefix, Path).ToList();
        return WeightSource.FromMap(Path, $"{Path} ({className})",
            file => mappings.Select(m => new MappedTensor(m.ModuleKey, file, m.SourceKey, m.Shape, m.Rows)));
    }
}
