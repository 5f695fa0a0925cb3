using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>
/// diffusers' <c>Downsample2D</c> with <c>use_conv=True</c>: a 3x3 convolution with stride 2. With padding 0 (the
/// VAE encoder) the input is first padded by one row and column on the bottom/right, as diffusers does.
/// </summary>
public sealed class Downsample2D : nn.Module
{
    public readonly Conv2d conv;
    private readonly long _padding;

    public Downsample2D(long channels, long outChannels, long padding)
        : base(nameof(Downsample2D))
    {
        conv = nn.Conv2d(channels, outChannels, kernel_size: 3, stride: 2, padding: padding, device: Construction.Device, dtype: Construction.DType);
        _padding = padding;
        RegisterComponents();
    }

    /// <param name="hidden">[B, C, H, W]</param>
    /// <returns>[B, out, H/2, W/2]</returns>
    public Tensor forward(Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        if (_padding == 0) hidden = F.pad(hidden, new long[] { 0, 1, 0, 1 }, PaddingModes.Constant, 0);
        return scope.MoveToOuter(conv.call(hidden));
    }
}
