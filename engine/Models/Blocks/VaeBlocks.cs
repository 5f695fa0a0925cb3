using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>diffusers' <c>DownEncoderBlock2D</c>: resnets without time embedding, then an optional stride-2 conv (padding 0 in the VAE).</summary>
public sealed class DownEncoderBlock2D : nn.Module<Tensor, Tensor>
{
    public readonly ModuleList<ResnetBlock2D> resnets;
    public readonly ModuleList<Downsample2D>? downsamplers;

    public DownEncoderBlock2D(long inChannels, long outChannels, int numLayers, double resnetEps, long resnetGroups,
        bool addDownsample, long downsamplePadding)
        : base(nameof(DownEncoderBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, resnetGroups, resnetEps)).ToArray());
        if (addDownsample) downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, downsamplePadding));
        RegisterComponents();
    }

    /// <param name="hidden">[B, in, H, W]</param>
    /// <returns>[B, out, H/2, W/2] (or H, W without downsampler)</returns>
    public override Tensor forward(Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        foreach (var resnet in resnets) hidden = resnet.forward(hidden, null);
        if (downsamplers is not null)
            foreach (var downsampler in downsamplers) hidden = downsampler.forward(hidden);
        return scope.MoveToOuter(hidden);
    }
}

/// <summary>diffusers' <c>UpDecoderBlock2D</c>: resnets without time embedding, then an optional nearest-2x + conv upsampler.</summary>
public sealed class UpDecoderBlock2D : nn.Module<Tensor, Tensor>
{
    public readonly ModuleList<ResnetBlock2D> resnets;
    public readonly ModuleList<Upsample2D>? upsamplers;

    public UpDecoderBlock2D(long inChannels, long outChannels, int numLayers, double resnetEps, long resnetGroups, bool addUpsample)
        : base(nameof(UpDecoderBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, resnetGroups, resnetEps)).ToArray());
        if (addUpsample) upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels));
        RegisterComponents();
    }

    /// <param name="hidden">[B, in, H, W]</param>
    /// <returns>[B, out, 2H, 2W] (or H, W without upsampler)</returns>
    public override Tensor forward(Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        foreach (var resnet in resnets) hidden = resnet.forward(hidden, null);
        if (upsamplers is not null)
            foreach (var upsampler in upsamplers) hidden = upsampler.forward(hidden);
        return scope.MoveToOuter(hidden);
    }
}

/// <summary>
/// diffusers' <c>UNetMidBlock2D</c> as the VAE builds it (no time embedding): resnet, then (attention, resnet) pairs.
/// The attention is a single-head <see cref="Attention"/> over the H*W pixels with a GroupNorm, biases and a residual.
/// With <c>mid_block_add_attention=false</c> there is no attention and the resnets follow each other.
/// </summary>
public sealed class UNetMidBlock2D : nn.Module<Tensor, Tensor>
{
    public readonly ModuleList<Attention>? attentions;
    public readonly ModuleList<ResnetBlock2D> resnets;

    public UNetMidBlock2D(long inChannels, double resnetEps, long resnetGroups, bool addAttention, long attentionHeadDim, int numLayers = 1)
        : base(nameof(UNetMidBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, numLayers + 1)
            .Select(_ => new ResnetBlock2D(inChannels, inChannels, null, resnetGroups, resnetEps)).ToArray());
        if (addAttention)
            attentions = nn.ModuleList(Enumerable.Range(0, numLayers)
                .Select(_ => new Attention(inChannels, heads: inChannels / attentionHeadDim, dimHead: attentionHeadDim, bias: true,
                    normNumGroups: resnetGroups, eps: resnetEps, residualConnection: true)).ToArray());
        RegisterComponents();
    }

    /// <param name="hidden">[B, C, H, W]</param>
    public override Tensor forward(Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        hidden = resnets[0].forward(hidden, null);
        for (int i = 1; i < resnets.Count; i++)
        {
            if (attentions is not null) hidden = attentions[i - 1].forward(hidden);
            hidden = resnets[i].forward(hidden, null);
        }
        return scope.MoveToOuter(hidden);
    }
}

/// <summary>diffusers' VAE <c>Encoder</c>: conv_in, DownEncoderBlock2Ds, mid block, GroupNorm + SiLU, conv_out to 2*latent channels (mean and log-variance).</summary>
public sealed class Encoder : nn.Module<Tensor, Tensor>
{
    public readonly Conv2d conv_in;
    public readonly ModuleList<DownEncoderBlock2D> down_blocks;
    public readonly UNetMidBlock2D mid_block;
    public readonly GroupNorm conv_norm_out;
    public readonly Conv2d conv_out;

