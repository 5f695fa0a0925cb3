using System.Text.Json;
using System.Text.Json.Serialization;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models;

/// <summary>
/// config.json of transformers' T5EncoderModel. A key that is absent takes transformers' T5Config default (t5-small:
/// 512 wide, 6 layers, the ungated "relu" feed-forward, which this engine refuses); FLUX.1's google/t5-v1_1-xxl
/// config.json lists every key.
/// </summary>
public sealed class T5Config : IModelConfig
{
    private const string ModelName = "T5 text encoder";

    [JsonPropertyName("vocab_size")] public long VocabSize { get; set; } = 32128;
    [JsonPropertyName("d_model")] public long DModel { get; set; } = 512;
    [JsonPropertyName("d_kv")] public long DKv { get; set; } = 64;
    [JsonPropertyName("d_ff")] public long DFf { get; set; } = 2048;
    [JsonPropertyName("num_layers")] public int NumLayers { get; set; } = 6;
    [JsonPropertyName("num_heads")] public long NumHeads { get; set; } = 8;
    [JsonPropertyName("relative_attention_num_buckets")] public long RelativeAttentionNumBuckets { get; set; } = 32;
    [JsonPropertyName("relative_attention_max_distance")] public long RelativeAttentionMaxDistance { get; set; } = 128;
    [JsonPropertyName("layer_norm_epsilon")] public double LayerNormEpsilon { get; set; } = 1e-6;
    /// <summary>"gated-gelu" (v1.1) or "[gated-]act"; transformers' T5Config derives the activation and the gating from it.</summary>
    [JsonPropertyName("feed_forward_proj")] public string FeedForwardProj { get; set; } = "relu";
    [JsonPropertyName("pad_token_id")] public long PadTokenId { get; set; } = 0;
    [JsonPropertyName("eos_token_id")] public long EosTokenId { get; set; } = 1;

    /// <summary>The feed-forward activation: "gelu_new" for "gated-gelu", else the part after the last '-'.</summary>
    [JsonIgnore]
    public string DenseActFn => FeedForwardProj == "gated-gelu" ? "gelu_new" : FeedForwardProj.Split('-')[^1];

    [JsonIgnore]
    public bool IsGatedAct => FeedForwardProj.Split('-')[0] == "gated";

    /// <summary>Where this config was read from (for error messages); "config.json" when built in code.</summary>
    [JsonIgnore] public string SourcePath { get; private set; } = "config.json";

    public static T5Config Load(string configJsonPath) =>
        Checked(ModelConfigJson.Read<T5Config>(configJsonPath, ModelName), Path.GetFullPath(configJsonPath));

    /// <summary>A config from its JSON text; <paramref name="source"/> names it in messages.</summary>
    public static T5Config FromJson(string json, string source = "config.json") =>
        Checked(ModelConfigJson.Parse<T5Config>(json, source, ModelName), source);

    private static T5Config Checked(T5Config config, string source)
    {
        config.SourcePath = source;
        config.Validate(source);
        return config;
    }

    internal void Validate(string? source = null)
    {
        var where = source is null ? "The T5 text encoder config" : $"The T5 text encoder config '{source}'";
        var rules = new ConfigRules("T5 text encoder", source ?? "config.json");
        rules.Positive("vocab_size", VocabSize);
        rules.Positive("d_model", DModel);
        rules.Positive("d_kv", DKv);
        rules.Positive("d_ff", DFf);
        rules.Positive("num_layers", NumLayers);
        rules.Positive("num_heads", NumHeads);
        if (!IsGatedAct)
            throw new DiffusionException("FeedForwardNotSupported", DiffusionErrorKind.NotSupported,
                $"{where} has feed_forward_proj '{FeedForwardProj}'; this engine supports the gated feed-forward of T5 v1.1 ('gated-gelu'), as FLUX uses.", source);
        if (DenseActFn is not ("gelu_new" or "gelu" or "relu"))
            throw new DiffusionException("ActivationNotSupported", DiffusionErrorKind.NotSupported,
                $"{where} uses the activation '{DenseActFn}'; this engine supports 'gelu_new', 'gelu' and 'relu'.", source);
        if (RelativeAttentionNumBuckets < 4 || RelativeAttentionMaxDistance <= RelativeAttentionNumBuckets / 4)
            throw new DiffusionException("ModelConfigInvalid", DiffusionErrorKind.InvalidData,
                $"{where} has relative_attention_num_buckets {RelativeAttentionNumBuckets} and relative_attention_max_distance {RelativeAttentionMaxDistance}; " +
                "it needs at least 4 buckets and a max distance above a quarter of them.", source);
    }
}

