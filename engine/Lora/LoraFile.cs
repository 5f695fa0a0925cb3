using Diffusion.Engine.IO;
using static TorchSharp.torch;

namespace Diffusion.Engine.Lora;

/// <summary>The key layouts a LoRA file comes in.</summary>
public enum LoraFormat
{
    /// <summary>diffusers' older layout: <c>unet.…lora.down/up.weight</c>, <c>text_encoder.…lora_linear_layer.down/up.weight</c>.</summary>
    Diffusers,
    /// <summary>PEFT's layout as diffusers saves it now: <c>transformer.…lora_A/lora_B.weight</c>.</summary>
    Peft,
    /// <summary>kohya-ss: <c>lora_unet_…</c>, <c>lora_te_…</c> (<c>lora_te1_/lora_te2_</c> for SDXL), <c>.lora_down/.lora_up.weight</c>, <c>.alpha</c>.</summary>
    Kohya,
}

/// <summary>
/// One patched layer as the file names it: the component (unet, text_encoder, text_encoder_2, transformer), the module
/// (a dotted path for diffusers/PEFT keys, kohya's underscore-flattened name otherwise), the down (A, [r, in]) and up
/// (B, [out, r]) weights and the alpha the file gives (null: alpha = rank, as PEFT saves without one).
/// </summary>
public sealed record LoraLayer(string Component, string Module, bool Flattened, string DownKey, string UpKey, long Rank, float? Alpha)
{
    /// <summary>alpha / rank: PEFT's <c>scaling</c>.</summary>
    public double Scaling => (Alpha ?? Rank) / (double)Rank;
}

