using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>
/// diffusers' <c>BasicTransformerBlock</c> with <c>norm_type="layer_norm"</c>: pre-LayerNorm self-attention (attn1),
/// cross-attention to the text (attn2), and a GEGLU feed-forward, each added back to the residual stream.
/// </summary>
public sealed class BasicTransformerBlock : nn.Module
{
    public readonly LayerNorm norm1;
    public readonly Attention attn1;
    public readonly LayerNorm norm2;
    public readonly Attention attn2;
    public readonly LayerNorm norm3;
    public readonly FeedForward ff;

    public BasicTransformerBlock(long dim, long numAttentionHeads, long attentionHeadDim, long crossAttentionDim, double normEps = 1e-5)
        : base(nameof(BasicTransformerBlock))
    {
        norm1 = nn.LayerNorm(dim, normEps, elementwise_affine: true, device: Construction.Device, dtype: Construction.DType);
        attn1 = new Attention(dim, crossAttentionDim: null, heads: numAttentionHeads, dimHead: attentionHeadDim);
        norm2 = nn.LayerNorm(dim, normEps, elementwise_affine: true, device: Construction.Device, dtype: Construction.DType);
        attn2 = new Attention(dim, crossAttentionDim: crossAttentionDim, heads: numAttentionHeads, dimHead: attentionHeadDim);
        norm3 = nn.LayerNorm(dim, normEps, elementwise_affine: true, device: Construction.Device, dtype: Construction.DType);
        ff = new FeedForward(dim);
        RegisterComponents();
    }

    /// <param name="hidden">[B, S, dim]</param>
    /// <param name="encoderHiddenStates">[B, S_text, crossAttentionDim]</param>
    /// <returns>[B, S, dim]</returns>
    public Tensor forward(Tensor hidden, Tensor encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        hidden = attn1.forward(norm1.call(hidden)) + hidden;
        hidden = attn2.forward(norm2.call(hidden), encoderHiddenStates) + hidden;
        hidden = ff.call(norm3.call(hidden)) + hidden;
        return scope.MoveToOuter(hidden);
    }
}

/// <summary>
/// diffusers' <c>Transformer2DModel</c> for continuous input (the UNet's attention blocks): GroupNorm (eps 1e-6),
/// proj_in (1x1 conv, or a linear layer when <c>use_linear_projection</c>), the feature map as H*W tokens through
/// the <see cref="BasicTransformerBlock"/>s, proj_out back to a map, plus the input.
/// </summary>
public sealed class Transformer2DModel : nn.Module
{
    public readonly GroupNorm norm;
    public readonly nn.Module<Tensor, Tensor> proj_in;
    public readonly ModuleList<BasicTransformerBlock> transformer_blocks;
    public readonly nn.Module<Tensor, Tensor> proj_out;
    private readonly bool _useLinearProjection;

    public Transformer2DModel(long numAttentionHeads, long attentionHeadDim, long inChannels, long numLayers,
        long crossAttentionDim, long normNumGroups, bool useLinearProjection)
        : base(nameof(Transformer2DModel))
    {
        long innerDim = numAttentionHeads * attentionHeadDim;
        norm = nn.GroupNorm(normNumGroups, inChannels, 1e-6, affine: true, device: Construction.Device, dtype: Construction.DType);
        _useLinearProjection = useLinearProjection;
        proj_in = useLinearProjection
            ? nn.Linear(inChannels, innerDim, device: Construction.Device, dtype: Construction.DType)
            : nn.Conv2d(inChannels, innerDim, kernel_size: 1, device: Construction.Device, dtype: Construction.DType);
        transformer_blocks = nn.ModuleList(Enumerable.Range(0, (int)numLayers)
            .Select(_ => new BasicTransformerBlock(innerDim, numAttentionHeads, attentionHeadDim, crossAttentionDim)).ToArray());
        proj_out = useLinearProjection
            ? nn.Linear(innerDim, inChannels, device: Construction.Device, dtype: Construction.DType)
            : nn.Conv2d(innerDim, inChannels, kernel_size: 1, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <param name="hidden">[B, C, H, W]</param>
    /// <param name="encoderHiddenStates">[B, S_text, crossAttentionDim]</param>
    /// <returns>[B, C, H, W]</returns>
    public Tensor forward(Tensor hidden, Tensor encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var residual = hidden;
        var (batch, height, width) = (hidden.shape[0], hidden.shape[2], hidden.shape[3]);
        hidden = norm.call(hidden);
        long innerDim;
        if (!_useLinearProjection)
        {
            hidden = proj_in.call(hidden);
            innerDim = hidden.shape[1];
            hidden = hidden.permute(0, 2, 3, 1).reshape(batch, height * width, innerDim); // [B, HW, inner]
        }
        else
        {
            innerDim = hidden.shape[1];
            hidden = hidden.permute(0, 2, 3, 1).reshape(batch, height * width, innerDim); // [B, HW, C]
            hidden = proj_in.call(hidden);
        }

        foreach (var block in transformer_blocks)
            hidden = block.forward(hidden, encoderHiddenStates);

        if (!_useLinearProjection)
        {
            hidden = hidden.reshape(batch, height, width, innerDim).permute(0, 3, 1, 2).contiguous(); // [B, inner, H, W]
            hidden = proj_out.call(hidden);
        }
        else
        {
            hidden = proj_out.call(hidden);
            hidden = hidden.reshape(batch, height, width, innerDim).permute(0, 3, 1, 2).contiguous(); // [B, C, H, W]
        }
        return scope.MoveToOuter(hidden + residual);
    }
}
