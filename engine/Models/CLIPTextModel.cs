using System.Text.Json;
using System.Text.Json.Serialization;
using Diffusion.Engine.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models;

/// <summary>
/// config.json of transformers' CLIPTextModel. A key that is absent takes transformers' CLIPTextConfig default
/// (openai/clip-vit-base-patch32's text tower: 512 wide, 8 heads, eos_token_id 49407); SD 1.5's and FLUX.1's
/// config.json list every key (768 wide, 12 heads, the legacy eos_token_id 2).
/// </summary>
public sealed class CLIPTextConfig : IModelConfig
{
    private const string ModelName = "CLIP text encoder";

    [JsonPropertyName("vocab_size")] public long VocabSize { get; set; } = 49408;
    [JsonPropertyName("hidden_size")] public long HiddenSize { get; set; } = 512;
    [JsonPropertyName("intermediate_size")] public long IntermediateSize { get; set; } = 2048;
    [JsonPropertyName("projection_dim")] public long ProjectionDim { get; set; } = 512;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; set; } = 12;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; set; } = 8;
    [JsonPropertyName("max_position_embeddings")] public long MaxPositionEmbeddings { get; set; } = 77;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; set; } = "quick_gelu";
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; set; } = 1e-5;
    [JsonPropertyName("pad_token_id")] public long PadTokenId { get; set; } = 1;
    [JsonPropertyName("bos_token_id")] public long BosTokenId { get; set; } = 49406;
    [JsonPropertyName("eos_token_id")] public long EosTokenId { get; set; } = 49407;

    /// <summary>Where this config was read from (for error messages); "config.json" when built in code.</summary>
    [JsonIgnore] public string SourcePath { get; private set; } = "config.json";

    public static CLIPTextConfig Load(string configJsonPath) =>
        Checked(ModelConfigJson.Read<CLIPTextConfig>(configJsonPath, ModelName), Path.GetFullPath(configJsonPath));

    /// <summary>A config from its JSON text; <paramref name="source"/> names it in messages.</summary>
    public static CLIPTextConfig FromJson(string json, string source = "config.json") =>
        Checked(ModelConfigJson.Parse<CLIPTextConfig>(json, source, ModelName), source);

    private static CLIPTextConfig Checked(CLIPTextConfig config, string source)
    {
        config.SourcePath = source;
        config.Validate(source);
        return config;
    }

    internal void Validate(string? source = null)
    {
        var where = source is null ? "The CLIP text encoder config" : $"The CLIP text encoder config '{source}'";
        var rules = new ConfigRules("CLIP text encoder", source ?? "config.json");
        rules.Positive("vocab_size", VocabSize);
        rules.Positive("hidden_size", HiddenSize);
        rules.Positive("intermediate_size", IntermediateSize);
        rules.Positive("num_hidden_layers", NumHiddenLayers);
        rules.Positive("max_position_embeddings", MaxPositionEmbeddings);
        if (NumAttentionHeads <= 0 || HiddenSize % NumAttentionHeads != 0)
            throw new DiffusionException("ModelConfigInvalid", DiffusionErrorKind.InvalidData,
                $"{where} has hidden_size {HiddenSize}, which is not divisible by num_attention_heads {NumAttentionHeads}.", source);
        if (HiddenAct is not ("quick_gelu" or "gelu"))
            throw new DiffusionException("ActivationNotSupported", DiffusionErrorKind.NotSupported,
                $"{where} uses hidden_act '{HiddenAct}'; this engine supports 'quick_gelu' and 'gelu'.", source);
    }
}

/// <summary>What <see cref="CLIPTextModel"/> returns: the sequence of hidden states and the pooled (EOS) vector.</summary>
/// <param name="LastHiddenState">[B, S, C]: final_layer_norm of the last layer's output, or of an earlier layer's with clip skip.</param>
/// <param name="PooledOutput">[B, C]: the final-layer-normed last hidden state at each row's EOS token (always the full stack).</param>
public sealed record CLIPTextOutput(Tensor LastHiddenState, Tensor PooledOutput) : IDisposable
{
    public void Dispose()
    {
        LastHiddenState.Dispose();
        PooledOutput.Dispose();
    }
}

