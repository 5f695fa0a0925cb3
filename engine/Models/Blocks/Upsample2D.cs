using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>
/// diffusers' <c>Upsample2D</c> with <c>use_conv=True</c>: nearest-neighbour interpolation (2x, or to an explicit
/// size when the UNet forwards one for odd latent sizes), then a 3x3 convolution. diffusers casts bfloat16 to
/// float32 around the interpolation only for PyTorch &lt; 2.1; libtorch 2.10 interpolates bfloat16 natively, so the
/// interpolation runs in the input's dtype here as it does in diffusers on current PyTorch.
/// </summary>
public sealed class Upsample2D : nn.Module
{
    public readonly Conv2d conv;

    public Upsample2D(long channels, long outChannels)
        : base(nameof(Upsample2D))
    {
        conv = nn.Conv2d(channels, outChannels, kernel_size: 3, stride: 1, padding: 1, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <param name="hidden">[B, C, H, W]</param>
    /// <param name="outputSize">Target [h, w], or null for twice the input size.</param>
    /// <returns>[B, out, 2H, 2W] (or [B, out, h, w])</returns>
    public Tensor forward(Tensor hidden, long[]? outputSize = null)
    {
        using var scope = torch.NewDisposeScope();
        hidden = outputSize is null
            ? F.interpolate(hidden, scale_factor: new[] { 2.0, 2.0 }, mode: InterpolationMode.Nearest)
            : F.interpolate(hidden, size: outputSize, mode: InterpolationMode.Nearest);
        return scope.MoveToOuter(conv.call(hidden));
    }
}