/// <summary>
/// A LoRA checkpoint read from its safetensors header: which layers it patches, in which key layout. The weights stay in
/// the file until <see cref="ReadDown"/>/<see cref="ReadUp"/> (a LoRA is small, but nothing is read twice).
/// </summary>
public sealed class LoraFile : IDisposable
{
    private static readonly string[] PickleExtensions = [".bin", ".ckpt", ".pt", ".pth", ".pkl"];
    private static readonly (string Down, string Up, LoraFormat Format)[] Suffixes =
    [
        (".lora.down.weight", ".lora.up.weight", LoraFormat.Diffusers),
        (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight", LoraFormat.Diffusers),
        (".lora_A.weight", ".lora_B.weight", LoraFormat.Peft),
        (".lora_down.weight", ".lora_up.weight", LoraFormat.Kohya),
    ];
    // kohya prefixes -> the diffusers component they patch
    private static readonly (string Prefix, string Component)[] KohyaPrefixes =
    [
        ("lora_unet_", "unet"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"), ("lora_te_", "text_encoder"),
        ("lora_transformer_", "transformer"),
    ];

    private readonly SafeTensorsFile _file;

    public string Path { get; }
    public LoraFormat Format { get; }
    public IReadOnlyList<LoraLayer> Layers { get; }

    private LoraFile(string path, SafeTensorsFile file, LoraFormat format, IReadOnlyList<LoraLayer> layers)
    {
        Path = path; _file = file; Format = format; Layers = layers;
    }

    public static LoraFile Open(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (PickleExtensions.Contains(System.IO.Path.GetExtension(full).ToLowerInvariant()))
            throw new DiffusionException("PickleWeightsRefused", DiffusionErrorKind.NotSupported,
                $"'{full}' is a pickle checkpoint. Pickle files can run arbitrary code when loaded, so this module only loads safetensors. " +
                "Get the .safetensors version of this LoRA (most are published as one), or convert it in a sandbox.", full);
        if (Directory.Exists(full))
            full = FindInFolder(full);
        if (!File.Exists(full))
            throw new DiffusionException("LoraFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The LoRA file '{full}' does not exist. Give the path of a LoRA .safetensors file.", full);
        var file = SafeTensorsFile.Open(full);
        try
        {
            var (format, layers) = Parse(file, full);
            return new LoraFile(full, file, format, layers);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>A folder holding one LoRA: diffusers' <c>pytorch_lora_weights.safetensors</c>, else its only safetensors file.</summary>
    private static string FindInFolder(string folder)
    {
        var standard = System.IO.Path.Combine(folder, "pytorch_lora_weights.safetensors");
        if (File.Exists(standard)) return standard;
        var files = Directory.GetFiles(folder, "*.safetensors");
        if (files.Length == 1) return files[0];
        throw new DiffusionException("LoraFileNotFound", DiffusionErrorKind.ObjectNotFound,
            files.Length == 0
                ? $"The folder '{folder}' holds no LoRA .safetensors file (diffusers names it pytorch_lora_weights.safetensors)."
                : $"The folder '{folder}' holds {files.Length} .safetensors files ({string.Join(", ", files.Select(System.IO.Path.GetFileName).Take(5))}); give the path of the one to load.",
            folder);
    }

    private static (LoraFormat, IReadOnlyList<LoraLayer>) Parse(SafeTensorsFile file, string path)
    {
        var layers = new List<LoraLayer>();
        var formats = new HashSet<LoraFormat>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var key in file.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            foreach (var (down, up, format) in Suffixes)
            {
                if (!key.EndsWith(down, StringComparison.Ordinal)) continue;
                var stem = key[..^down.Length];
                var upKey = stem + up;
                if (!file.Tensors.ContainsKey(upKey))
                    throw new DiffusionException("LoraFileInvalid", DiffusionErrorKind.InvalidData,
                        $"'{path}' has '{key}' but not its partner '{upKey}'. The file is damaged or not a LoRA; download it again.", path);
                var (component, module, flattened) = Locate(stem, format, path);
                var downInfo = file.Tensors[key];
                var upInfo = file.Tensors[upKey];
                if (downInfo.Shape.Length < 2 || upInfo.Shape.Length < 2 || downInfo.Shape[0] != upInfo.Shape[1])
                    throw new DiffusionException("LoraFileInvalid", DiffusionErrorKind.InvalidData,
                        $"'{path}': '{key}' [{string.Join(",", downInfo.Shape)}] and '{upKey}' [{string.Join(",", upInfo.Shape)}] do not make a rank-r pair " +
                        "(down is [r, in], up is [out, r]). The file is damaged; download it again.", path);
                float? alpha = null;
                var alphaKey = stem + ".alpha";
                if (file.Tensors.TryGetValue(alphaKey, out var alphaInfo))
                {
                    using var a = file.Load(alphaKey);
                    alpha = a.to_type(ScalarType.Float32).item<float>();
                    used.Add(alphaKey);
                }
                layers.Add(new LoraLayer(component, module, flattened, key, upKey, downInfo.Shape[0], alpha));
                formats.Add(format);
                used.Add(key); used.Add(upKey);
                break;
            }
        }
        if (layers.Count == 0)
            throw new DiffusionException("LoraFormatUnknown", DiffusionErrorKind.InvalidData,
                $"'{path}' holds no LoRA layers this module knows. Keys it saw: {string.Join(", ", file.Tensors.Keys.Order(StringComparer.Ordinal).Take(4))}. " +
                "Known layouts: diffusers (unet.….lora.down.weight / text_encoder.….lora_linear_layer.down.weight), PEFT (transformer.….lora_A.weight) " +
                "and kohya-ss (lora_unet_….lora_down.weight with .alpha).", path);
        var unknown = file.Tensors.Keys.Where(k => !used.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (unknown.Count > 0)
            throw new DiffusionException("LoraKeysUnknown", DiffusionErrorKind.NotSupported,
                $"'{path}' has {unknown.Count} tensors that are not LoRA down/up pairs this module applies, e.g. {string.Join(", ", unknown.Take(4))}. " +
                "LoCon/LoHa/LoKr layers and DoRA magnitudes are not supported; use a plain LoRA.", path);
        var fileFormat = formats.Contains(LoraFormat.Kohya) ? LoraFormat.Kohya : formats.Contains(LoraFormat.Peft) ? LoraFormat.Peft : LoraFormat.Diffusers;
        return (fileFormat, layers);
    }

    private static (string Component, string Module, bool Flattened) Locate(string stem, LoraFormat format, string path)
    {
        if (format == LoraFormat.Kohya)
        {
            foreach (var (prefix, component) in KohyaPrefixes)
                if (stem.StartsWith(prefix, StringComparison.Ordinal))
                    return (component, stem[prefix.Length..], true);
            throw new DiffusionException("LoraFormatUnknown", DiffusionErrorKind.InvalidData,
                $"'{path}': the kohya-style layer '{stem}' does not start with a known prefix ({string.Join(", ", KohyaPrefixes.Select(p => p.Prefix))}).", path);
        }
        int dot = stem.IndexOf('.');
        if (dot <= 0)
            throw new DiffusionException("LoraFormatUnknown", DiffusionErrorKind.InvalidData,
                $"'{path}': the layer '{stem}' does not name the component it patches (unet., text_encoder., text_encoder_2. or transformer.).", path);
        return (stem[..dot], stem[(dot + 1)..], false);
    }

    /// <summary>The down (A) weight in float32 on the CPU.</summary>
    public Tensor ReadDown(LoraLayer layer) => _file.Load(layer.DownKey, CPU, ScalarType.Float32);

    /// <summary>The up (B) weight in float32 on the CPU.</summary>
    public Tensor ReadUp(LoraLayer layer) => _file.Load(layer.UpKey, CPU, ScalarType.Float32);

    public void Dispose() => _file.Dispose();
}
