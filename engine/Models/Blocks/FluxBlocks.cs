using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using GeluApproximate = TorchSharp.Modules.GELU.Approximate;

namespace Diffusion.Engine.Models.Blocks;

// The building blocks of diffusers' FluxTransformer2DModel (transformer_flux.py), with the pieces it takes from
// embeddings.py, normalization.py, attention.py and activations.py. Field names are the checkpoint keys.

/// <summary>torch.nn.RMSNorm over the last dimension: x * rsqrt(mean(x²) + eps) * weight, computed in float32.</summary>
public sealed class RMSNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    private readonly double _eps;

    public RMSNorm(long dim, double eps) : base(nameof(RMSNorm))
    {
        weight = new Parameter(torch.ones(dim, dtype: Construction.DType, device: Construction.Device));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        // Like ATen's rms_norm: upcast half types, normalize and scale in float32, cast back.
        var upcast = x.to(ScalarType.Float32);
        var inverseRms = upcast.pow(2).mean([-1L], keepdim: true).add_(_eps).rsqrt();
        return scope.MoveToOuter((upcast * inverseRms * weight).to(x.dtype));
    }
}

/// <summary>diffusers' PixArtAlphaTextProjection with act_fn "silu": projects the pooled text embedding.</summary>
public sealed class PixArtAlphaTextProjection : nn.Module<Tensor, Tensor>
{
    public readonly Linear linear_1;
    public readonly Linear linear_2;

    public PixArtAlphaTextProjection(long inFeatures, long hiddenSize) : base(nameof(PixArtAlphaTextProjection))
    {
        linear_1 = nn.Linear(inFeatures, hiddenSize, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        linear_2 = nn.Linear(hiddenSize, hiddenSize, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor caption)
    {
        using var scope = torch.NewDisposeScope();
        return scope.MoveToOuter(linear_2.call(F.silu(linear_1.call(caption))));
    }
}

/// <summary>diffusers' get_timestep_embedding as Flux's Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0) uses it.</summary>
public static class SinusoidalTimestep
{
    public const int Channels = 256;

    /// <summary>[N] timesteps (any float dtype) → [N, 256] float32 embedding, cos half first.</summary>
    public static Tensor Embed(Tensor timesteps)
    {
        using var scope = torch.NewDisposeScope();
        const int half = Channels / 2;
        var exponent = torch.arange(0, half, dtype: ScalarType.Float32, device: timesteps.device) * (-Math.Log(10000.0));
        exponent = exponent / (double)half; // downscale_freq_shift 0
        var emb = timesteps.unsqueeze(1).to(ScalarType.Float32) * exponent.exp().unsqueeze(0); // [N, 128]
        return scope.MoveToOuter(torch.cat([emb.cos(), emb.sin()], dim: -1));
    }
}

/// <summary>diffusers' CombinedTimestepTextProjEmbeddings (FLUX.1-schnell): timestep + pooled text conditioning.</summary>
public sealed class CombinedTimestepTextProjEmbeddings : nn.Module<Tensor, Tensor, Tensor>
{
    public readonly TimestepEmbedding timestep_embedder;
    public readonly PixArtAlphaTextProjection text_embedder;

    public CombinedTimestepTextProjEmbeddings(long embeddingDim, long pooledProjectionDim) : base(nameof(CombinedTimestepTextProjEmbeddings))
    {
        timestep_embedder = new TimestepEmbedding(SinusoidalTimestep.Channels, embeddingDim);
        text_embedder = new PixArtAlphaTextProjection(pooledProjectionDim, embeddingDim);
        RegisterComponents();
    }

    /// <summary>timestep [B] (already ×1000), pooled [B, P] → [B, D].</summary>
    public override Tensor forward(Tensor timestep, Tensor pooledProjection)
    {
        using var scope = torch.NewDisposeScope();
        var timestepsEmb = timestep_embedder.call(SinusoidalTimestep.Embed(timestep).to(pooledProjection.dtype));
        var pooled = text_embedder.call(pooledProjection);
        return scope.MoveToOuter(timestepsEmb + pooled);
    }
}

/// <summary>diffusers' CombinedTimestepGuidanceTextProjEmbeddings (FLUX.1-dev): timestep + guidance + pooled text.</summary>
public sealed class CombinedTimestepGuidanceTextProjEmbeddings : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    public readonly TimestepEmbedding timestep_embedder;
    public readonly TimestepEmbedding guidance_embedder;
    public readonly PixArtAlphaTextProjection text_embedder;

    public CombinedTimestepGuidanceTextProjEmbeddings(long embeddingDim, long pooledProjectionDim) : base(nameof(CombinedTimestepGuidanceTextProjEmbeddings))
    {
        timestep_embedder = new TimestepEmbedding(SinusoidalTimestep.Channels, embeddingDim);
        guidance_embedder = new TimestepEmbedding(SinusoidalTimestep.Channels, embeddingDim);
        text_embedder = new PixArtAlphaTextProjection(pooledProjectionDim, embeddingDim);
        RegisterComponents();
    }

    /// <summary>timestep [B] and guidance [B] (both already ×1000), pooled [B, P] → [B, D].</summary>
    public override Tensor forward(Tensor timestep, Tensor guidance, Tensor pooledProjection)
    {
        using var scope = torch.NewDisposeScope();
        var timestepsEmb = timestep_embedder.call(SinusoidalTimestep.Embed(timestep).to(pooledProjection.dtype));
        var guidanceEmb = guidance_embedder.call(SinusoidalTimestep.Embed(guidance).to(pooledProjection.dtype));
        var timeGuidance = timestepsEmb + guidanceEmb;
        return scope.MoveToOuter(timeGuidance + text_embedder.call(pooledProjection));
    }
}

/// <summary>diffusers' AdaLayerNormZero: LayerNorm modulated by six chunks of linear(silu(emb)).</summary>
public sealed class AdaLayerNormZero : nn.Module
{
    public readonly Linear linear;
    private readonly long _dim;

