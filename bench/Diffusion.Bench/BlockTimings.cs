using System.Diagnostics;
using Diffusion.Engine.Families;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Placement;
using Diffusion.Engine.Sharding;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Bench;

/// <summary>
/// Per-block timing of a loaded pipeline's denoiser (the speed issue's per-block table): one model call of a denoising
/// step on random inputs of the real shapes, timed unit by unit by forward hooks registered on the units for the
/// measured calls (the units a device map places: time embedding, conv_in, each down/up block, the mid block, ...;
/// FLUX's embedders and every double and single block), plus the whole call and one scheduler step (SD: Euler, as bench/sxs uses; set-up included). CPU calls are
/// synchronous, so wall time per unit is the unit's time. bench/sxs/diffusers_blocks.py times the same units of
/// diffusers' models with forward hooks, under the same names.
/// </summary>
public static class BlockTimings
{
    /// <summary>Median seconds per call of each unit over <paramref name="repeats"/> calls after one warm-up, in call order.</summary>
    public static IReadOnlyList<KeyValuePair<string, double>> Measure(DiffusionPipeline pipe, int height, int width, int repeats = 3, int textLength = 512)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var generator = new torch.Generator(0, torch.CPU);
        (nn.Module model, Action call, Action step) = pipe.Has("unet") ? Unet(pipe, height, width, generator) : Flux(pipe, height, width, textLength, generator);
        var samples = new Dictionary<string, List<double>>();
        var order = new List<string>();
        void Record(string name, double seconds)
        {
            if (!samples.TryGetValue(name, out var list)) { samples[name] = list = []; order.Add(name); }
            list.Add(seconds);
        }

        call(); // warm-up: first-call allocations and kernel selection
        var removeHooks = Units(model).Select(u => ForwardHooks.TryAttach(u.Module, new UnitTiming(u.Path, Record))).OfType<Action>().ToList();
        try
        {
            for (int r = 0; r < repeats; r++)
            {
                var clock = Stopwatch.StartNew();
                call();
                Record("(model call)", clock.Elapsed.TotalSeconds);
            }
        }
        finally { foreach (var remove in removeHooks) remove(); }
        for (int r = 0; r < repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            step();
            Record("(scheduler step)", clock.Elapsed.TotalSeconds);
        }
        return order.Select(n => new KeyValuePair<string, double>(n, Median(samples[n]))).ToList();
    }

    private static (nn.Module, Action, Action) Unet(DiffusionPipeline pipe, int height, int width, torch.Generator generator)
    {
        var unet = pipe.Require<UNet2DConditionModel>("unet", "Block timings");
        var dtype = pipe.TorchDType; var device = pipe.TorchDevice;
        int crossDim = unet.Config.CrossAttentionDim.PerBlock(unet.Config.DownBlockTypes.Length, "cross_attention_dim", unet.Config.SourcePath)[0];
        // Classifier-free guidance: a batch of 2, as a denoising step runs it.
        var latents = torch.randn([2, unet.Config.InChannels, height / pipe.VaeScaleFactor, width / pipe.VaeScaleFactor], generator: generator).to(dtype, device);
        var context = torch.randn([2, 77, crossDim], generator: generator).to(dtype, device);
        var t = torch.full([], 500f, ScalarType.Float32, device);
        var sample = latents.narrow(0, 0, 1);
        return (unet, () => unet.forward(latents, t, context).Dispose(), () =>
        {
            var scheduler = pipe.CreateScheduler("euler", "Block timings"); // fresh each time: schedulers keep step state
            scheduler.SetTimesteps(20);
            scheduler.Step(sample, 0, sample, generator).Dispose();
        });
    }

    private static (nn.Module, Action, Action) Flux(DiffusionPipeline pipe, int height, int width, int textLength, torch.Generator generator)
    {
        var transformer = pipe.Require<FluxTransformer2DModel>("transformer", "Block timings");
        var c = transformer.Config;
        var dtype = pipe.TorchDType; var device = pipe.TorchDevice;
        int gridH = height / (pipe.VaeScaleFactor * 2), gridW = width / (pipe.VaeScaleFactor * 2);
        var hidden = torch.randn([1, gridH * gridW, c.InChannels], generator: generator).to(dtype, device);
        var context = torch.randn([1, textLength, c.JointAttentionDim], generator: generator).to(dtype, device);
        var pooled = torch.randn([1, c.PooledProjectionDim], generator: generator).to(dtype, device);
        var t = torch.tensor(new[] { 0.5f }, device: device);
        Tensor? guidance = c.GuidanceEmbeds ? torch.tensor(new[] { 3.5f }, device: device) : null;
        var imageIds = FluxLatents.PrepareLatentImageIds(gridH, gridW);
        var textIds = FluxLatents.TextIds(textLength);
        var rotary = transformer.RotaryEmbedding(imageIds, textIds); // made once per run, as the denoise loop does
        var sample = hidden;
        return (transformer, () => transformer.forward(hidden, context, pooled, t, imageIds, textIds, guidance, rotary).Dispose(), () =>
        {
            var scheduler = pipe.CreateScheduler(null, "Block timings"); // fresh each time: schedulers keep step state
            scheduler.SetTimesteps(20, mu: 1.0);
            scheduler.Step(sample, 0, sample, generator).Dispose();
        });
    }

    private static double Median(List<double> values)
    {
        var sorted = values.OrderBy(v => v).ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    /// <summary>The model's units, as a device map plans them (the layout of its own tensors), with their modules.</summary>
    private static IEnumerable<(string Path, nn.Module Module)> Units(nn.Module model)
    {
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var tensors = model.state_dict().Select(kv => new TensorEntry(kv.Key, "F32", kv.Value.shape));
        foreach (var unit in ModuleLayouts.FromTensors(model.GetType().Name, tensors, "float32").Units)
            if (modules.TryGetValue(unit.Path, out var m)) yield return (unit.Path, m);
    }

    /// <summary>Wall time of each call of one unit (CPU calls are synchronous); units do not nest, so one clock per unit does.</summary>
    private sealed class UnitTiming(string name, Action<string, double> record) : IForwardHooks
    {
        private Stopwatch? _clock;

        public void Enter(nn.Module module) => _clock = Stopwatch.StartNew();
        public T Input<T>(T argument) => argument;

        public TResult Exit<TResult>(nn.Module module, TResult result)
        {
            if (_clock is { } clock) record(name, clock.Elapsed.TotalSeconds);
            _clock = null;
            return result;
        }
    }
}
