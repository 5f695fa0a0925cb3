using System.Runtime.InteropServices;
using System.Text.Json;
using Diffusion.Engine.Families;
using Diffusion.Engine;
using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Sharding;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Bench;

/// <summary>
/// For the benchmark: the activation memory one FLUX transformer forward really takes on the CPU, next to
/// <see cref="ActivationEstimator"/>'s figure. Linux only: the process's peak resident memory (VmHWM, reset through
/// /proc/self/clear_refs) over its resident memory at rest, after warm-up runs and with freed heap memory returned
/// to the system (malloc_trim), so what is measured is what the forward allocates.
/// </summary>
public static class ActivationProbe
{
    [DllImport("libc", EntryPoint = "malloc_trim")]
    public static extern int MallocTrim(nuint pad);

    /// <summary>(measured bytes, estimated bytes) for a FLUX transformer of the given config (random weights) at size x size; null off Linux.</summary>
    public static (long Measured, long Estimated)? MeasureFlux(string configJson, string dtype, int size, int textLength = 512)
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/self/clear_refs")) return null;
        TorchBackend.EnsureLoaded();
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, configJson);
            var config = FluxTransformer2DConfig.Load(path);
            var type = DTypeNames.Parse(dtype);
            using var model = new FluxTransformer2DModel(config);
            model.eval();
            model.to(type);
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            int side = size / 16;
            var hidden = torch.randn([1, side * side, config.InChannels], device: torch.CPU).to(type);
            var context = torch.randn([1, textLength, config.JointAttentionDim], device: torch.CPU).to(type);
            var pooled = torch.randn([1, config.PooledProjectionDim], device: torch.CPU).to(type);
            var t = torch.tensor(new[] { 0.5f }, device: torch.CPU);
            Tensor? guidance = config.GuidanceEmbeds ? torch.tensor(new[] { 3.5f }, device: torch.CPU) : null;
            var imageIds = FluxLatents.PrepareLatentImageIds(side, side);
            var textIds = FluxLatents.TextIds(textLength);
            void Forward() { using var _ = model.forward(hidden, context, pooled, t, imageIds, textIds, guidance); }
            Forward();
            Forward();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            MallocTrim(0);
            File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM to the current resident size
            long rest = Status("VmRSS");
            Forward();
            long peak = Status("VmHWM");
            var estimate = ActivationEstimator.For(FluxTransformer2DModel.Registration.ClassName, config, dtype,
                new ActivationRequest(size, size, TextLength: textLength));
            return (peak - rest, estimate.Bytes);
        }
        finally { File.Delete(path); }
    }

    /// <summary>A /proc/self/status figure in bytes (VmRSS, VmHWM, ...).</summary>
    public static long Status(string key)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(key + ":", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