/// <summary>Token plus learned absolute position embeddings.</summary>
public sealed class CLIPTextEmbeddings : nn.Module<Tensor, Tensor>
{
    public readonly EmbeddingTable token_embedding;
    public readonly EmbeddingTable position_embedding;

    public CLIPTextEmbeddings(CLIPTextConfig config) : base(nameof(CLIPTextEmbeddings))
    {
        token_embedding = new EmbeddingTable(config.VocabSize, config.HiddenSize);
        position_embedding = new EmbeddingTable(config.MaxPositionEmbeddings, config.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor inputIds)
    {
        using var scope = torch.NewDisposeScope();
        var positionIds = torch.arange(inputIds.shape[1], dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0); // [1, S]
        var embeddings = token_embedding.call(inputIds) + position_embedding.call(positionIds); // [B, S, C]
        return scope.MoveToOuter(embeddings);
    }
}

/// <summary>Multi-head causal self-attention with biased q/k/v/out projections.</summary>
public sealed class CLIPAttention : nn.Module<Tensor, Tensor>
{
    public readonly Linear q_proj;
    public readonly Linear k_proj;
    public readonly Linear v_proj;
    public readonly Linear out_proj;
    private readonly long _heads;
    private readonly long _headDim;

    public CLIPAttention(CLIPTextConfig config) : base(nameof(CLIPAttention))
    {
        _heads = config.NumAttentionHeads;
        _headDim = config.HiddenSize / config.NumAttentionHeads;
        q_proj = nn.Linear(config.HiddenSize, config.HiddenSize, device: Construction.Device, dtype: Construction.DType);
        k_proj = nn.Linear(config.HiddenSize, config.HiddenSize, device: Construction.Device, dtype: Construction.DType);
        v_proj = nn.Linear(config.HiddenSize, config.HiddenSize, device: Construction.Device, dtype: Construction.DType);
        out_proj = nn.Linear(config.HiddenSize, config.HiddenSize, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        long batch = hiddenStates.shape[0], seq = hiddenStates.shape[1], channels = hiddenStates.shape[2];
        var query = q_proj.call(hiddenStates).view(batch, seq, _heads, _headDim).transpose(1, 2); // [B, heads, S, D]
        var key = k_proj.call(hiddenStates).view(batch, seq, _heads, _headDim).transpose(1, 2);
        var value = v_proj.call(hiddenStates).view(batch, seq, _heads, _headDim).transpose(1, 2);
        var attended = F.scaled_dot_product_attention(query, key, value, is_casual: true); // scale 1/sqrt(D), as CLIP
        var merged = attended.transpose(1, 2).reshape(batch, seq, channels); // [B, S, C]
        return scope.MoveToOuter(out_proj.call(merged));
    }
}

/// <summary>fc1 -> activation (quick_gelu or gelu) -> fc2.</summary>
public sealed class CLIPMLP : nn.Module<Tensor, Tensor>
{
    public readonly Linear fc1;
    public readonly Linear fc2;
    private readonly bool _quickGelu;

    public CLIPMLP(CLIPTextConfig config) : base(nameof(CLIPMLP))
    {
        _quickGelu = config.HiddenAct == "quick_gelu";
        fc1 = nn.Linear(config.HiddenSize, config.IntermediateSize, device: Construction.Device, dtype: Construction.DType);
        fc2 = nn.Linear(config.IntermediateSize, config.HiddenSize, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var h = fc1.call(hiddenStates);
        h = _quickGelu ? h * torch.sigmoid(h * 1.702) : F.gelu(h);
        return scope.MoveToOuter(fc2.call(h));
    }
}

/// <summary>Pre-norm transformer layer: x + attn(ln1(x)), then x + mlp(ln2(x)).</summary>
public sealed class CLIPEncoderLayer : nn.Module<Tensor, Tensor>
{
    public readonly CLIPAttention self_attn;
    public readonly LayerNorm layer_norm1;
    public readonly CLIPMLP mlp;
    public readonly LayerNorm layer_norm2;

