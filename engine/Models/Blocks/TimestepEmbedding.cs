using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>
/// diffusers' <c>Timesteps</c>: the sinusoidal embedding of (possibly fractional) timesteps. It has no weights and
/// always computes in float32, as diffusers does; callers cast the result to the model's dtype.
/// </summary>
public sealed class Timesteps
{
    private readonly long _numChannels;
    private readonly bool _flipSinToCos;
    private readonly double _downscaleFreqShift;
    private readonly double _scale;

    public Timesteps(long numChannels, bool flipSinToCos, double downscaleFreqShift, double scale = 1)
    {
        _numChannels = numChannels;
        _flipSinToCos = flipSinToCos;
        _downscaleFreqShift = downscaleFreqShift;
        _scale = scale;
    }

    /// <param name="timesteps">[N]</param>
    /// <returns>[N, numChannels] float32</returns>
    public Tensor forward(Tensor timesteps)
        => GetTimestepEmbedding(timesteps, _numChannels, _flipSinToCos, _downscaleFreqShift, _scale);

    /// <summary>
    /// diffusers' <c>get_timestep_embedding</c>: frequencies exp(-ln(max_period) * i / (half - shift)) for
    /// i &lt; half, the timesteps times them (times <paramref name="scale"/>), then [sin, cos] (or [cos, sin] when
    /// <paramref name="flipSinToCos"/>), zero-padded by one column for odd widths. All in float32.
    /// </summary>
    /// <param name="timesteps">[N], any numeric dtype</param>
    /// <returns>[N, embeddingDim] float32</returns>
    public static Tensor GetTimestepEmbedding(Tensor timesteps, long embeddingDim, bool flipSinToCos = false,
        double downscaleFreqShift = 1, double scale = 1, double maxPeriod = 10000)
    {
        if (timesteps.dim() != 1)
            throw new ArgumentException($"Timesteps must be a 1-D tensor, got shape [{string.Join(",", timesteps.shape)}].", nameof(timesteps));
        using var scope = torch.NewDisposeScope();
        long half = embeddingDim / 2;
        var exponent = torch.arange(0, half, dtype: ScalarType.Float32, device: timesteps.device) * -Math.Log(maxPeriod);
        exponent = exponent / (half - downscaleFreqShift);
        var frequencies = torch.exp(exponent);
        var emb = timesteps[.., TensorIndex.None].to_type(ScalarType.Float32) * frequencies[TensorIndex.None, ..]; // [N, half]
        emb = scale * emb;
        emb = torch.cat(new[] { torch.sin(emb), torch.cos(emb) }, dim: -1); // [N, 2*half]
        if (flipSinToCos)
            emb = torch.cat(new[] { emb[.., TensorIndex.Slice(half)], emb[.., TensorIndex.Slice(0, half)] }, dim: -1);
        if (embeddingDim % 2 == 1)
            emb = F.pad(emb, new long[] { 0, 1, 0, 0 });
        return scope.MoveToOuter(emb);
    }
}

/// <summary>diffusers' <c>TimestepEmbedding</c> (SiLU, no condition projection, no post activation): linear_1, SiLU, linear_2.</summary>
public sealed class TimestepEmbedding : nn.Module<Tensor, Tensor>
{
    public readonly Linear linear_1;
    public readonly Linear linear_2;

    public TimestepEmbedding(long inChannels, long timeEmbedDim)
        : base(nameof(TimestepEmbedding))
    {
        linear_1 = nn.Linear(inChannels, timeEmbedDim, device: Construction.Device, dtype: Construction.DType);
        linear_2 = nn.Linear(timeEmbedDim, timeEmbedDim, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <param name="sample">[B, in]</param>
    /// <returns>[B, timeEmbedDim]</returns>
    public override Tensor forward(Tensor sample)
    {
        using var scope = torch.NewDisposeScope();
        var hidden = linear_2.call(F.silu(linear_1.call(sample)));
        return scope.MoveToOuter(hidden);
    }
}