/// <summary>T5's RMS norm: no mean, no bias, variance accumulated in float32, result cast to a half weight's dtype.</summary>
public sealed class T5LayerNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    private readonly double _eps;

    public T5LayerNorm(long hiddenSize, double eps) : base(nameof(T5LayerNorm))
    {
        weight = new Parameter(torch.ones(hiddenSize, dtype: Construction.DType, device: Construction.Device));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var variance = hiddenStates.to(ScalarType.Float32).pow(2).mean([-1], keepdim: true); // [B, S, 1]
        var normed = hiddenStates * torch.rsqrt(variance + _eps); // float32 by promotion
        if (weight.dtype is ScalarType.Float16 or ScalarType.BFloat16)
            normed = normed.to(weight.dtype);
        return scope.MoveToOuter(weight * normed);
    }
}

/// <summary>
/// Self-attention without the 1/sqrt(d) scale, plus a learned relative position bias. Only the first block owns the
/// bias table (relative_attention_bias); the bias it computes is reused by all later blocks.
/// </summary>
public sealed class T5Attention : nn.Module
{
    public readonly Linear q;
    public readonly Linear k;
    public readonly Linear v;
    public readonly Linear o;
    public readonly EmbeddingTable? relative_attention_bias;
    private readonly long _heads;
    private readonly long _dKv;
    private readonly long _numBuckets;
    private readonly long _maxDistance;

    public T5Attention(T5Config config, bool hasRelativeAttentionBias) : base(nameof(T5Attention))
    {
        _heads = config.NumHeads;
        _dKv = config.DKv;
        _numBuckets = config.RelativeAttentionNumBuckets;
        _maxDistance = config.RelativeAttentionMaxDistance;
        long inner = config.NumHeads * config.DKv;
        q = nn.Linear(config.DModel, inner, hasBias: false, device: Construction.Device, dtype: Construction.DType);
        k = nn.Linear(config.DModel, inner, hasBias: false, device: Construction.Device, dtype: Construction.DType);
        v = nn.Linear(config.DModel, inner, hasBias: false, device: Construction.Device, dtype: Construction.DType);
        o = nn.Linear(inner, config.DModel, hasBias: false, device: Construction.Device, dtype: Construction.DType);
        if (hasRelativeAttentionBias)
            relative_attention_bias = new EmbeddingTable(config.RelativeAttentionNumBuckets, config.NumHeads);
        RegisterComponents();
    }

    /// <summary>Bidirectional bucket of each relative position (memory - query): exact below half the half-range, log-spaced up to max_distance.</summary>
    private Tensor RelativePositionBucket(Tensor relativePosition)
    {
        using var scope = torch.NewDisposeScope();
        long buckets = _numBuckets / 2;
        var bucket = relativePosition.gt(0).to(ScalarType.Int64) * buckets;
        var distance = relativePosition.abs();
        long maxExact = buckets / 2;
        var isSmall = distance.lt(maxExact);
        var logScaled = torch.log(distance.to(ScalarType.Float32) / maxExact) / Math.Log((double)_maxDistance / maxExact) * (buckets - maxExact);
        var ifLarge = logScaled.to(ScalarType.Int64) + maxExact;
        ifLarge = torch.minimum(ifLarge, torch.full_like(ifLarge, buckets - 1));
        return scope.MoveToOuter(bucket + torch.where(isSmall, distance, ifLarge));
    }