    public Encoder(long inChannels, long outChannels, IReadOnlyList<long> blockOutChannels, int layersPerBlock, long normNumGroups, bool midBlockAddAttention)
        : base(nameof(Encoder))
    {
        conv_in = nn.Conv2d(inChannels, blockOutChannels[0], kernel_size: 3, stride: 1, padding: 1, device: Construction.Device, dtype: Construction.DType);
        var blocks = new List<DownEncoderBlock2D>();
        long outputChannel = blockOutChannels[0];
        for (int i = 0; i < blockOutChannels.Count; i++)
        {
            long inputChannel = outputChannel;
            outputChannel = blockOutChannels[i];
            bool isFinal = i == blockOutChannels.Count - 1;
            blocks.Add(new DownEncoderBlock2D(inputChannel, outputChannel, layersPerBlock, 1e-6, normNumGroups, addDownsample: !isFinal, downsamplePadding: 0));
        }
        down_blocks = nn.ModuleList(blocks.ToArray());
        long last = blockOutChannels[^1];
        mid_block = new UNetMidBlock2D(last, 1e-6, normNumGroups, midBlockAddAttention, attentionHeadDim: last);
        conv_norm_out = nn.GroupNorm(normNumGroups, last, 1e-6, device: Construction.Device, dtype: Construction.DType);
        conv_out = nn.Conv2d(last, 2 * outChannels, kernel_size: 3, stride: 1, padding: 1, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <param name="sample">[B, 3, H, W] image in [-1, 1]</param>
    /// <returns>[B, 2*latent, H/f, W/f] moments</returns>
    public override Tensor forward(Tensor sample)
    {
        using var scope = torch.NewDisposeScope();
        sample = conv_in.call(sample);
        foreach (var block in down_blocks) sample = block.call(sample);
        sample = mid_block.call(sample);
        sample = F.silu(conv_norm_out.call(sample));
        return scope.MoveToOuter(conv_out.call(sample));
    }
}

/// <summary>diffusers' VAE <c>Decoder</c> (group norm): conv_in, mid block, UpDecoderBlock2Ds (layers_per_block + 1 resnets each), GroupNorm + SiLU, conv_out.</summary>
public sealed class Decoder : nn.Module<Tensor, Tensor>
{
    public readonly Conv2d conv_in;
    public readonly UNetMidBlock2D mid_block;
    public readonly ModuleList<UpDecoderBlock2D> up_blocks;
    public readonly GroupNorm conv_norm_out;
    public readonly Conv2d conv_out;

    public Decoder(long inChannels, long outChannels, IReadOnlyList<long> blockOutChannels, int layersPerBlock, long normNumGroups, bool midBlockAddAttention)
        : base(nameof(Decoder))
    {
        long last = blockOutChannels[^1];
        conv_in = nn.Conv2d(inChannels, last, kernel_size: 3, stride: 1, padding: 1, device: Construction.Device, dtype: Construction.DType);
        mid_block = new UNetMidBlock2D(last, 1e-6, normNumGroups, midBlockAddAttention, attentionHeadDim: last);
        var reversed = Enumerable.Reverse(blockOutChannels).ToList();
        var blocks = new List<UpDecoderBlock2D>();
        long outputChannel = reversed[0];
        for (int i = 0; i < reversed.Count; i++)
        {
            long prevOutputChannel = outputChannel;
            outputChannel = reversed[i];
            bool isFinal = i == reversed.Count - 1;
            blocks.Add(new UpDecoderBlock2D(prevOutputChannel, outputChannel, layersPerBlock + 1, 1e-6, normNumGroups, addUpsample: !isFinal));
        }
        up_blocks = nn.ModuleList(blocks.ToArray());
        conv_norm_out = nn.GroupNorm(normNumGroups, blockOutChannels[0], 1e-6, device: Construction.Device, dtype: Construction.DType);
        conv_out = nn.Conv2d(blockOutChannels[0], outChannels, kernel_size: 3, stride: 1, padding: 1, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <param name="sample">[B, latent, h, w]</param>
    /// <returns>[B, 3, h*f, w*f] image in about [-1, 1]</returns>
    public override Tensor forward(Tensor sample)
    {
        using var scope = torch.NewDisposeScope();
        sample = conv_in.call(sample);
        sample = mid_block.call(sample);
        foreach (var block in up_blocks) sample = block.call(sample);
        sample = F.silu(conv_norm_out.call(sample));
        return scope.MoveToOuter(conv_out.call(sample));
    }
}

/// <summary>
/// diffusers' <c>DiagonalGaussianDistribution</c> over the encoder's moments: mean and log-variance are the two
/// channel halves, the log-variance clamped to [-30, 20]; a sample is mean + exp(logvar / 2) * noise.
/// </summary>
public static class DiagonalGaussian
{
    /// <param name="moments">[B, 2*latent, h, w]</param>
    /// <returns>mean and clamped log-variance, each [B, latent, h, w]</returns>
    public static (Tensor Mean, Tensor LogVar) Split(Tensor moments)
    {
        using var scope = torch.NewDisposeScope();
        var halves = torch.chunk(moments, 2, dim: 1);
        var logvar = torch.clamp(halves[1], -30.0, 20.0);
        return scope.MoveToOuter(halves[0], logvar);
    }

    /// <summary>
    /// Draws mean + std * noise. Like diffusers' <c>randn_tensor</c>, the noise is drawn on the generator's device
    /// (a CPU generator gives the same noise whatever the model's device) in the mean's dtype, then moved.
    /// </summary>
    public static Tensor Sample(Tensor mean, Tensor logvar, Generator? generator)
    {
        using var scope = torch.NewDisposeScope();
        var std = torch.exp(0.5 * logvar);
        var noiseDevice = generator?.device ?? mean.device;
        var noise = torch.randn(mean.shape, dtype: mean.dtype, device: noiseDevice, generator: generator).to(mean.device);
        return scope.MoveToOuter(mean + std * noise);
    }
}
