using Diffusion.Engine.Models;

namespace Diffusion.Engine.Sharding;


/// <summary>Peak activation memory of one forward pass, in bytes, and what it was computed for.</summary>
public sealed record ActivationEstimate(long Bytes, string Note);

/// <summary>
/// The activation memory a component needs on the device that computes it, from its config at the requested image
/// size. Counts what this engine's code keeps alive, not what PyTorch would: TorchSharp frees a module's
/// intermediates when its dispose scope ends, so the peak of a block is what the block holds plus the peak of the
/// sub-module running at that moment. The figures follow the block code (Models/Blocks) and count the tensors it
/// allocates; libtorch's own scratch (attention kernels, workspaces) and the allocator's rounding come on top.
/// Measured on the CPU (ActivationProbe, the benchmark's rows: a FLUX transformer of width 1024 at 512-1024 px), the
/// forward's peak resident memory was 0.86-1.38x the counted tensors in bfloat16 and 1.35-1.52x in float32, so the
/// count is scaled by 1.4 for half types and 1.6 for float32. GPU kernels were not measured (no GPU in that session).
/// </summary>
public static class ActivationEstimator
{
    private static double Margin(int elementBytes) => elementBytes < 4 ? 1.4 : 1.6;

    /// <summary>
    /// The estimate for a model of <paramref name="className"/> with its typed <paramref name="config"/> (null: the class's
    /// defaults); a class without a registration has none (0 bytes).
    /// </summary>
    public static ActivationEstimate For(string className, IModelConfig? config, string dtype, ActivationRequest r)
    {
        int e = ModuleLayouts.DTypeSize(dtype);
        var model = ModelClasses.Find(className);
        var (bytes, what) = model is null ? (0.0, "no estimate for this class") : model.Activations(config ?? model.DefaultConfig(), e, r);
        return new ActivationEstimate((long)Math.Ceiling(bytes * Margin(e)), $"{className} at {r} in {dtype}: {what}");
    }
}