    public CLIPEncoderLayer(CLIPTextConfig config) : base(nameof(CLIPEncoderLayer))
    {
        self_attn = new CLIPAttention(config);
        layer_norm1 = nn.LayerNorm(config.HiddenSize, config.LayerNormEps, device: Construction.Device, dtype: Construction.DType);
        mlp = new CLIPMLP(config);
        layer_norm2 = nn.LayerNorm(config.HiddenSize, config.LayerNormEps, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var h = hiddenStates + self_attn.call(layer_norm1.call(hiddenStates));
        h = h + mlp.call(layer_norm2.call(h));
        return scope.MoveToOuter(h);
    }
}

/// <summary>The stack of encoder layers.</summary>
public sealed class CLIPEncoder : nn.Module<Tensor, IReadOnlyList<Tensor>>
{
    public readonly ModuleList<CLIPEncoderLayer> layers;

    public CLIPEncoder(CLIPTextConfig config) : base(nameof(CLIPEncoder))
    {
        layers = new ModuleList<CLIPEncoderLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new CLIPEncoderLayer(config)).ToArray());
        RegisterComponents();
    }

    /// <summary>transformers' hidden_states: the embeddings, then each layer's output (NumHiddenLayers + 1 tensors).</summary>
    public override IReadOnlyList<Tensor> forward(Tensor inputsEmbeds)
    {
        using var scope = torch.NewDisposeScope();
        var layerOutputs = new List<Tensor>(layers.Count);
        var h = inputsEmbeds;
        foreach (var layer in layers)
        {
            h = layer.call(h);
            layerOutputs.Add(h);
        }
        scope.MoveToOuter(layerOutputs);
        return [inputsEmbeds, .. layerOutputs];
    }
}

/// <summary>
/// transformers' CLIPTextModel (5.x layout: embeddings, encoder, final_layer_norm at the top level, as its
/// save_pretrained writes them). Causal self-attention; pooled output at the EOS token.
/// </summary>
public sealed partial class CLIPTextModel : nn.Module<(Tensor InputIds, int ClipSkip, bool SdxlHiddenState), (Tensor LastHiddenState, Tensor PooledOutput)>
{
    /// <summary>
    /// Checkpoint key -> module key: checkpoints saved before transformers 5.6 (SD 1.5, FLUX.1) prefix every key with
    /// "text_model."; newer ones are flat, like this module.
    /// </summary>
    public static string ModuleKey(string checkpointKey) =>
        checkpointKey.StartsWith("text_model.", StringComparison.Ordinal) ? checkpointKey["text_model.".Length..] : checkpointKey;

    public readonly CLIPTextEmbeddings embeddings;
    public readonly CLIPEncoder encoder;
    public readonly LayerNorm final_layer_norm;
    /// <summary>CLIPTextModelWithProjection (SDXL's second encoder): the pooled output projected to projection_dim (its text_embeds); null for CLIPTextModel.</summary>
    public readonly Linear? text_projection;

    public CLIPTextConfig Config { get; }

