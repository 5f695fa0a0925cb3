using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.Placement;
using Diffusion.Engine.Sharding;
using Diffusion.Engine.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>Builds a component from its folder by the class model_index.json names, and loads its weights strictly.</summary>
internal static class ComponentLoader
{
    /// <summary>The model classes a component can be (the registered ones: <see cref="Models.ModelClasses"/>).</summary>
    public static readonly string[] ModelClasses = [.. Models.ModelClasses.Names];

    /// <param name="placement">Where a model's units go (a device map or CPU offload); null: the whole model on <paramref name="device"/>.</param>
    /// <param name="weights">Where model weights come from (the folder's files, or a single-file checkpoint), and the folder with the configs.</param>
    public static PipelineComponent Load(ComponentWeights weights, ComponentSpec spec, Device device, ScalarType dtype, ComponentPlacement? placement = null)
    {
        var folder = weights.Folder;
        var dir = folder.ComponentPath(spec.Name);
        PlacedModel? placed = null;
        // Models are built on the meta device (no memory, no random initial weights); loading gives each tensor its weight.
        nn.Module LoadModel(ModelClass model)
        {
            var config = weights.ConfigOf(spec);
            return LoadWeights(Construction.OnMeta(() => model.Build(config)), () => weights.For(spec, model.ModuleKey, config),
                weights.FromSingleFile(spec) ? weights.SingleFile!.Path : dir, device, dtype, placement, out placed);
        }
        object instance = spec.ClassName switch
        {
            "CLIPTokenizer" or "CLIPTokenizerFast" => CLIPTokenizer.FromFolder(dir),
            "T5Tokenizer" or "T5TokenizerFast" => T5Tokenizer.FromFolder(dir),
            var c when c.EndsWith("Scheduler", StringComparison.Ordinal) => folder.ComponentFile(spec.Name, "scheduler_config.json"),
            var c when Models.ModelClasses.Find(c) is { } model => LoadModel(model),
            _ => throw new DiffusionException("UnknownComponentClass", DiffusionErrorKind.NotSupported,
                $"The component '{spec.Name}' in '{folder.Path}' is a {spec.Library}.{spec.ClassName}, which this module cannot load. " +
                $"Supported: {string.Join(", ", ModelClasses)}, CLIPTokenizer, T5Tokenizer(Fast) and the schedulers.", spec.Name),
        };
        try
        {
            return new PipelineComponent(spec, weights.FromSingleFile(spec) ? weights.SingleFile!.Path : dir, instance, placed, placement?.Plan);
        }
        catch
        {
            placed?.Dispose();
            (instance as IDisposable)?.Dispose();
            throw;
        }
    }

    private static nn.Module LoadWeights(nn.Module model, Func<WeightSource> source, string dir, Device device, ScalarType dtype,
        ComponentPlacement? placement, out PlacedModel? placed)
    {
        placed = null;
        try
        {
            model.eval();
            if (placement is null)
            {
                // The model is built on meta: its size in the load dtype is known before a byte is read.
                long bytes = model.parameters().Concat(model.buffers())
                    .Sum(t => t.numel() * (torch.is_floating_point(t.dtype) ? ModuleLayouts.DTypeSize(DTypeNames.Name(dtype)) : t.element_size()));
                Devices.MemoryCheck.RequireRoom(device, bytes, $"Loading '{dir}' ({model.GetType().Name}) as {dtype}",
                    "Load it in a smaller -DType (float16, bfloat16), spread it with -DeviceMap auto or -Offload model, or load one stage at a time with -Component.");
                WeightLoader.LoadInto(model, source(), device, dtype);
            }
            else
                placed = placement.Place(model, source(), dtype);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
