using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>A UNet down block: returns the downsampled features and every intermediate output kept for the skip connections.</summary>
public abstract class UNetDownBlock : nn.Module<Tensor, Tensor, Tensor, (Tensor Hidden, Tensor[] OutputStates)>
{
    protected UNetDownBlock(string name) : base(name) { }

    /// <param name="hidden">[B, in, H, W]</param>
    /// <param name="temb">[B, temb]</param>
    /// <param name="encoderHiddenStates">[B, S_text, cross]</param>
    public abstract override (Tensor Hidden, Tensor[] OutputStates) forward(Tensor hidden, Tensor temb, Tensor encoderHiddenStates);
}

/// <summary>A UNet up block: consumes one skip connection per resnet (last first) and upsamples unless it is the final block.</summary>
public abstract class UNetUpBlock : nn.Module<Tensor, IReadOnlyList<Tensor>, Tensor, Tensor, long[]?, Tensor>
{
    protected UNetUpBlock(string name) : base(name) { }

    /// <summary>The number of skip connections this block consumes (one per resnet).</summary>
    public abstract int ResnetCount { get; }

    /// <param name="hidden">[B, prev, H, W]</param>
    /// <param name="skips">this block's skip connections, in the order the down path produced them</param>
    /// <param name="temb">[B, temb]</param>
    /// <param name="encoderHiddenStates">[B, S_text, cross]</param>
    /// <param name="upsampleSize">explicit [h, w] for the upsampler when the latent size is not a multiple of the UNet's total downscale</param>
    public abstract override Tensor forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor encoderHiddenStates, long[]? upsampleSize);
}

/// <summary>diffusers' <c>DownBlock2D</c>: resnets, then an optional stride-2 conv downsampler.</summary>
public sealed class DownBlock2D : UNetDownBlock
{
    public readonly ModuleList<ResnetBlock2D> resnets;
    public readonly ModuleList<Downsample2D>? downsamplers;

    public DownBlock2D(long inChannels, long outChannels, long tembChannels, int numLayers, double resnetEps,
        long resnetGroups, bool addDownsample, long downsamplePadding)
        : base(nameof(DownBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, tembChannels, resnetGroups, resnetEps)).ToArray());
        if (addDownsample) downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, downsamplePadding));
        RegisterComponents();
    }

    public override (Tensor Hidden, Tensor[] OutputStates) forward(Tensor hidden, Tensor temb, Tensor encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var outputStates = new List<Tensor>();
        foreach (var resnet in resnets)
        {
            hidden = resnet.forward(hidden, temb);
            outputStates.Add(hidden);
        }
        if (downsamplers is not null)
        {
            foreach (var downsampler in downsamplers) hidden = downsampler.forward(hidden);
            outputStates.Add(hidden);
        }
        scope.MoveToOuter(outputStates);
        return (hidden, outputStates.ToArray());
    }
}

/// <summary>diffusers' <c>CrossAttnDownBlock2D</c>: (resnet, Transformer2DModel) pairs, then an optional downsampler.</summary>
public sealed class CrossAttnDownBlock2D : UNetDownBlock
{
    public readonly ModuleList<Transformer2DModel> attentions;
    public readonly ModuleList<ResnetBlock2D> resnets;
    public readonly ModuleList<Downsample2D>? downsamplers;

    public CrossAttnDownBlock2D(long inChannels, long outChannels, long tembChannels, int numLayers, long transformerLayersPerBlock,
        double resnetEps, long resnetGroups, long numAttentionHeads, long crossAttentionDim, bool addDownsample,
        long downsamplePadding, bool useLinearProjection)
        : base(nameof(CrossAttnDownBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, tembChannels, resnetGroups, resnetEps)).ToArray());
        attentions = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(_ => new Transformer2DModel(numAttentionHeads, outChannels / numAttentionHeads, outChannels,
                transformerLayersPerBlock, crossAttentionDim, resnetGroups, useLinearProjection)).ToArray());
        if (addDownsample) downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, downsamplePadding));
        RegisterComponents();
    }

    public override (Tensor Hidden, Tensor[] OutputStates) forward(Tensor hidden, Tensor temb, Tensor encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var outputStates = new List<Tensor>();
        for (int i = 0; i < resnets.Count; i++)
        {
            hidden = resnets[i].forward(hidden, temb);
            hidden = attentions[i].forward(hidden, encoderHiddenStates);
            outputStates.Add(hidden);
        }
        if (downsamplers is not null)
        {
            foreach (var downsampler in downsamplers) hidden = downsampler.forward(hidden);
            outputStates.Add(hidden);
        }
        scope.MoveToOuter(outputStates);
        return (hidden, outputStates.ToArray());
    }
}

