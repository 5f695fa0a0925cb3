using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.IO;

/// <summary>
/// Finds a component's safetensors weights (single file or sharded with an index) and loads them into a
/// module strictly: every module key must be in the files, every file key must be in the module, and shapes
/// must match. Pickle checkpoints (.bin, .ckpt, .pt, .pth) are refused.
/// </summary>
public static class WeightLoader
{
    private static readonly string[] PickleExtensions = [".bin", ".ckpt", ".pt", ".pth", ".pkl"];

    /// <summary>
    /// The safetensors files holding a component's weights, in a stable order: the non-variant files, or with
    /// <paramref name="variant"/> (fp16, …) that variant's, by diffusers' rule (<see cref="WeightVariants"/>).
    /// </summary>
    public static IReadOnlyList<string> FindWeightFiles(string componentDir, string? variant = null)
    {
        componentDir = Path.GetFullPath(componentDir);
        if (!Directory.Exists(componentDir))
            throw new DiffusionException("ComponentFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The component folder '{componentDir}' does not exist.", componentDir);
        var choice = WeightVariants.Choose(componentDir, variant);
        if (choice is { Index: { } index }) return ReadIndex(index);
        if (choice is { Single: { } single }) return [single];
        var pickles = Directory.GetFiles(componentDir).Where(IsPickle).ToList();
        if (pickles.Count > 0) throw PickleRefused(pickles[0]);
        throw new DiffusionException("WeightsNotFound", DiffusionErrorKind.ObjectNotFound,
            $"No *.safetensors weights in '{componentDir}'. Check that the model was downloaded completely.", componentDir);
    }

    /// <summary>Whether a file is a pickle checkpoint by its extension (.bin, .ckpt, .pt, .pth, .pkl).</summary>
    public static bool IsPickle(string file) => PickleExtensions.Contains(Path.GetExtension(file).ToLowerInvariant());

    /// <summary>The refusal of a pickle checkpoint, with how to convert it.</summary>
    public static DiffusionException PickleRefused(string file) =>
        new("PickleWeightsRefused", DiffusionErrorKind.NotSupported,
            $"'{file}' is a pickle checkpoint. Pickle files can run arbitrary code when loaded, so this module only loads safetensors. " +
            "Convert it once in Python (e.g. `from safetensors.torch import save_file; save_file(torch.load(p, weights_only=True), 'model.safetensors')`) " +
            "or download the model's safetensors variant.", file);