    /// <summary>The position bias [1, heads, queryLength, keyLength] in the bias table's dtype.</summary>
    public Tensor ComputeBias(long queryLength, long keyLength, Device device)
    {
        if (relative_attention_bias is null)
            throw new InvalidOperationException("Only the first T5 block's attention has a relative position bias table.");
        using var scope = torch.NewDisposeScope();
        var contextPosition = torch.arange(queryLength, dtype: ScalarType.Int64, device: device).unsqueeze(1); // [Q, 1]
        var memoryPosition = torch.arange(keyLength, dtype: ScalarType.Int64, device: device).unsqueeze(0); // [1, K]
        var bucket = RelativePositionBucket(memoryPosition - contextPosition); // [Q, K]
        var values = relative_attention_bias.call(bucket); // [Q, K, heads]
        return scope.MoveToOuter(values.permute(2, 0, 1).unsqueeze(0)); // [1, heads, Q, K]
    }

    /// <param name="hiddenStates">[B, S, d_model]</param>
    /// <param name="positionBias">[1 or B, heads, S, S], the attention mask already added.</param>
    public Tensor forward(Tensor hiddenStates, Tensor positionBias)
    {
        using var scope = torch.NewDisposeScope();
        long batch = hiddenStates.shape[0], seq = hiddenStates.shape[1];
        var query = q.call(hiddenStates).view(batch, seq, _heads, _dKv).transpose(1, 2); // [B, heads, S, d_kv]
        var key = k.call(hiddenStates).view(batch, seq, _heads, _dKv).transpose(1, 2);
        var value = v.call(hiddenStates).view(batch, seq, _heads, _dKv).transpose(1, 2);
        // T5 does not scale scores. TorchSharp's SDPA always scales by 1/sqrt(d_kv), so the query is pre-multiplied by
        // sqrt(d_kv) (exact when it is a power of two, e.g. 8 for d_kv 64).
        var attended = F.scaled_dot_product_attention(query * Math.Sqrt(_dKv), key, value, attn_mask: positionBias); // [B, heads, S, d_kv]
        var merged = attended.transpose(1, 2).reshape(batch, seq, _heads * _dKv);
        return scope.MoveToOuter(o.call(merged));
    }
}

/// <summary>x + SelfAttention(layer_norm(x)).</summary>
public sealed class T5LayerSelfAttention : nn.Module
{
    public readonly T5Attention SelfAttention;
    public readonly T5LayerNorm layer_norm;

    public T5LayerSelfAttention(T5Config config, bool hasRelativeAttentionBias) : base(nameof(T5LayerSelfAttention))
    {
        SelfAttention = new T5Attention(config, hasRelativeAttentionBias);
        layer_norm = new T5LayerNorm(config.DModel, config.LayerNormEpsilon);
        RegisterComponents();
    }

    public Tensor forward(Tensor hiddenStates, Tensor positionBias)
    {
        using var scope = torch.NewDisposeScope();
        var attended = SelfAttention.forward(layer_norm.call(hiddenStates), positionBias);
        return scope.MoveToOuter(hiddenStates + attended);
    }
}

/// <summary>
/// T5 v1.1's gated feed-forward: wo(act(wi_0(x)) * wi_1(x)). As transformers' _keep_in_fp32_modules = ["wo"], wo stays
/// float32 when the model is converted to float16 (its activations overflow in half), and its input is cast to wo's dtype.
/// </summary>
public sealed class T5DenseGatedActDense : nn.Module<Tensor, Tensor>, IKeepInFloat32
{
    public readonly Linear wi_0;
    public readonly Linear wi_1;
    public readonly Linear wo;
    private readonly string _activation;

