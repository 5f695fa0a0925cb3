using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>Checks on what a stage hands out, so that a broken run fails with its cause instead of a black image.</summary>
internal static class OutputChecks
{
    /// <summary>
    /// Throws NonFiniteOutput when any image of <paramref name="batch"/> [B,...] holds NaN or Inf: one reduction on the
    /// device and one small copy to the host per call (once per run, not per step).
    /// </summary>
    public static void RequireFinite(Tensor batch, IReadOnlyList<int> indices, string stage, string what, string usualCauses)
    {
        using var scope = torch.NewDisposeScope();
        var finite = torch.isfinite(batch).flatten(1).all(1).to(torch.CPU).data<bool>().ToArray(); // [B]
        var bad = indices.Where((_, k) => !finite[k]).ToList();
        if (bad.Count == 0) return;
        throw new DiffusionException("NonFiniteOutput", DiffusionErrorKind.InvalidData,
            $"{stage} gave NaN or infinite {what} for image(s) #{string.Join(", #", bad)}, which would save as a black image. " +
            $"Usual causes: {usualCauses}.", stage);
    }
}