    private static IReadOnlyList<string> ReadIndex(string indexPath)
    {
        DiffusionException Corrupt(string why) => new("WeightIndexCorrupt", DiffusionErrorKind.InvalidData,
            $"The shard index '{indexPath}' is not valid ({why}); it needs a \"weight_map\" object of tensor name -> shard file name. Download the model again.", indexPath);

        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(indexPath)); }
        catch (JsonException e) { throw Corrupt(e.Message); }
        var shards = new SortedSet<string>(StringComparer.Ordinal);
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw Corrupt("no \"weight_map\" object");
            foreach (var entry in map.EnumerateObject())
            {
                var shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : "";
                if (shard.Length == 0 || Path.GetFileName(shard) != shard || shard is "." or "..")
                    throw Corrupt($"tensor '{entry.Name}' maps to {entry.Value.GetRawText()}, not a file name in the index's folder");
                shards.Add(shard);
            }
        }
        if (shards.Count == 0) throw Corrupt("its weight_map is empty");
        var dir = Path.GetDirectoryName(indexPath)!;
        var files = shards.Select(f => Path.Combine(dir, f)).ToList();
        foreach (var f in files)
            if (!File.Exists(f))
                throw new DiffusionException("WeightShardNotFound", DiffusionErrorKind.ObjectNotFound,
                    $"The index '{indexPath}' names the shard '{Path.GetFileName(f)}', which is missing. Download the model again.", f);
        return files;
    }

    /// <summary>
    /// Loads the component's weights into <paramref name="module"/> (strict), casting floating tensors to <paramref name="dtype"/>.
    /// <paramref name="moduleKey"/> maps a checkpoint key to the module's key where a library renamed keys between
    /// versions (e.g. transformers 5 dropped CLIPTextModel's "text_model." prefix); identity when null.
    /// </summary>
    public static void LoadInto(nn.Module module, string componentDir, Device device, ScalarType dtype, Func<string, string>? moduleKey = null)
        => LoadInto(module, FindWeightFiles(componentDir), device, dtype, moduleKey);

    public static void LoadInto(nn.Module module, IReadOnlyList<string> files, Device device, ScalarType dtype, Func<string, string>? moduleKey = null)
        => LoadInto(module, WeightSource.FromFiles(files, moduleKey), device, dtype);

    public static void LoadInto(nn.Module module, WeightSource source, Device device, ScalarType dtype)
    {
        using var weights = CheckedWeights.Open(module, source);
        weights.LoadInto(module, "", device, dtype);
    }

    internal static void CheckKeys(nn.Module module, string label, IEnumerable<string> moduleKeys, IEnumerable<string> fileKeys)
        => CheckKeysCore(module, label, moduleKeys, fileKeys);

    private static void CheckKeysCore(nn.Module module, string label, IEnumerable<string> moduleKeys, IEnumerable<string> fileKeys)
    {
        var expected = moduleKeys.ToHashSet(StringComparer.Ordinal);
        var present = fileKeys.ToHashSet(StringComparer.Ordinal);
        var missing = expected.Where(k => !present.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var unexpected = present.Where(k => !expected.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (missing.Count == 0 && unexpected.Count == 0) return;
        static string List(List<string> ks) => string.Join(", ", ks.Take(8)) + (ks.Count > 8 ? $" (+{ks.Count - 8} more)" : "");
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"missing {missing.Count} weight(s): {List(missing)}");
        if (unexpected.Count > 0) parts.Add($"unexpected {unexpected.Count} weight(s): {List(unexpected)}");
        throw new DiffusionException("WeightKeysMismatch", DiffusionErrorKind.InvalidData,
            $"The weights in '{label}' do not fit the {module.GetType().Name} built from its config.json: {string.Join("; ", parts)}. " +
            "Check that config.json belongs to these weights (same model and version).", label);
    }

    internal static void CheckCompatible(MappedTensor source, Tensor dst)
    {
        var (key, path) = (source.Describe(), source.File.Path);
        if (!source.Shape.SequenceEqual(dst.shape))
            throw new DiffusionException("WeightShapeMismatch", DiffusionErrorKind.InvalidData,
                $"Weight '{key}' in '{path}' has shape [{string.Join(",", source.Shape)}] but the model built from config.json expects [{string.Join(",", dst.shape)}]. " +
                "Check that config.json belongs to these weights.", path);
        bool floating = torch.is_floating_point(dst.dtype);
        var srcType = DTypes.ToScalarType(source.DType, path, source.SourceKey);
        if (floating != torch.is_floating_point(srcType))
            throw new DiffusionException("WeightDTypeMismatch", DiffusionErrorKind.InvalidData,
                $"Weight '{key}' in '{path}' is {source.DType} but the model expects a {(floating ? "floating-point" : "integer")} tensor.", path);
    }
}

/// <summary>
/// A component's weight files, opened and checked against a module (every key present both ways, shapes and kinds
/// compatible) before anything is loaded, so a mismatch leaves the module as it was. Keeps the files open until
/// disposed, for loads that read tensors later (weights offloaded to disk are read from here on every use).
/// </summary>
public sealed class CheckedWeights : IDisposable
{
    private readonly List<SafeTensorsFile> _files;
    private readonly Dictionary<string, MappedTensor> _where;
    private readonly List<(string Prefix, IKeepInFloat32 Module)> _keepInFloat32;

    private CheckedWeights(List<SafeTensorsFile> files, Dictionary<string, MappedTensor> where, List<(string, IKeepInFloat32)> keepInFloat32)
    {
        _files = files; _where = where; _keepInFloat32 = keepInFloat32;
    }