    public T5DenseGatedActDense(T5Config config) : base(nameof(T5DenseGatedActDense))
    {
        _activation = config.DenseActFn;
        wi_0 = nn.Linear(config.DModel, config.DFf, hasBias: false, device: Construction.Device, dtype: Construction.DType);
        wi_1 = nn.Linear(config.DModel, config.DFf, hasBias: false, device: Construction.Device, dtype: Construction.DType);
        wo = nn.Linear(config.DFf, config.DModel, hasBias: false, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    public IReadOnlyList<string> KeepInFloat32(ScalarType dtype) => dtype == ScalarType.Float16 ? [nameof(wo)] : [];

    protected override nn.Module _to(ScalarType dtype, bool non_blocking)
    {
        base._to(dtype, non_blocking);
        if (KeepInFloat32(dtype).Count > 0) wo.to(ScalarType.Float32, non_blocking);
        return this;
    }

    protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking)
    {
        base._to(device, dtype, non_blocking);
        if (KeepInFloat32(dtype).Count > 0) wo.to(ScalarType.Float32, non_blocking);
        return this;
    }

    private Tensor Activate(Tensor x) => _activation switch
    {
        // transformers' NewGELUActivation, written out as it is (tanh approximation).
        "gelu_new" => 0.5 * x * (1.0 + torch.tanh(Math.Sqrt(2.0 / Math.PI) * (x + 0.044715 * torch.pow(x, 3.0)))),
        "gelu" => F.gelu(x),
        _ => F.relu(x),
    };

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var gated = Activate(wi_0.call(hiddenStates)) * wi_1.call(hiddenStates); // [B, S, d_ff]
        if (gated.dtype != wo.weight!.dtype)
            gated = gated.to(wo.weight.dtype);
        return scope.MoveToOuter(wo.call(gated));
    }
}

/// <summary>x + DenseReluDense(layer_norm(x)).</summary>
public sealed class T5LayerFF : nn.Module<Tensor, Tensor>
{
    public readonly T5DenseGatedActDense DenseReluDense;
    public readonly T5LayerNorm layer_norm;

    public T5LayerFF(T5Config config) : base(nameof(T5LayerFF))
    {
        DenseReluDense = new T5DenseGatedActDense(config);
        layer_norm = new T5LayerNorm(config.DModel, config.LayerNormEpsilon);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        return scope.MoveToOuter(hiddenStates + DenseReluDense.call(layer_norm.call(hiddenStates)));
    }
}

/// <summary>
/// One encoder block: layer[0] self-attention, layer[1] feed-forward, each followed by transformers' float16 clamp.
/// The first block (the one with the relative attention bias table) makes the position bias, the attention mask
/// added, and hands it on to the blocks after it, as transformers' T5 does.
/// </summary>
public sealed class T5Block : nn.Module<Tensor, Tensor?, Tensor?, (Tensor Hidden, Tensor PositionBias)>
{
    public readonly ModuleList<nn.Module> layer;

    public T5Block(T5Config config, bool hasRelativeAttentionBias) : base(nameof(T5Block))
    {
        layer = new ModuleList<nn.Module>(new T5LayerSelfAttention(config, hasRelativeAttentionBias), new T5LayerFF(config));
        RegisterComponents();
    }

    public T5Attention SelfAttention => ((T5LayerSelfAttention)layer[0]).SelfAttention;

    /// <param name="hiddenStates">[B, S, d_model]</param>
    /// <param name="attentionMask">[B, S], 1 for tokens to attend to and 0 for padding; null attends to all. Used by the first block only.</param>
    /// <param name="positionBias">[1 or B, heads, S, S] from the first block, the mask already added; null in the first block, which makes it.</param>
    public override (Tensor Hidden, Tensor PositionBias) forward(Tensor hiddenStates, Tensor? attentionMask, Tensor? positionBias)
    {
        using var scope = torch.NewDisposeScope();
        bool made = positionBias is null;
        positionBias ??= PositionBias(hiddenStates, attentionMask);
        var h = ClampFloat16(((T5LayerSelfAttention)layer[0]).forward(hiddenStates, positionBias));
        h = ClampFloat16(((T5LayerFF)layer[1]).call(h));
        return (scope.MoveToOuter(h), made ? scope.MoveToOuter(positionBias) : positionBias);
    }

