using System.Text.RegularExpressions;

namespace Diffusion.Engine.IO;

/// <summary>
/// diffusers' rule for which safetensors files of a component folder hold its weights, with and without a variant
/// (<c>variant_compatible_siblings</c> and <c>_add_variant</c> in diffusers 0.40). A variant is a name put before the
/// file's last extension: <c>diffusion_pytorch_model.fp16.safetensors</c>, <c>model.fp16.safetensors</c>; sharded,
/// <c>diffusion_pytorch_model.fp16-00001-of-00002.safetensors</c> with the index
/// <c>diffusion_pytorch_model.safetensors.index.fp16.json</c> (older uploads: <c>…-00001-of-00002.fp16.safetensors</c>
/// and <c>….safetensors.fp16.index.json</c>).
/// <list type="bullet">
/// <item>Without a variant: the non-variant files only. A folder with only variant files is refused, as diffusers
/// refuses it ("no file named diffusion_pytorch_model.safetensors"), naming the variants it has.</item>
/// <item>With a variant: the component's variant files; a component without any falls back to its non-variant files
/// (diffusers does the same per component). <see cref="RequireSomewhere"/> refuses a variant no component has.</item>
/// </list>
/// </summary>
public static class WeightVariants
{
    private const string Shard = @"-\d{5}-of-\d{5}";
    private static readonly Regex PlainSingle = new(@"^[^.]+\.safetensors$", RegexOptions.CultureInvariant);
    private static readonly Regex PlainIndex = new(@"^[^.]+\.safetensors\.index\.json$", RegexOptions.CultureInvariant);
    // variant single (or legacy shard: the stem holds -0000N-of-0000M), new-style shard, new and legacy index
    private static readonly Regex AnyVariantFile = new(@"^[^.]+\.(?<v>[^.]+?)(" + Shard + @")?\.safetensors$", RegexOptions.CultureInvariant);
    private static readonly Regex AnyVariantIndex = new(@"^[^.]+\.safetensors\.(index\.(?<v>[^.]+)|(?<v>[^.]+)\.index)\.json$", RegexOptions.CultureInvariant);

    /// <summary>diffusers' <c>_add_variant</c>: "diffusion_pytorch_model.safetensors" + fp16 → "diffusion_pytorch_model.fp16.safetensors".</summary>
    public static string AddVariant(string weightsName, string? variant)
    {
        if (string.IsNullOrEmpty(variant)) return weightsName;
        var parts = weightsName.Split('.').ToList();
        parts.Insert(parts.Count - 1, variant);
        return string.Join('.', parts);
    }

    /// <summary>
    /// What holds a component's weights: an index (sharded) or a single file, by the rule above; null when the folder has
    /// no safetensors weights at all. Throws WeightsOnlyVariant when only variant files are there and none was asked for.
    /// </summary>
    public static (string? Index, string? Single)? Choose(string componentDir, string? variant)
    {
        var names = Directory.GetFiles(componentDir).Select(Path.GetFileName).OfType<string>().OrderBy(n => n, StringComparer.Ordinal).ToList();
        if (!string.IsNullOrEmpty(variant))
        {
            var v = Regex.Escape(variant);
            var index = names.FirstOrDefault(n => Regex.IsMatch(n, $@"^[^.]+\.safetensors\.index\.{v}\.json$"))
                ?? names.FirstOrDefault(n => Regex.IsMatch(n, $@"^[^.]+\.safetensors\.{v}\.index\.json$"));
            if (index is not null) return (Path.Combine(componentDir, index), null);
            var single = names.FirstOrDefault(n => Regex.IsMatch(n, $@"^[^.]+\.{v}\.safetensors$") && !Regex.IsMatch(n, Shard + $@"\.{v}\.safetensors$"));
            if (single is not null) return (null, Path.Combine(componentDir, single));
        }
        var plainIndex = names.FirstOrDefault(PlainIndex.IsMatch);
        if (plainIndex is not null) return (Path.Combine(componentDir, plainIndex), null);
        var plainSingle = names.FirstOrDefault(n => PlainSingle.IsMatch(n) && !Regex.IsMatch(n, Shard + @"\.safetensors$"));
        if (plainSingle is not null) return (null, Path.Combine(componentDir, plainSingle));
        var found = VariantsIn(names);
        if (found.Count == 0) return null;
        var hint = string.IsNullOrEmpty(variant)
            ? $"Load it with -Variant {found[0]} (diffusers: variant=\"{found[0]}\")"
            : $"It has no '{variant}' files and no full-precision ones to fall back to; load it with -Variant {found[0]}";
        throw new DiffusionException("WeightsOnlyVariant", DiffusionErrorKind.InvalidArgument,
            $"'{componentDir}' has only variant weights ({string.Join(", ", found)}: e.g. {names.First(n => AnyVariantFile.IsMatch(n) || AnyVariantIndex.IsMatch(n))}), " +
            $"and no non-variant file such as diffusion_pytorch_model.safetensors or model.safetensors. {hint}; without one, diffusers loads only non-variant files.", componentDir);
    }

    /// <summary>The variant names (fp16, ema, …) among a folder's weight file names, in order.</summary>
    public static IReadOnlyList<string> VariantsIn(IEnumerable<string> fileNames) =>
        fileNames.Select(n => AnyVariantIndex.Match(n) is { Success: true } i ? i.Groups["v"].Value
                : AnyVariantFile.Match(n) is { Success: true } f ? f.Groups["v"].Value : null)
            .OfType<string>().Distinct(StringComparer.Ordinal).OrderBy(v => v, StringComparer.Ordinal).ToList();

    /// <summary>Whether a component folder has files of this variant.</summary>
    public static bool Has(string componentDir, string variant) =>
        Directory.Exists(componentDir) && VariantsIn(Directory.GetFiles(componentDir).Select(Path.GetFileName).OfType<string>()).Contains(variant);

    /// <summary>
    /// diffusers' pipeline-level check: a variant that none of the model folders has is an error (it would silently load
    /// the full-precision weights everywhere).
    /// </summary>
    public static void RequireSomewhere(string modelPath, IEnumerable<string> componentDirs, string? variant)
    {
        if (string.IsNullOrEmpty(variant)) return;
        var dirs = componentDirs.ToList();
        if (dirs.Any(d => Has(d, variant))) return;
        var others = dirs.Where(Directory.Exists)
            .SelectMany(d => VariantsIn(Directory.GetFiles(d).Select(Path.GetFileName).OfType<string>())).Distinct(StringComparer.Ordinal).ToList();
        throw new DiffusionException("VariantNotFound", DiffusionErrorKind.ObjectNotFound,
            $"-Variant {variant}: no component of '{modelPath}' has '{variant}' weights (files named like {AddVariant("diffusion_pytorch_model.safetensors", variant)}). " +
            (others.Count > 0 ? $"Its variants are: {string.Join(", ", others)}." : "It has only full-precision weights: drop -Variant."), "Variant");
    }
}