    public static CheckedWeights Open(nn.Module module, IReadOnlyList<string> files, Func<string, string>? moduleKey = null)
        => Open(module, WeightSource.FromFiles(files, moduleKey));

    /// <summary>Opens the source's files and checks its tensors (under their module keys) against the module, strictly.</summary>
    public static CheckedWeights Open(nn.Module module, WeightSource source)
    {
        var opened = new List<SafeTensorsFile>();
        try
        {
            foreach (var f in source.Files) opened.Add(SafeTensorsFile.Open(f));
            var where = WeightSource.Index(source.Map(opened)); // module key -> where its tensor comes from
            var target = module.state_dict();
            WeightLoader.CheckKeys(module, source.Label, target.Keys, where.Keys);
            foreach (var (key, dst) in target)
                WeightLoader.CheckCompatible(where[key], dst);
            var keep = module.named_modules().Prepend(("", module))
                .Where(m => m.Item2 is IKeepInFloat32)
                .Select(m => (m.Item1.Length == 0 ? "" : m.Item1 + ".", (IKeepInFloat32)m.Item2)).ToList();
            return new CheckedWeights(opened, where, keep);
        }
        catch
        {
            foreach (var f in opened) f.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Gives every parameter and buffer of <paramref name="module"/> (the model itself, or its unit at <paramref name="prefix"/>)
    /// its weight from the files: a new tensor read from disk, cast to <paramref name="dtype"/> (floating tensors) and put on
    /// <paramref name="device"/>, in place of the tensor the module was built with (on the meta device, normally). One
    /// tensor at a time passes through host memory, in the file's dtype.
    /// </summary>
    public void LoadInto(nn.Module module, string prefix, Device device, ScalarType dtype) =>
        MetaModules.Replace(module, (key, old, _) => Contains(key) ? Make(key, old, device, dtype) : null, prefix);

    /// <summary>Whether the files hold a weight for this module key (non-persistent buffers have none).</summary>
    public bool Contains(string moduleKey) => _where.ContainsKey(moduleKey);

    /// <summary>
    /// The dtype of a model tensor in a model loaded as <paramref name="dtype"/>: floating tensors take it (as Module.to
    /// casts them), others keep theirs, and the children an <see cref="IKeepInFloat32"/> module names stay float32.
    /// </summary>
    public ScalarType DTypeFor(string moduleKey, Tensor like, ScalarType dtype)
    {
        if (!torch.is_floating_point(like.dtype)) return like.dtype;
        foreach (var (prefix, module) in _keepInFloat32)
            if (moduleKey.StartsWith(prefix, StringComparison.Ordinal)
                && module.KeepInFloat32(dtype).Any(child => moduleKey.AsSpan(prefix.Length).StartsWith(child + ".", StringComparison.Ordinal)))
                return ScalarType.Float32;
        return dtype;
    }

    /// <summary>The weight of a module key as the model wants it: in its <see cref="DTypeFor"/> dtype, on <paramref name="device"/>.</summary>
    public Tensor Make(string moduleKey, Tensor like, Device device, ScalarType dtype) =>
        Read(moduleKey, device, DTypeFor(moduleKey, like, dtype));

    /// <summary>The weight of a module key, read onto the CPU in its stored dtype.</summary>
    public Tensor Read(string moduleKey) => _where[moduleKey].Load();

    /// <summary>The weight of a module key in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public Tensor Read(string moduleKey, Device device, ScalarType dtype)
    {
        LoadCancellation.ThrowIfStopped(); // Ctrl+C: stop between tensors; the loader disposes what it built
        return _where[moduleKey].Load(device, dtype);
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}

/// <summary>
/// transformers' _keep_in_fp32_modules: a module whose named children keep float32 weights when the model is loaded
/// (or converted) in a reduced precision, because their activations would overflow there.
/// </summary>
public interface IKeepInFloat32
{
    /// <summary>The children (field names) that stay float32 when the model is loaded as <paramref name="dtype"/>.</summary>
    IReadOnlyList<string> KeepInFloat32(ScalarType dtype);
}
