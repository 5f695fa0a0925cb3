using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>
/// diffusers' <c>ResnetBlock2D</c> with <c>time_embedding_norm="default"</c> and SiLU: GroupNorm, SiLU, conv 3x3,
/// plus the projected time embedding (when the block has one), GroupNorm, SiLU, conv 3x3, and a residual that goes
/// through a 1x1 <c>conv_shortcut</c> when the channel count changes; the sum is divided by <c>output_scale_factor</c>.
/// </summary>
public sealed class ResnetBlock2D : nn.Module
{
    public readonly GroupNorm norm1;
    public readonly Conv2d conv1;
    public readonly Linear? time_emb_proj;
    public readonly GroupNorm norm2;
    public readonly Conv2d conv2;
    public readonly Conv2d? conv_shortcut;
    private readonly double _outputScaleFactor;

    /// <param name="tembChannels">Width of the time embedding, or null for blocks without one (the VAE's).</param>
    public ResnetBlock2D(long inChannels, long outChannels, long? tembChannels, long groups, double eps, double outputScaleFactor = 1.0)
        : base(nameof(ResnetBlock2D))
    {
        norm1 = nn.GroupNorm(groups, inChannels, eps, affine: true, device: Construction.Device, dtype: Construction.DType);
        conv1 = nn.Conv2d(inChannels, outChannels, kernel_size: 3, stride: 1, padding: 1, device: Construction.Device, dtype: Construction.DType);
        if (tembChannels is long t) time_emb_proj = nn.Linear(t, outChannels, device: Construction.Device, dtype: Construction.DType);
        norm2 = nn.GroupNorm(groups, outChannels, eps, affine: true, device: Construction.Device, dtype: Construction.DType);
        conv2 = nn.Conv2d(outChannels, outChannels, kernel_size: 3, stride: 1, padding: 1, device: Construction.Device, dtype: Construction.DType);
        if (inChannels != outChannels) conv_shortcut = nn.Conv2d(inChannels, outChannels, kernel_size: 1, device: Construction.Device, dtype: Construction.DType);
        _outputScaleFactor = outputScaleFactor;
        RegisterComponents();
    }

    /// <param name="input">[B, in, H, W]</param>
    /// <param name="temb">[B, temb] or null</param>
    /// <returns>[B, out, H, W]</returns>
    public Tensor forward(Tensor input, Tensor? temb)
    {
        using var scope = torch.NewDisposeScope();
        var hidden = F.silu(norm1.call(input));
        hidden = conv1.call(hidden);
        if (time_emb_proj is not null)
        {
            ArgumentNullException.ThrowIfNull(temb);
            hidden = hidden + time_emb_proj.call(F.silu(temb))[.., .., TensorIndex.None, TensorIndex.None]; // [B, out, 1, 1]
        }
        hidden = F.silu(norm2.call(hidden));
        hidden = conv2.call(hidden);
        var shortcut = conv_shortcut is null ? input : conv_shortcut.call(input);
        var output = shortcut + hidden;
        if (_outputScaleFactor != 1.0) output = output / _outputScaleFactor;
        return scope.MoveToOuter(output);
    }
}
