using Diffusion.Engine.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>Matches a LoRA file's layers to a pipeline's loaded models and hooks them (see <see cref="LoraAdapter"/>).</summary>
public static class LoraApplier
{
    public static LoraAdapter Add(DiffusionPipeline pipeline, string path, string? name = null, double scale = 1.0)
    {
        if (!double.IsFinite(scale))
            throw new DiffusionException("LoraScaleInvalid", DiffusionErrorKind.InvalidArgument, $"The LoRA scale {scale} is not a finite number.", "Scale");
        using var file = LoraFile.Open(path);
        name ??= System.IO.Path.GetFileNameWithoutExtension(file.Path);
        if (pipeline.Loras.Find(name) is not null)
            throw new DiffusionException("LoraNameTaken", DiffusionErrorKind.InvalidOperation,
                $"The pipeline already has a LoRA named '{name}'. Give this one another -Name, or remove the other first (Remove-DiffusionLora -Name '{name}').", name);

        var byComponent = file.Layers.GroupBy(l => l.Component).ToList();
        var skipped = new List<string>();
        var matched = new List<(LoraLayer Layer, nn.Module<Tensor, Tensor> Target, string ModulePath)>();
        var unmatched = new List<string>();
        foreach (var group in byComponent)
        {
            if (!pipeline.Components.TryGetValue(group.Key, out var component))
            {
                if (pipeline.Folder.Components.ContainsKey(group.Key)) { skipped.Add(group.Key); continue; } // declared, not loaded: a staged pipeline
                unmatched.AddRange(group.Select(l => $"{l.Component}.{l.Module}"));
                continue;
            }
            if (component.Instance is not nn.Module model)
            {
                unmatched.AddRange(group.Select(l => $"{l.Component}.{l.Module}"));
                continue;
            }
            var modules = new Modules(model);
            foreach (var layer in group)
            {
                var found = modules.Find(layer);
                if (found is null) unmatched.Add($"{layer.Component}.{layer.Module}");
                else matched.Add((layer, found.Value.Module, found.Value.Path));
            }
        }
        if (unmatched.Count > 0)
            throw new DiffusionException("LoraKeysUnmatched", DiffusionErrorKind.InvalidData,
                $"{unmatched.Count} of the {file.Layers.Count} layers in '{file.Path}' match no layer of this {pipeline.ClassName}, e.g. " +
                $"{string.Join(", ", unmatched.Take(5))}. The LoRA was made for another model (or architecture); nothing was applied.", file.Path);
        if (matched.Count == 0)
            throw new DiffusionException("LoraComponentsNotLoaded", DiffusionErrorKind.InvalidOperation,
                $"'{file.Path}' patches {string.Join(", ", skipped)}, which this pipeline was loaded without (it has: {string.Join(", ", pipeline.Components.Keys)}). " +
                $"Add it to the pipeline that loads {string.Join(" or ", skipped)}.", file.Path);

        var layers = new List<PatchedLayer>();
        LoraAdapter? adapter = null;
        try
        {
            foreach (var (layer, target, modulePath) in matched)
            {
                var down = file.ReadDown(layer);
                var up = file.ReadUp(layer);
                try { CheckShapes(file.Path, layer, target, down, up); }
                catch { down.Dispose(); up.Dispose(); throw; }
                layers.Add(new PatchedLayer(layer.Component, modulePath, target, down.DetachFromDisposeScope(), up.DetachFromDisposeScope(), layer.Scaling,
                    () => adapter!.EffectiveScale)); // the variable is captured: set below, read at each call
            }
            adapter = new LoraAdapter(pipeline.Loras, name, file.Path, file.Format, scale, layers, skipped);
            pipeline.Loras.Add(adapter);
            return adapter;
        }
        catch
        {
            foreach (var l in layers) l.Dispose();
            throw;
        }
    }