    /// <param name="withProjection">transformers' CLIPTextModelWithProjection: adds text_projection (hidden_size -> projection_dim, no bias).</param>
    public CLIPTextModel(CLIPTextConfig config, bool withProjection = false) : base(nameof(CLIPTextModel))
    {
        config.Validate();
        Config = config;
        embeddings = new CLIPTextEmbeddings(config);
        encoder = new CLIPEncoder(config);
        final_layer_norm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps, device: Construction.Device, dtype: Construction.DType);
        if (withProjection)
            text_projection = nn.Linear(config.HiddenSize, config.ProjectionDim, hasBias: false, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <summary>
    /// SDXL's use of a CLIP encoder (diffusers' StableDiffusionXLPipeline.encode_prompt): hidden_states[-(clipSkip + 2)]
    /// as it is, without final_layer_norm, and the pooled output, projected by text_projection when the model has one
    /// (CLIPTextModelWithProjection's text_embeds).
    /// </summary>
    /// <param name="inputIds">[B, S] int64 token ids.</param>
    /// <returns>LastHiddenState: [B, S, C] the chosen hidden state; PooledOutput: [B, C] or [B, projection_dim].</returns>
    public CLIPTextOutput ForwardHiddenState(Tensor inputIds, int clipSkip = 0)
    {
        if (clipSkip < 0 || clipSkip + 2 > Config.NumHiddenLayers + 1)
            throw new DiffusionException("ClipSkipOutOfRange", DiffusionErrorKind.InvalidArgument,
                $"clip skip {clipSkip} is out of range for a text encoder with {Config.NumHiddenLayers} layers.", nameof(clipSkip));
        var (chosen, pooled) = call((inputIds, clipSkip, SdxlHiddenState: true));
        return new CLIPTextOutput(chosen, pooled);
    }

    /// <param name="inputIds">[B, S] int64 token ids, S &lt;= max_position_embeddings.</param>
    /// <param name="clipSkip">
    /// 0: LastHiddenState is the last layer's output. n &gt; 0: it is hidden_states[-(n + 1)] (the output n layers before
    /// the last) passed through final_layer_norm, as diffusers' clip_skip does. PooledOutput always comes from the last layer.
    /// </param>
    /// <remarks>The model's call (as <see cref="ForwardHiddenState"/>): hooks registered on the model (a device map's placement) run around it.</remarks>
    public CLIPTextOutput forward(Tensor inputIds, int clipSkip = 0)
    {
        if (clipSkip < 0 || clipSkip >= Config.NumHiddenLayers)
            throw new DiffusionException("ClipSkipOutOfRange", DiffusionErrorKind.InvalidArgument,
                $"clip skip {clipSkip} is out of range: the text encoder has {Config.NumHiddenLayers} layers, so use 0 to {Config.NumHiddenLayers - 1}.", nameof(clipSkip));
        var (selected, pooled) = call((inputIds, clipSkip, SdxlHiddenState: false));
        return new CLIPTextOutput(selected, pooled);
    }

    /// <summary>
    /// SdxlHiddenState false: <see cref="forward(Tensor, int)"/>'s outputs; true: <see cref="ForwardHiddenState"/>'s.
    /// The clip skip is checked by those two.
    /// </summary>
    public override (Tensor LastHiddenState, Tensor PooledOutput) forward((Tensor InputIds, int ClipSkip, bool SdxlHiddenState) input)
    {
        var (inputIds, clipSkip, sdxl) = input;
        using var scope = torch.NewDisposeScope();
        var (hiddenStates, last, pooled) = Run(inputIds);
        Tensor chosen;
        if (sdxl)
        {
            chosen = hiddenStates[^(clipSkip + 2)]; // [B, S, C]
            if (text_projection is not null) pooled = text_projection.call(pooled); // [B, projection_dim]
        }
        else
            chosen = clipSkip > 0 ? final_layer_norm.call(hiddenStates[^(clipSkip + 1)]) : last; // [B, S, C]
        return scope.MoveToOuter(chosen, pooled);
    }

    /// <summary>transformers' hidden_states (the embeddings, then every layer's output), the final-layer-normed last state, and the pooled output (that state at each row's EOS).</summary>
    private (IReadOnlyList<Tensor> HiddenStates, Tensor Last, Tensor Pooled) Run(Tensor inputIds)
    {
        long seq = inputIds.shape[^1];
        if (seq > Config.MaxPositionEmbeddings)
            throw new DiffusionException("SequenceTooLong", DiffusionErrorKind.InvalidArgument,
                $"The CLIP text encoder got {seq} tokens but handles at most {Config.MaxPositionEmbeddings} (max_position_embeddings). Truncate the token ids.", nameof(inputIds));
        var ids = inputIds.view(-1, seq); // [B, S]
        var embedded = embeddings.call(ids);
        var hiddenStates = encoder.call(embedded);
        var last = final_layer_norm.call(hiddenStates[^1]); // [B, S, C]

        // transformers: eos_token_id 2 is the pre-#24773 config value, where the EOS is the highest id in the row (argmax);
        // otherwise the first position of eos_token_id (pad may equal eos).
        var idsInt = ids.to(ScalarType.Int32, last.device);
        var eosPositions = Config.EosTokenId == 2
            ? idsInt.argmax(-1)
            : idsInt.eq(Config.EosTokenId).to(ScalarType.Int32).argmax(-1); // [B]
        var rows = torch.arange(last.shape[0], dtype: ScalarType.Int64, device: last.device);
        return (hiddenStates, last, last.index(rows, eosPositions)); // last [B, S, C], pooled [B, C]
    }
}
