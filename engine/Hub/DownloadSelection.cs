using System.Text.Json;
using System.Text.RegularExpressions;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Engine.Hub;

/// <summary>The files of a repo a load will read, and what the choice had to fall back on.</summary>
public sealed record DownloadPlan(IReadOnlyList<string> Files, IReadOnlyList<string> Components, IReadOnlyList<string> Warnings);

/// <summary>
/// Which files of a diffusers repo to download, as diffusers' DiffusionPipeline.download chooses them: model_index.json,
/// then for each component that will load its configs and tokenizer files and the safetensors weights it reads (the
/// variant's `name.{variant}.safetensors` where asked for and present, else the plain ones; a sharded model's
/// `*.safetensors.index.json` and its shards). Never root-level single-file checkpoints, never pickle or other-format
/// weights (.bin, .ckpt, .pt, .pth, .msgpack, .onnx) and never other variants' files. Pure logic over the repo's file list.
/// </summary>
public static class DownloadSelection
{
    public const string ModelIndex = "model_index.json";

    private static readonly string[] PickleOrOtherWeights = [".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".onnx_data", ".pb", ".h5", ".gguf"];
    private static readonly string[] ConfigExtensions = [".json", ".txt", ".model"];

    // name[.variant][-00001-of-00003].safetensors (diffusers' _add_variant and transformers' shard names)
    private static readonly Regex WeightFile = new(@"^(?<stem>[^.]+?)(?:\.(?<variant>[^.]+?))?(?:-\d{5}-of-\d{5})?\.safetensors$", RegexOptions.CultureInvariant);
    // name.safetensors.index[.variant].json, or diffusers' legacy name.safetensors.variant.index.json
    private static readonly Regex IndexFile = new(@"^(?<stem>[^.]+)\.safetensors(?:\.index(?:\.(?<variant>[^.]+))?|\.(?<legacy>[^.]+)\.index)\.json$", RegexOptions.CultureInvariant);

    /// <summary>The components model_index.json declares (non-null [library, class] entries), in file order.</summary>
    public static IReadOnlyDictionary<string, ComponentSpec> ParseModelIndex(string json, string source)
    {
        JsonElement root;
        try { root = JsonDocument.Parse(json).RootElement.Clone(); }
        catch (JsonException e)
        {
            throw new DiffusionException("ModelIndexInvalid", DiffusionErrorKind.InvalidData, $"'{source}' is not valid JSON ({e.Message}).", source, e);
        }
        if (root.ValueKind != JsonValueKind.Object)
            throw new DiffusionException("ModelIndexInvalid", DiffusionErrorKind.InvalidData, $"'{source}' is not a JSON object.", source);
        var components = new Dictionary<string, ComponentSpec>(StringComparer.Ordinal);
        foreach (var p in root.EnumerateObject())
        {
            if (p.Name.StartsWith('_') || p.Value.ValueKind != JsonValueKind.Array || p.Value.GetArrayLength() != 2) continue;
            if (p.Value[0].ValueKind != JsonValueKind.String || p.Value[1].ValueKind != JsonValueKind.String) continue;
            if (p.Name.Length == 0 || p.Name.IndexOfAny(['/', '\\', ':', '\0']) >= 0 || p.Name is "." or "..")
                throw new DiffusionException("ModelIndexComponentNameInvalid", DiffusionErrorKind.InvalidData,
                    $"'{source}' declares a component named '{p.Name}', which is not a plain folder name; nothing is downloaded for it.", source);
            components[p.Name] = new ComponentSpec(p.Name, p.Value[0].GetString()!, p.Value[1].GetString()!);
        }
        return components;
    }

    /// <summary>
    /// The components a load of <paramref name="only"/> brings, as New-DiffusionPipeline -Component does: a text
    /// encoder brings its tokenizer, the UNet or transformer brings the scheduler. Null or empty: all of them.
    /// </summary>
    public static IReadOnlyList<string> Components(IReadOnlyDictionary<string, ComponentSpec> declared, string[]? only, string source)
    {
        if (only is not { Length: > 0 }) return declared.Keys.ToList();
        foreach (var name in only)
            if (!declared.ContainsKey(name))
                throw new DiffusionException("ComponentNotDeclared", DiffusionErrorKind.InvalidArgument,
                    $"-Component '{name}': '{source}' has no such component. Its components are: {string.Join(", ", declared.Keys)}.", "Component");
        var set = new HashSet<string>(only, StringComparer.Ordinal);
        if (set.Contains("text_encoder")) set.Add("tokenizer");
        if (set.Contains("text_encoder_2")) set.Add("tokenizer_2");
        if (set.Contains("text_encoder_3")) set.Add("tokenizer_3");
        if (set.Contains("unet") || set.Contains("transformer")) set.Add("scheduler");
        return declared.Keys.Where(set.Contains).ToList();
    }

    /// <summary>The plan's configs only: model_index.json and the config, tokenizer and scheduler files, no weights.</summary>
    public static DownloadPlan WithoutWeights(DownloadPlan plan) =>
        plan with { Files = plan.Files.Where(f => f == ModelIndex || IsConfigFile(Path.GetFileName(f))).ToList() };

    /// <summary>model_index.json, then each wanted component's files; refuses a component that has weights but no safetensors.</summary>
    public static DownloadPlan Select(IEnumerable<string> repoFiles, IReadOnlyDictionary<string, ComponentSpec> declared, string[]? only, string? variant, string source)
    {
        var files = repoFiles.ToHashSet(StringComparer.Ordinal);
        if (!files.Contains(ModelIndex))
            throw new DiffusionException("HubNoModelIndex", DiffusionErrorKind.NotSupported,
                $"'{source}' has no model_index.json at its root, so it is not a diffusers pipeline repo. This module loads diffusers folders " +
                "(model_index.json + one folder per component); pick the diffusers version of the model.", source);
        var components = Components(declared, only, source);
        var chosen = new List<string> { ModelIndex };
        var warnings = new List<string>();
        foreach (var name in components)
        {
            var inFolder = files.Where(f => f.StartsWith(name + "/", StringComparison.Ordinal) && f.IndexOf('/', name.Length + 1) < 0)
                .Select(f => f[(name.Length + 1)..]).OrderBy(f => f, StringComparer.Ordinal).ToList();
            if (inFolder.Count == 0)
            {
                if (only is { Length: > 0 } && only.Contains(name))
                    throw new DiffusionException("HubComponentMissing", DiffusionErrorKind.ObjectNotFound,
                        $"'{source}' declares the component '{name}' in model_index.json but has no '{name}/' folder.", name);
                warnings.Add($"'{source}' declares '{name}' but has no '{name}/' folder; it is skipped.");
                continue;
            }
            var weights = Weights(name, inFolder, variant, source, warnings).ToList();
            // As diffusers: a folder with weights brings its config.json and the weights; any other (tokenizer, scheduler) its config files.
            chosen.AddRange(inFolder.Where(f => weights.Count > 0 ? f == "config.json" : IsConfigFile(f)).Select(f => $"{name}/{f}"));
            chosen.AddRange(weights.Select(f => $"{name}/{f}"));
        }
        // A denoiser without the VAE still reads vae/config.json: the latents' size follows its block_out_channels.
        if ((components.Contains("unet") || components.Contains("transformer")) && !components.Contains("vae") && files.Contains("vae/config.json"))
            chosen.Add("vae/config.json");
        // diffusers' variant_compatible_siblings: a variant no folder of the repo has is an error, not a silent fall-back.
        if (variant is { Length: > 0 } && !files.Any(f => f.Contains('/') && VariantOf(f[(f.LastIndexOf('/') + 1)..]) == variant))
            throw new DiffusionException("HubVariantNotFound", DiffusionErrorKind.ObjectNotFound,
                $"'{source}' has no {variant} weights in any component (no */*.{variant}.safetensors). Leave out -Variant, or pick one the repo has.", "Variant");
        return new DownloadPlan(chosen.Distinct().ToList(), components, warnings);
    }

    private static bool IsConfigFile(string file) =>
        ConfigExtensions.Contains(Path.GetExtension(file), StringComparer.OrdinalIgnoreCase) && !IndexFile.IsMatch(file) && !file.EndsWith(".index.json", StringComparison.Ordinal);

    /// <summary>The variant of a safetensors weight or index file ("" for none), or null for any other file.</summary>
    private static string? VariantOf(string file)
    {
        if (IndexFile.Match(file) is { Success: true } i)
            return i.Groups["variant"].Success ? i.Groups["variant"].Value : i.Groups["legacy"].Success ? i.Groups["legacy"].Value : "";
        if (WeightFile.Match(file) is { Success: true } w) return w.Groups["variant"].Success ? w.Groups["variant"].Value : "";
        return null;
    }

    /// <summary>One component's weight files: the variant's safetensors set, else the plain set.</summary>
    private static IEnumerable<string> Weights(string component, IReadOnlyList<string> inFolder, string? variant, string source, List<string> warnings)
    {
        // variant ("" for none) -> its safetensors files (weights and index)
        var sets = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var f in inFolder)
            if (VariantOf(f) is { } v)
                (sets.TryGetValue(v, out var list) ? list : sets[v] = []).Add(f);
        if (variant is { Length: > 0 } && sets.TryGetValue(variant, out var wanted)) return wanted;
        if (sets.TryGetValue("", out var plain))
        {
            if (variant is { Length: > 0 })
                warnings.Add($"'{source}' has no {variant} weights for '{component}' ({component}/*.{variant}.safetensors); its plain weights are downloaded instead, as diffusers does.");
            return plain;
        }
        if (sets.Count > 0)
        {
            var variants = string.Join(", ", sets.Keys.Order(StringComparer.Ordinal));
            throw new DiffusionException("HubVariantRequired", DiffusionErrorKind.InvalidArgument,
                variant is { Length: > 0 }
                    ? $"'{source}' has no {variant} weights for '{component}', only these variants: {variants}. Use -Variant with one of them."
                    : $"'{source}' has only variant weights for '{component}' ({variants}), no plain {component}/*.safetensors. Add -Variant {sets.Keys.Order(StringComparer.Ordinal).First()}.",
                "Variant");
        }
        var others = inFolder.Where(f => PickleOrOtherWeights.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase)).ToList();
        if (others.Count > 0)
            throw new DiffusionException("HubNoSafetensors", DiffusionErrorKind.NotSupported,
                $"'{source}' has no safetensors weights for '{component}', only {string.Join(", ", others.Select(o => $"{component}/{o}"))}. " +
                "This module loads safetensors only (pickle files such as .bin/.ckpt can run code when opened). Use a revision or repo with safetensors " +
                "(many repos have a refs/pr/N 'Adding safetensors' revision: -Revision refs/pr/N), or convert the model with diffusers' save_pretrained(safe_serialization=True).",
                component);
        return []; // a tokenizer or scheduler: configs only
    }
}
