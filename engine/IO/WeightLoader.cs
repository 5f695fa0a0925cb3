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

    /// <summary>The safetensors files holding a component's weights, in a stable order.</summary>
    public static IReadOnlyList<string> FindWeightFiles(string componentDir)
    {
        componentDir = Path.GetFullPath(componentDir);
        if (!Directory.Exists(componentDir))
            throw new DiffusionException("ComponentFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The component folder '{componentDir}' does not exist.", componentDir);
        var index = Directory.GetFiles(componentDir, "*.safetensors.index.json").OrderBy(f => f, StringComparer.Ordinal).FirstOrDefault();
        if (index is not null) return ReadIndex(index);
        var files = Directory.GetFiles(componentDir, "*.safetensors").OrderBy(f => f, StringComparer.Ordinal).ToList();
        // Prefer the full-precision file when variants (model.fp16.safetensors) sit beside it.
        var plain = files.Where(f => Path.GetFileName(f).Split('.').Length == 2).ToList();
        if (plain.Count > 0) return plain.Take(1).ToList();
        if (files.Count > 0) return files.Take(1).ToList();
        var pickles = Directory.GetFiles(componentDir).Where(f => PickleExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).ToList();
        if (pickles.Count > 0)
            throw new DiffusionException("PickleWeightsRefused", DiffusionErrorKind.NotSupported,
                $"'{pickles[0]}' is a pickle checkpoint. Pickle files can run arbitrary code when loaded, so this module only loads safetensors. " +
                "Convert it once in Python (e.g. `from safetensors.torch import save_file; save_file(torch.load(p, weights_only=True), 'model.safetensors')`) " +
                "or download the model's safetensors variant.", pickles[0]);
        throw new DiffusionException("WeightsNotFound", DiffusionErrorKind.ObjectNotFound,
            $"No *.safetensors weights in '{componentDir}'. Check that the model was downloaded completely.", componentDir);
    }

    private static IReadOnlyList<string> ReadIndex(string indexPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            var map = doc.RootElement.GetProperty("weight_map");
            var dir = Path.GetDirectoryName(indexPath)!;
            var files = map.EnumerateObject().Select(p => p.Value.GetString()!).Distinct().OrderBy(f => f, StringComparer.Ordinal)
                .Select(f => Path.Combine(dir, f)).ToList();
            foreach (var f in files)
                if (!File.Exists(f))
                    throw new DiffusionException("WeightShardNotFound", DiffusionErrorKind.ObjectNotFound,
                        $"The index '{indexPath}' names the shard '{Path.GetFileName(f)}', which is missing. Download the model again.", f);
            return files;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new DiffusionException("WeightIndexCorrupt", DiffusionErrorKind.InvalidData,
                $"The shard index '{indexPath}' is not valid ({e.Message}); it needs a \"weight_map\" object of tensor name -> file.", indexPath, e);
        }
    }

    /// <summary>Loads the component's weights into <paramref name="module"/> (strict), casting floating tensors to <paramref name="dtype"/>.</summary>
    public static void LoadInto(nn.Module module, string componentDir, Device device, ScalarType dtype)
        => LoadInto(module, FindWeightFiles(componentDir), device, dtype);

    public static void LoadInto(nn.Module module, IReadOnlyList<string> files, Device device, ScalarType dtype)
    {
        var opened = files.Select(SafeTensorsFile.Open).ToList();
        try
        {
            var where = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            foreach (var f in opened)
                foreach (var k in f.Tensors.Keys)
                    where[k] = f;
            var target = module.state_dict();
            var label = files.Count == 1 ? files[0] : Path.GetDirectoryName(files[0])!;
            var missing = target.Keys.Where(k => !where.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
            var unexpected = where.Keys.Where(k => !target.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
            if (missing.Count > 0 || unexpected.Count > 0)
            {
                string List(List<string> ks) => string.Join(", ", ks.Take(8)) + (ks.Count > 8 ? $" (+{ks.Count - 8} more)" : "");
                var parts = new List<string>();
                if (missing.Count > 0) parts.Add($"missing {missing.Count} weight(s): {List(missing)}");
                if (unexpected.Count > 0) parts.Add($"unexpected {unexpected.Count} weight(s): {List(unexpected)}");
                throw new DiffusionException("WeightKeysMismatch", DiffusionErrorKind.InvalidData,
                    $"The weights in '{label}' do not fit the {module.GetType().Name} built from its config.json: {string.Join("; ", parts)}. " +
                    "Check that config.json belongs to these weights (same model and version).", label);
            }
            using var _ = torch.no_grad();
            module.to(device);
            module.to(dtype); // floating-point parameters and buffers only
            target = module.state_dict();
            foreach (var (key, dst) in target)
            {
                var file = where[key];
                var info = file.Tensors[key];
                if (!info.Shape.SequenceEqual(dst.shape))
                    throw new DiffusionException("WeightShapeMismatch", DiffusionErrorKind.InvalidData,
                        $"Weight '{key}' in '{file.Path}' has shape [{string.Join(",", info.Shape)}] but the model built from config.json expects [{string.Join(",", dst.shape)}]. " +
                        "Check that config.json belongs to these weights.", file.Path);
                bool floating = torch.is_floating_point(dst.dtype);
                var srcType = DTypes.ToScalarType(info.DType, file.Path, key);
                if (floating != torch.is_floating_point(srcType))
                    throw new DiffusionException("WeightDTypeMismatch", DiffusionErrorKind.InvalidData,
                        $"Weight '{key}' in '{file.Path}' is {info.DType} but the model expects a {(floating ? "floating-point" : "integer")} tensor.", file.Path);
                using var src = file.Load(key);
                dst.copy_(src); // casts to the parameter's dtype and moves to its device
            }
        }
        finally
        {
            foreach (var f in opened) f.Dispose();
        }
    }
}
