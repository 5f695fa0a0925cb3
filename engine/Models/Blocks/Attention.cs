using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>
/// diffusers' <c>Attention</c> with its default <c>AttnProcessor2_0</c>, in the two forms SD uses: the UNet's
/// self/cross attention over tokens ([B, S, C], no q/k/v bias) and the VAE mid-block attention over the pixels of a
/// feature map ([B, C, H, W], with biases, a GroupNorm first and a residual connection). Weights: to_q, to_k, to_v,
/// to_out.0 (to_out.1 is a dropout) and the optional group_norm. Attention runs through
/// scaled_dot_product_attention with its default scale 1/sqrt(head_dim); diffusers' upcast flags do not apply to
/// that processor, so none are taken here.
/// </summary>
public sealed class Attention : nn.Module
{
    public readonly GroupNorm? group_norm;
    public readonly Linear to_q;
    public readonly Linear to_k;
    public readonly Linear to_v;
    public readonly ModuleList<nn.Module<Tensor, Tensor>> to_out;
    private readonly long _heads;
    private readonly bool _residualConnection;
    private readonly double _rescaleOutputFactor;

    /// <param name="queryDim">Channels of the queries' input.</param>
    /// <param name="crossAttentionDim">Channels of the keys' and values' input, or null for self-attention.</param>
    /// <param name="normNumGroups">Groups of a GroupNorm applied to the input first, or null for none.</param>
    public Attention(long queryDim, long? crossAttentionDim = null, long heads = 8, long dimHead = 64, bool bias = false,
        bool outBias = true, long? normNumGroups = null, double eps = 1e-5, bool residualConnection = false,
        double rescaleOutputFactor = 1.0)
        : base(nameof(Attention))
    {
        long innerDim = dimHead * heads;
        long keyValueDim = crossAttentionDim ?? queryDim;
        if (normNumGroups is long groups) group_norm = nn.GroupNorm(groups, queryDim, eps, affine: true, device: Construction.Device, dtype: Construction.DType);
        to_q = nn.Linear(queryDim, innerDim, hasBias: bias, device: Construction.Device, dtype: Construction.DType);
        to_k = nn.Linear(keyValueDim, innerDim, hasBias: bias, device: Construction.Device, dtype: Construction.DType);
        to_v = nn.Linear(keyValueDim, innerDim, hasBias: bias, device: Construction.Device, dtype: Construction.DType);
        to_out = nn.ModuleList<nn.Module<Tensor, Tensor>>(nn.Linear(innerDim, queryDim, hasBias: outBias, device: Construction.Device, dtype: Construction.DType), nn.Dropout(0.0));
        _heads = heads;
        _residualConnection = residualConnection;
        _rescaleOutputFactor = rescaleOutputFactor;
        RegisterComponents();
    }

    /// <param name="hiddenStates">[B, S, queryDim] tokens, or [B, queryDim, H, W] a feature map</param>
    /// <param name="encoderHiddenStates">[B, S_kv, crossAttentionDim] for cross-attention, null for self-attention</param>
    /// <returns>the same shape as <paramref name="hiddenStates"/></returns>
    public Tensor forward(Tensor hiddenStates, Tensor? encoderHiddenStates = null)
    {
        using var scope = torch.NewDisposeScope();
        var residual = hiddenStates;
        bool spatial = hiddenStates.dim() == 4;
        long channels = 0, height = 0, width = 0;
        if (spatial)
        {
            (channels, height, width) = (hiddenStates.shape[1], hiddenStates.shape[2], hiddenStates.shape[3]);
            hiddenStates = hiddenStates.view(hiddenStates.shape[0], channels, height * width).transpose(1, 2); // [B, HW, C]
        }
        long batch = hiddenStates.shape[0];
        if (group_norm is not null)
            hiddenStates = group_norm.call(hiddenStates.transpose(1, 2)).transpose(1, 2);

        var query = to_q.call(hiddenStates);
        var context = encoderHiddenStates ?? hiddenStates;
        var key = to_k.call(context);
        var value = to_v.call(context);

        long headDim = key.shape[^1] / _heads;
        query = query.view(batch, -1, _heads, headDim).transpose(1, 2); // [B, heads, S, D]
        key = key.view(batch, -1, _heads, headDim).transpose(1, 2);     // [B, heads, S_kv, D]
        value = value.view(batch, -1, _heads, headDim).transpose(1, 2); // [B, heads, S_kv, D]

        var attended = F.scaled_dot_product_attention(query, key, value); // [B, heads, S, D]
        attended = attended.transpose(1, 2).reshape(batch, -1, _heads * headDim).to_type(query.dtype); // [B, S, inner]
        foreach (var layer in to_out) attended = layer.call(attended);

        if (spatial)
            attended = attended.transpose(-1, -2).reshape(batch, channels, height, width);
        if (_residualConnection)
            attended = attended + residual;
        if (_rescaleOutputFactor != 1.0)
            attended = attended / _rescaleOutputFactor;
        return scope.MoveToOuter(attended);
    }
}
