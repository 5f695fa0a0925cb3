using Diffusion.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Bench;

/// <summary>How far two tensors are apart (e.g. float16 vs float32 output, or ours vs a diffusers reference).</summary>
public sealed record TensorComparison(string Name, long[] Shape, double MaxAbsDifference, double MaxRelativeDifference,
    double MeanAbsDifference, double MaxAbsExpected, double RelativeTolerance, double AbsoluteTolerance, bool WithinTolerance)
{
    /// <summary>max|actual - expected| / max|expected|: the error relative to the tensor's scale.</summary>
    public double ScaledMaxDifference => MaxAbsExpected > 0 ? MaxAbsDifference / MaxAbsExpected : MaxAbsDifference;

    /// <summary>Elementwise |a - e| &lt;= atol + rtol * |e| (numpy.allclose), computed in float64 on the CPU.</summary>
    public static TensorComparison Compare(Tensor expected, Tensor actual, double rtol, double atol, string name = "")
    {
        if (!expected.shape.SequenceEqual(actual.shape))
            throw new DiffusionException("TensorShapeMismatch", DiffusionErrorKind.InvalidArgument,
                $"{name}: shapes differ: expected [{string.Join(",", expected.shape)}], got [{string.Join(",", actual.shape)}].", name);
        using var scope = torch.NewDisposeScope();
        var e = expected.to(ScalarType.Float64, torch.CPU);
        var a = actual.to(ScalarType.Float64, torch.CPU);
        var diff = (a - e).abs();
        var rel = diff / e.abs().clamp_min(1e-12);
        bool ok = (diff - (e.abs() * rtol + atol)).max().item<double>() <= 0;
        return new TensorComparison(name, expected.shape, diff.max().item<double>(), rel.max().item<double>(), diff.mean().item<double>(),
            e.abs().max().item<double>(), rtol, atol, ok);
    }
}