    public AdaLayerNormZero(long embeddingDim) : base(nameof(AdaLayerNormZero))
    {
        _dim = embeddingDim;
        linear = nn.Linear(embeddingDim, 6 * embeddingDim, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <summary>Returns the modulated x and gate_msa, shift_mlp, scale_mlp, gate_mlp (each [B, D]).</summary>
    public (Tensor X, Tensor GateMsa, Tensor ShiftMlp, Tensor ScaleMlp, Tensor GateMlp) forward(Tensor x, Tensor emb)
    {
        using var scope = torch.NewDisposeScope();
        var chunks = linear.call(F.silu(emb)).chunk(6, dim: 1);
        var (shiftMsa, scaleMsa) = (chunks[0], chunks[1]);
        var normed = F.layer_norm(x, [_dim], eps: 1e-6) * (1 + scaleMsa.unsqueeze(1)) + shiftMsa.unsqueeze(1);
        return (normed.MoveToOuterDisposeScope(), chunks[2].MoveToOuterDisposeScope(), chunks[3].MoveToOuterDisposeScope(),
            chunks[4].MoveToOuterDisposeScope(), chunks[5].MoveToOuterDisposeScope());
    }
}

/// <summary>diffusers' AdaLayerNormZeroSingle: LayerNorm modulated by three chunks of linear(silu(emb)).</summary>
public sealed class AdaLayerNormZeroSingle : nn.Module
{
    public readonly Linear linear;
    private readonly long _dim;

    public AdaLayerNormZeroSingle(long embeddingDim) : base(nameof(AdaLayerNormZeroSingle))
    {
        _dim = embeddingDim;
        linear = nn.Linear(embeddingDim, 3 * embeddingDim, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <summary>Returns the modulated x and gate_msa [B, D].</summary>
    public (Tensor X, Tensor Gate) forward(Tensor x, Tensor emb)
    {
        using var scope = torch.NewDisposeScope();
        var chunks = linear.call(F.silu(emb)).chunk(3, dim: 1);
        var normed = F.layer_norm(x, [_dim], eps: 1e-6) * (1 + chunks[1].unsqueeze(1)) + chunks[0].unsqueeze(1);
        return (normed.MoveToOuterDisposeScope(), chunks[2].MoveToOuterDisposeScope());
    }
}

/// <summary>diffusers' AdaLayerNormContinuous (layer_norm, no affine): norm(x) * (1 + scale) + shift, scale first in the projection.</summary>
public sealed class AdaLayerNormContinuous : nn.Module<Tensor, Tensor, Tensor>
{
    public readonly Linear linear;
    private readonly long _dim;
    private readonly double _eps;

    public AdaLayerNormContinuous(long embeddingDim, long conditioningEmbeddingDim, double eps) : base(nameof(AdaLayerNormContinuous))
    {
        _dim = embeddingDim;
        _eps = eps;
        linear = nn.Linear(conditioningEmbeddingDim, 2 * embeddingDim, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor conditioningEmbedding)
    {
        using var scope = torch.NewDisposeScope();
        var chunks = linear.call(F.silu(conditioningEmbedding).to(x.dtype)).chunk(2, dim: 1);
        var (scale, shift) = (chunks[0], chunks[1]);
        return scope.MoveToOuter(F.layer_norm(x, [_dim], eps: _eps) * (1 + scale).unsqueeze(1) + shift.unsqueeze(1));
    }
}

/// <summary>
/// diffusers' FluxPosEmbed: 3-axis rotary embedding of token ids. The angles are computed in float64 on the CPU
/// (as get_1d_rotary_pos_embed with freqs_dtype float64), cos/sin returned as float32 [S, head_dim].
/// </summary>
public sealed class FluxPosEmbed
{
    private readonly double _theta;
    private readonly int[] _axesDim;

    public FluxPosEmbed(double theta, int[] axesDim)
    {
        _theta = theta;
        _axesDim = axesDim;
    }

    /// <summary>ids [S, axes] → (cos, sin), each [S, sum(axes_dim)] float32 on <paramref name="device"/>.</summary>
    public (Tensor Cos, Tensor Sin) forward(Tensor ids, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var pos = ids.to(ScalarType.Float32, torch.CPU);
        var cosParts = new List<Tensor>();
        var sinParts = new List<Tensor>();
        for (int axis = 0; axis < _axesDim.Length; axis++)
        {
            long dim = _axesDim[axis];
            var exponents = torch.arange(0, dim, 2, dtype: ScalarType.Float64, device: torch.CPU) / (double)dim; // [D/2]
            var freqs = torch.full_like(exponents, _theta).pow(exponents).reciprocal(); // 1 / theta^(2i/D)
            var angles = torch.outer(pos.select(1, axis).to(ScalarType.Float64), freqs); // [S, D/2] float64
            cosParts.Add(angles.cos().repeat_interleave(2, dim: 1).to(ScalarType.Float32));
            sinParts.Add(angles.sin().repeat_interleave(2, dim: 1).to(ScalarType.Float32));
        }
        var cos = torch.cat(cosParts, dim: -1).to(device);
        var sin = torch.cat(sinParts, dim: -1).to(device);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>diffusers' apply_rotary_emb (use_real, unbind dim -1, sequence_dim 1): x [B, S, H, D], pairs (2i, 2i+1) rotated in float32.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = torch.NewDisposeScope();
        var c = cos.unsqueeze(0).unsqueeze(2); // [1, S, 1, D]
        var s = sin.unsqueeze(0).unsqueeze(2);
        var pairs = x.reshape([.. x.shape[..^1], -1, 2]); // [B, S, H, D/2, 2]
        var real = pairs.select(-1, 0);
        var imag = pairs.select(-1, 1);
        var rotated = torch.stack([-imag, real], dim: -1).flatten(3); // [B, S, H, D]
        return scope.MoveToOuter((x.to(ScalarType.Float32) * c + rotated.to(ScalarType.Float32) * s).to(x.dtype));
    }
}

/// <summary>
/// diffusers' FluxAttention with FluxAttnProcessor: per-head RMSNorm on q/k, optional added (text) projections
/// concatenated before the image tokens, RoPE on the joint sequence, scaled dot-product attention.
/// Double-stream blocks have added projections and output projections; single-stream blocks (pre_only) have neither.
/// </summary>
public sealed class FluxAttention : nn.Module
{
    public readonly RMSNorm norm_q;
    public readonly RMSNorm norm_k;
    public readonly Linear to_q;
    public readonly Linear to_k;
    public readonly Linear to_v;
    public readonly ModuleList<nn.Module<Tensor, Tensor>>? to_out;
    public readonly RMSNorm? norm_added_q;
    public readonly RMSNorm? norm_added_k;
    public readonly Linear? add_q_proj;
    public readonly Linear? add_k_proj;
    public readonly Linear? add_v_proj;
    public readonly Linear? to_add_out;
    private readonly long _headDim;

    public FluxAttention(long queryDim, long heads, long headDim, double eps, bool withAddedProjections, bool preOnly) : base(nameof(FluxAttention))
    {
        _headDim = headDim;
        long inner = heads * headDim;
        norm_q = new RMSNorm(headDim, eps);
        norm_k = new RMSNorm(headDim, eps);
        to_q = nn.Linear(queryDim, inner, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        to_k = nn.Linear(queryDim, inner, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        to_v = nn.Linear(queryDim, inner, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        if (!preOnly)
            to_out = nn.ModuleList<nn.Module<Tensor, Tensor>>(nn.Linear(inner, queryDim, hasBias: true, device: Construction.Device, dtype: Construction.DType), nn.Dropout(0.0));
        if (withAddedProjections)
        {
            norm_added_q = new RMSNorm(headDim, eps);
            norm_added_k = new RMSNorm(headDim, eps);
            add_q_proj = nn.Linear(queryDim, inner, hasBias: true, device: Construction.Device, dtype: Construction.DType);
            add_k_proj = nn.Linear(queryDim, inner, hasBias: true, device: Construction.Device, dtype: Construction.DType);
            add_v_proj = nn.Linear(queryDim, inner, hasBias: true, device: Construction.Device, dtype: Construction.DType);
            to_add_out = nn.Linear(inner, queryDim, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        }
        RegisterComponents();
    }

    /// <summary>Single-stream: hidden [B, L, D] (text and image tokens already joined) → [B, L, heads·head_dim].</summary>
    public Tensor forward(Tensor hiddenStates, Tensor ropeCos, Tensor ropeSin)
    {
        using var scope = torch.NewDisposeScope();
        var (query, key, value) = Project(to_q, to_k, to_v, norm_q, norm_k, hiddenStates);
        return scope.MoveToOuter(Attend(query, key, value, ropeCos, ropeSin));
    }

    /// <summary>Double-stream: image [B, L, D] and text [B, S, D] attend jointly (text first); returns both projected back.</summary>
    public (Tensor Hidden, Tensor Encoder) forward(Tensor hiddenStates, Tensor encoderHiddenStates, Tensor ropeCos, Tensor ropeSin)
    {
        if (add_q_proj is null || to_out is null)
            throw new InvalidOperationException("This FluxAttention was built without added (text) projections.");
        using var scope = torch.NewDisposeScope();
        var (query, key, value) = Project(to_q, to_k, to_v, norm_q, norm_k, hiddenStates);
        var (encQuery, encKey, encValue) = Project(add_q_proj, add_k_proj!, add_v_proj!, norm_added_q!, norm_added_k!, encoderHiddenStates);
        query = torch.cat([encQuery, query], dim: 1); // [B, S+L, H, Dh]
        key = torch.cat([encKey, key], dim: 1);
        value = torch.cat([encValue, value], dim: 1);

        var joint = Attend(query, key, value, ropeCos, ropeSin); // [B, S+L, H·Dh]
        long textLen = encoderHiddenStates.shape[1];
        var parts = joint.split([textLen, joint.shape[1] - textLen], dim: 1);
        var hidden = to_out[1].call(to_out[0].call(parts[1].contiguous()));
        var encoder = to_add_out!.call(parts[0].contiguous());
        return (hidden.MoveToOuterDisposeScope(), encoder.MoveToOuterDisposeScope());
    }

    private (Tensor Q, Tensor K, Tensor V) Project(Linear q, Linear k, Linear v, RMSNorm normQ, RMSNorm normK, Tensor x)
    {
        var query = normQ.call(q.call(x).unflatten(x.dim() - 1, [-1, _headDim])); // [B, L, H, Dh]
        var key = normK.call(k.call(x).unflatten(x.dim() - 1, [-1, _headDim]));
        var value = v.call(x).unflatten(x.dim() - 1, [-1, _headDim]);
        return (query, key, value);
    }

    private static Tensor Attend(Tensor query, Tensor key, Tensor value, Tensor ropeCos, Tensor ropeSin)
    {
        query = FluxPosEmbed.Apply(query, ropeCos, ropeSin);
        key = FluxPosEmbed.Apply(key, ropeCos, ropeSin);
        var attended = F.scaled_dot_product_attention(
            query.permute(0, 2, 1, 3), key.permute(0, 2, 1, 3), value.permute(0, 2, 1, 3)); // [B, H, S, Dh]
        return attended.permute(0, 2, 1, 3).flatten(2, 3).to(query.dtype); // [B, S, H·Dh]
    }
}

/// <summary>diffusers' FluxTransformerBlock (double-stream, MMDiT): separate weights for image and text tokens, joint attention.</summary>
public sealed class FluxTransformerBlock : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor, (Tensor Encoder, Tensor Hidden)>
{
    public readonly AdaLayerNormZero norm1;
    public readonly AdaLayerNormZero norm1_context;
    public readonly FluxAttention attn;
    public readonly FeedForward ff;
    public readonly FeedForward ff_context;
    private readonly long _dim;

    public FluxTransformerBlock(long dim, long numAttentionHeads, long attentionHeadDim) : base(nameof(FluxTransformerBlock))
    {
        _dim = dim;
        norm1 = new AdaLayerNormZero(dim);
        norm1_context = new AdaLayerNormZero(dim);
        attn = new FluxAttention(dim, numAttentionHeads, attentionHeadDim, eps: 1e-6, withAddedProjections: true, preOnly: false);
        ff = new FeedForward(dim, dim, activation: FeedForwardActivation.GeluTanh);
        ff_context = new FeedForward(dim, dim, activation: FeedForwardActivation.GeluTanh);
        RegisterComponents();
    }

    /// <summary>hidden [B, L, D], encoder [B, S, D], temb [B, D] → (encoder, hidden).</summary>
    public override (Tensor Encoder, Tensor Hidden) forward(Tensor hiddenStates, Tensor encoderHiddenStates, Tensor temb, Tensor ropeCos, Tensor ropeSin)
    {
        using var scope = torch.NewDisposeScope();
        var (normHidden, gateMsa, shiftMlp, scaleMlp, gateMlp) = norm1.forward(hiddenStates, temb);
        var (normEncoder, cGateMsa, cShiftMlp, cScaleMlp, cGateMlp) = norm1_context.forward(encoderHiddenStates, temb);

        var (attnOutput, contextAttnOutput) = attn.forward(normHidden, normEncoder, ropeCos, ropeSin);

        var hidden = hiddenStates + gateMsa.unsqueeze(1) * attnOutput;
        normHidden = F.layer_norm(hidden, [_dim], eps: 1e-6) * (1 + scaleMlp.unsqueeze(1)) + shiftMlp.unsqueeze(1);
        hidden = hidden + gateMlp.unsqueeze(1) * ff.call(normHidden);

        var encoder = encoderHiddenStates + cGateMsa.unsqueeze(1) * contextAttnOutput;
        normEncoder = F.layer_norm(encoder, [_dim], eps: 1e-6) * (1 + cScaleMlp.unsqueeze(1)) + cShiftMlp.unsqueeze(1);
        encoder = encoder + cGateMlp.unsqueeze(1) * ff_context.call(normEncoder);
        if (encoder.dtype == ScalarType.Float16) encoder = encoder.clip(-65504, 65504);

        return (encoder.MoveToOuterDisposeScope(), hidden.MoveToOuterDisposeScope());
    }
}

/// <summary>diffusers' FluxSingleTransformerBlock: text and image tokens joined, attention and MLP in parallel.</summary>
public sealed class FluxSingleTransformerBlock : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor, (Tensor Encoder, Tensor Hidden)>
{
    public readonly AdaLayerNormZeroSingle norm;
    public readonly Linear proj_mlp;
    public readonly Linear proj_out;
    public readonly FluxAttention attn;

    public FluxSingleTransformerBlock(long dim, long numAttentionHeads, long attentionHeadDim, double mlpRatio = 4.0) : base(nameof(FluxSingleTransformerBlock))
    {
        long mlpHiddenDim = (long)(dim * mlpRatio);
        norm = new AdaLayerNormZeroSingle(dim);
        proj_mlp = nn.Linear(dim, mlpHiddenDim, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        proj_out = nn.Linear(dim + mlpHiddenDim, dim, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        attn = new FluxAttention(dim, numAttentionHeads, attentionHeadDim, eps: 1e-6, withAddedProjections: false, preOnly: true);
        RegisterComponents();
    }

    /// <summary>hidden [B, L, D], encoder [B, S, D], temb [B, D] → (encoder, hidden).</summary>
    public override (Tensor Encoder, Tensor Hidden) forward(Tensor hiddenStates, Tensor encoderHiddenStates, Tensor temb, Tensor ropeCos, Tensor ropeSin)
    {
        using var scope = torch.NewDisposeScope();
        long textLen = encoderHiddenStates.shape[1];
        var residual = torch.cat([encoderHiddenStates, hiddenStates], dim: 1); // [B, S+L, D]

        var (normHidden, gate) = norm.forward(residual, temb);
        var mlpHidden = F.gelu(proj_mlp.call(normHidden), GeluApproximate.tanh);
        var attnOutput = attn.forward(normHidden, ropeCos, ropeSin);

        var joined = torch.cat([attnOutput, mlpHidden], dim: 2);
        var hidden = residual + gate.unsqueeze(1) * proj_out.call(joined);
        if (hidden.dtype == ScalarType.Float16) hidden = hidden.clip(-65504, 65504);

        var encoderOut = hidden.narrow(1, 0, textLen);
        var hiddenOut = hidden.narrow(1, textLen, hidden.shape[1] - textLen);
        return (encoderOut.MoveToOuterDisposeScope(), hiddenOut.MoveToOuterDisposeScope());
    }
}