    private Tensor PositionBias(Tensor hiddenStates, Tensor? attentionMask)
    {
        long seq = hiddenStates.shape[1];
        var positionBias = SelfAttention.ComputeBias(seq, seq, hiddenStates.device); // [1, heads, S, S]
        if (attentionMask is null) return positionBias;
        var dtype = hiddenStates.dtype;
        var keep = attentionMask.to(dtype, positionBias.device).unsqueeze(1).unsqueeze(1); // [B, 1, 1, S]
        return positionBias + (1.0 - keep) * torch.finfo(dtype).min; // [B, heads, S, S]
    }

    /// <summary>transformers clamps float16 hidden states to the finite range (max - 1000 once an inf appeared).</summary>
    private static Tensor ClampFloat16(Tensor hiddenStates)
    {
        if (hiddenStates.dtype != ScalarType.Float16) return hiddenStates;
        double max = torch.finfo(ScalarType.Float16).max;
        var device = hiddenStates.device;
        var clampValue = torch.where(torch.isinf(hiddenStates).any(),
            torch.tensor(max - 1000, ScalarType.Float32, device), torch.tensor(max, ScalarType.Float32, device));
        return torch.clamp(hiddenStates, -clampValue, clampValue);
    }
}

/// <summary>transformers' T5Stack as the encoder: blocks, then final_layer_norm. The token embedding is the model's shared one.</summary>
public sealed class T5Stack : nn.Module<Tensor, Tensor?, Tensor>
{
    public readonly ModuleList<T5Block> block;
    public readonly T5LayerNorm final_layer_norm;

    public T5Stack(T5Config config) : base(nameof(T5Stack))
    {
        block = new ModuleList<T5Block>(Enumerable.Range(0, config.NumLayers).Select(i => new T5Block(config, hasRelativeAttentionBias: i == 0)).ToArray());
        final_layer_norm = new T5LayerNorm(config.DModel, config.LayerNormEpsilon);
        RegisterComponents();
    }

    /// <param name="inputsEmbeds">[B, S, d_model]</param>
    /// <param name="attentionMask">[B, S], 1 for tokens to attend to and 0 for padding; null attends to all.</param>
    public override Tensor forward(Tensor inputsEmbeds, Tensor? attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        var h = inputsEmbeds;
        Tensor? positionBias = null;
        foreach (var b in block) (h, positionBias) = b.call(h, attentionMask, positionBias);
        return scope.MoveToOuter(final_layer_norm.call(h));
    }
}

/// <summary>
/// transformers' T5EncoderModel. The token embedding is shared.weight (encoder.embed_tokens is the same module and is
/// not saved separately). No embedding scaling, no dropout at inference.
/// </summary>
public sealed partial class T5EncoderModel : nn.Module<(Tensor InputIds, Tensor? AttentionMask), Tensor>
{
    public readonly EmbeddingTable shared;
    public readonly T5Stack encoder;

    public T5Config Config { get; }

    public T5EncoderModel(T5Config config) : base(nameof(T5EncoderModel))
    {
        config.Validate();
        Config = config;
        shared = new EmbeddingTable(config.VocabSize, config.DModel);
        encoder = new T5Stack(config);
        RegisterComponents();
    }

    /// <param name="inputIds">[B, S] int64 token ids.</param>
    /// <param name="attentionMask">Optional [B, S] mask (1 keep, 0 pad). FLUX passes none.</param>
    /// <returns>last_hidden_state [B, S, d_model].</returns>
    /// <remarks>The model's call: hooks registered on the model (a device map's placement, a benchmark's timing) run around it.</remarks>
    public Tensor forward(Tensor inputIds, Tensor? attentionMask = null) => call((inputIds, attentionMask));

    public override Tensor forward((Tensor InputIds, Tensor? AttentionMask) input)
    {
        using var scope = torch.NewDisposeScope();
        var embeds = shared.call(input.InputIds); // [B, S, d_model]
        return scope.MoveToOuter(encoder.call(embeds, input.AttentionMask));
    }
}