/// <summary>diffusers' <c>UNetMidBlock2DCrossAttn</c>: resnet, then (Transformer2DModel, resnet) pairs.</summary>
public sealed class UNetMidBlock2DCrossAttn : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    public readonly ModuleList<Transformer2DModel> attentions;
    public readonly ModuleList<ResnetBlock2D> resnets;

    public UNetMidBlock2DCrossAttn(long inChannels, long tembChannels, long transformerLayersPerBlock, double resnetEps,
        long resnetGroups, double outputScaleFactor, long numAttentionHeads, long crossAttentionDim, bool useLinearProjection,
        int numLayers = 1)
        : base(nameof(UNetMidBlock2DCrossAttn))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, numLayers + 1)
            .Select(_ => new ResnetBlock2D(inChannels, inChannels, tembChannels, resnetGroups, resnetEps, outputScaleFactor)).ToArray());
        attentions = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(_ => new Transformer2DModel(numAttentionHeads, inChannels / numAttentionHeads, inChannels,
                transformerLayersPerBlock, crossAttentionDim, resnetGroups, useLinearProjection)).ToArray());
        RegisterComponents();
    }

    /// <param name="hidden">[B, C, H, W]</param>
    /// <param name="temb">[B, temb]</param>
    /// <param name="encoderHiddenStates">[B, S_text, cross]</param>
    public override Tensor forward(Tensor hidden, Tensor temb, Tensor encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        hidden = resnets[0].forward(hidden, temb);
        for (int i = 0; i < attentions.Count; i++)
        {
            hidden = attentions[i].forward(hidden, encoderHiddenStates);
            hidden = resnets[i + 1].forward(hidden, temb);
        }
        return scope.MoveToOuter(hidden);
    }
}

/// <summary>diffusers' <c>UpBlock2D</c>: resnets over [hidden, skip] concatenations, then an optional nearest-2x + conv upsampler.</summary>
public sealed class UpBlock2D : UNetUpBlock
{
    public readonly ModuleList<ResnetBlock2D> resnets;
    public readonly ModuleList<Upsample2D>? upsamplers;

    public UpBlock2D(long inChannels, long prevOutputChannel, long outChannels, long tembChannels, int numLayers,
        double resnetEps, long resnetGroups, bool addUpsample)
        : base(nameof(UpBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(ResnetInChannels(i, numLayers, inChannels, prevOutputChannel, outChannels),
                outChannels, tembChannels, resnetGroups, resnetEps)).ToArray());
        if (addUpsample) upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels));
        RegisterComponents();
    }

    /// <summary>Resnet i sees the previous output (block input for i = 0) concatenated with its skip connection.</summary>
    internal static long ResnetInChannels(int i, int numLayers, long inChannels, long prevOutputChannel, long outChannels)
        => (i == 0 ? prevOutputChannel : outChannels) + (i == numLayers - 1 ? inChannels : outChannels);

    public override int ResnetCount => resnets.Count;

    public override Tensor forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor encoderHiddenStates, long[]? upsampleSize)
    {
        using var scope = torch.NewDisposeScope();
        for (int i = 0; i < resnets.Count; i++)
        {
            hidden = torch.cat(new[] { hidden, skips[skips.Count - 1 - i] }, dim: 1);
            hidden = resnets[i].forward(hidden, temb);
        }
        if (upsamplers is not null)
            foreach (var upsampler in upsamplers) hidden = upsampler.forward(hidden, upsampleSize);
        return scope.MoveToOuter(hidden);
    }
}

/// <summary>diffusers' <c>CrossAttnUpBlock2D</c>: (resnet over [hidden, skip], Transformer2DModel) pairs, then an optional upsampler.</summary>
public sealed class CrossAttnUpBlock2D : UNetUpBlock
{
    public readonly ModuleList<Transformer2DModel> attentions;
    public readonly ModuleList<ResnetBlock2D> resnets;
    public readonly ModuleList<Upsample2D>? upsamplers;

    public CrossAttnUpBlock2D(long inChannels, long prevOutputChannel, long outChannels, long tembChannels, int numLayers,
        long transformerLayersPerBlock, double resnetEps, long resnetGroups, long numAttentionHeads, long crossAttentionDim,
        bool addUpsample, bool useLinearProjection)
        : base(nameof(CrossAttnUpBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(UpBlock2D.ResnetInChannels(i, numLayers, inChannels, prevOutputChannel, outChannels),
                outChannels, tembChannels, resnetGroups, resnetEps)).ToArray());
        attentions = nn.ModuleList(Enumerable.Range(0, numLayers)
            .Select(_ => new Transformer2DModel(numAttentionHeads, outChannels / numAttentionHeads, outChannels,
                transformerLayersPerBlock, crossAttentionDim, resnetGroups, useLinearProjection)).ToArray());
        if (addUpsample) upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels));
        RegisterComponents();
    }

    public override int ResnetCount => resnets.Count;

    public override Tensor forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor encoderHiddenStates, long[]? upsampleSize)
    {
        using var scope = torch.NewDisposeScope();
        for (int i = 0; i < resnets.Count; i++)
        {
            hidden = torch.cat(new[] { hidden, skips[skips.Count - 1 - i] }, dim: 1);
            hidden = resnets[i].forward(hidden, temb);
            hidden = attentions[i].forward(hidden, encoderHiddenStates);
        }
        if (upsamplers is not null)
            foreach (var upsampler in upsamplers) hidden = upsampler.forward(hidden, upsampleSize);
        return scope.MoveToOuter(hidden);
    }
}