    private static void CheckShapes(string path, LoraLayer layer, nn.Module<Tensor, Tensor> target, Tensor down, Tensor up)
    {
        (long In, long Out, bool Conv) expected = target switch
        {
            Linear l => (l.in_features, l.out_features, false),
            Conv2d c => (c.in_channels, c.out_channels, true),
            _ => throw new DiffusionException("LoraTargetUnsupported", DiffusionErrorKind.NotSupported,
                $"'{path}' patches '{layer.Component}.{layer.Module}', a {target.GetType().Name}; LoRA is applied to Linear and 1x1 Conv2d layers only.", path),
        };
        bool convPair = down.dim() == 4 && up.dim() == 4 && down.shape[2] == 1 && down.shape[3] == 1 && up.shape[2] == 1 && up.shape[3] == 1;
        bool shapesFit = (expected.Conv ? convPair : down.dim() == 2 && up.dim() == 2)
            && down.shape[1] == expected.In && up.shape[0] == expected.Out && up.shape[1] == down.shape[0];
        if (expected.Conv && target is Conv2d conv && (conv.kernel_size.Any(k => k != 1)))
            shapesFit = false;
        if (!shapesFit)
            throw new DiffusionException("LoraShapeMismatch", DiffusionErrorKind.InvalidData,
                $"'{path}': the layer '{layer.Component}.{layer.Module}' is [{expected.Out} x {expected.In}] in this model, but the LoRA's down is " +
                $"[{string.Join(",", down.shape)}] and up [{string.Join(",", up.shape)}]. The LoRA was made for a model of another size.", path);
    }

    /// <summary>A model's modules by dotted path, and by kohya's underscore-flattened path.</summary>
    private sealed class Modules
    {
        private readonly Dictionary<string, nn.Module> _dotted = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string> _flattened = new(StringComparer.Ordinal);
        private readonly List<(string Sgm, string Diffusers)> _sgmBlocks;

        public Modules(nn.Module model)
        {
            foreach (var (path, module) in model.named_modules())
            {
                if (path.Length == 0) continue;
                _dotted[path] = module;
                _flattened[path.Replace('.', '_')] = path;
            }
            _sgmBlocks = SgmAttentionBlocks();
        }

        /// <summary>
        /// kohya's SDXL files name the UNet's attention blocks as the original (SGM) UNet does: input_blocks_n_1,
        /// middle_block_1, output_blocks_n_1. Their diffusers names follow from the blocks' layer counts, as diffusers'
        /// _maybe_map_sgm_blocks_to_diffusers maps them: input block 0 is conv_in, then each down block's layers and
        /// its downsampler; each up block's layers (its upsampler sits in its last layer).
        /// </summary>
        private List<(string, string)> SgmAttentionBlocks()
        {
            var map = new List<(string, string)>();
            int Count(string prefix) => Enumerable.Range(0, 64).TakeWhile(i => _dotted.ContainsKey($"{prefix}.{i}")).Count();
            int input = 1;
            for (int k = 0; _dotted.ContainsKey($"down_blocks.{k}"); k++)
            {
                int layers = Count($"down_blocks.{k}.resnets");
                for (int j = 0; j < layers; j++, input++)
                    if (_dotted.ContainsKey($"down_blocks.{k}.attentions.{j}")) map.Add(($"input_blocks_{input}_1_", $"down_blocks_{k}_attentions_{j}_"));
                if (_dotted.ContainsKey($"down_blocks.{k}.downsamplers")) input++;
            }
            if (_dotted.ContainsKey("mid_block.attentions.0")) map.Add(("middle_block_1_", "mid_block_attentions_0_"));
            int output = 0;
            for (int k = 0; _dotted.ContainsKey($"up_blocks.{k}"); k++)
            {
                int layers = Count($"up_blocks.{k}.resnets");
                for (int j = 0; j < layers; j++, output++)
                    if (_dotted.ContainsKey($"up_blocks.{k}.attentions.{j}")) map.Add(($"output_blocks_{output}_1_", $"up_blocks_{k}_attentions_{j}_"));
            }
            return map;
        }

        public (nn.Module<Tensor, Tensor> Module, string Path)? Find(LoraLayer layer)
        {
            foreach (var candidate in Spellings(layer))
            {
                var path = layer.Flattened ? _flattened.GetValueOrDefault(candidate) : candidate;
                if (path is not null && _dotted.TryGetValue(path, out var m) && m is nn.Module<Tensor, Tensor> typed) return (typed, path);
            }
            return null;
        }

        // Text encoders saved by transformers < 5.6 (most files) spell their layers with a leading text_model level;
        // kohya's SDXL UNet layers have SGM block names.
        private IEnumerable<string> Spellings(LoraLayer layer)
        {
            yield return layer.Module;
            var prefix = layer.Flattened ? "text_model_" : "text_model.";
            if (layer.Module.StartsWith(prefix, StringComparison.Ordinal)) yield return layer.Module[prefix.Length..];
            if (!layer.Flattened) yield break;
            foreach (var (sgm, diffusers) in _sgmBlocks)
                if (layer.Module.StartsWith(sgm, StringComparison.Ordinal)) yield return diffusers + layer.Module[sgm.Length..];
        }
    }
}
