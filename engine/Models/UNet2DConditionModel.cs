using System.Text.Json.Serialization;
using Diffusion.Engine.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Models;

/// <summary>
/// The UNet's config.json (diffusers <c>UNet2DConditionModel</c>); a key that is absent takes diffusers' default
/// (its <c>__init__</c>'s: SD 1.5's layout, but no sample_size and a cross_attention_dim of 1280).
/// Keys that only matter for training (dropout) or that diffusers ignores for these blocks with its default
/// attention processor (upcast_attention, resnet_skip_time_act, resnet_out_scale_factor) are read but have no effect.
/// </summary>
public sealed class UNet2DConditionConfig : IModelConfig
{
    private const string ModelName = "UNet2DConditionModel";

    [JsonPropertyName("sample_size")] public OneOrList<int>? SampleSize { get; set; }
    [JsonPropertyName("in_channels")] public int InChannels { get; set; } = 4;
    [JsonPropertyName("out_channels")] public int OutChannels { get; set; } = 4;
    [JsonPropertyName("center_input_sample")] public bool CenterInputSample { get; set; }
    [JsonPropertyName("flip_sin_to_cos")] public bool FlipSinToCos { get; set; } = true;
    [JsonPropertyName("freq_shift")] public double FreqShift { get; set; }
    [JsonPropertyName("down_block_types")] public string[] DownBlockTypes { get; set; } =
        ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];
    [JsonPropertyName("mid_block_type")] public string? MidBlockType { get; set; } = "UNetMidBlock2DCrossAttn";
    [JsonPropertyName("up_block_types")] public string[] UpBlockTypes { get; set; } =
        ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"];
    [JsonPropertyName("only_cross_attention")] public OneOrList<bool> OnlyCrossAttention { get; set; } = false;
    [JsonPropertyName("block_out_channels")] public int[] BlockOutChannels { get; set; } = [320, 640, 1280, 1280];
    [JsonPropertyName("layers_per_block")] public OneOrList<int> LayersPerBlock { get; set; } = 2;
    [JsonPropertyName("downsample_padding")] public int DownsamplePadding { get; set; } = 1;
    [JsonPropertyName("mid_block_scale_factor")] public double MidBlockScaleFactor { get; set; } = 1;
    [JsonPropertyName("dropout")] public double Dropout { get; set; }
    [JsonPropertyName("act_fn")] public string ActFn { get; set; } = "silu";
    [JsonPropertyName("norm_num_groups")] public int? NormNumGroups { get; set; } = 32;
    [JsonPropertyName("norm_eps")] public double NormEps { get; set; } = 1e-5;
    [JsonPropertyName("cross_attention_dim")] public OneOrList<int> CrossAttentionDim { get; set; } = 1280;
    [JsonPropertyName("transformer_layers_per_block")] public OneOrList<int> TransformerLayersPerBlock { get; set; } = 1;
    [JsonPropertyName("reverse_transformer_layers_per_block")] public int[][]? ReverseTransformerLayersPerBlock { get; set; }
    [JsonPropertyName("encoder_hid_dim")] public int? EncoderHidDim { get; set; }
    [JsonPropertyName("encoder_hid_dim_type")] public string? EncoderHidDimType { get; set; }
    /// <summary>For SD 1.x/2.x this is really the number of heads per block (a diffusers naming quirk).</summary>
    [JsonPropertyName("attention_head_dim")] public OneOrList<int> AttentionHeadDim { get; set; } = 8;
    [JsonPropertyName("num_attention_heads")] public OneOrList<int>? NumAttentionHeads { get; set; }
    [JsonPropertyName("dual_cross_attention")] public bool DualCrossAttention { get; set; }
    [JsonPropertyName("use_linear_projection")] public bool UseLinearProjection { get; set; }
    [JsonPropertyName("class_embed_type")] public string? ClassEmbedType { get; set; }
    [JsonPropertyName("addition_embed_type")] public string? AdditionEmbedType { get; set; }
    [JsonPropertyName("addition_time_embed_dim")] public int? AdditionTimeEmbedDim { get; set; }
    [JsonPropertyName("num_class_embeds")] public int? NumClassEmbeds { get; set; }
    [JsonPropertyName("upcast_attention")] public bool UpcastAttention { get; set; }
    [JsonPropertyName("resnet_time_scale_shift")] public string ResnetTimeScaleShift { get; set; } = "default";
    [JsonPropertyName("resnet_skip_time_act")] public bool ResnetSkipTimeAct { get; set; }
    [JsonPropertyName("resnet_out_scale_factor")] public double ResnetOutScaleFactor { get; set; } = 1.0;
    [JsonPropertyName("time_embedding_type")] public string TimeEmbeddingType { get; set; } = "positional";
    [JsonPropertyName("time_embedding_dim")] public int? TimeEmbeddingDim { get; set; }
    [JsonPropertyName("time_embedding_act_fn")] public string? TimeEmbeddingActFn { get; set; }
    [JsonPropertyName("timestep_post_act")] public string? TimestepPostAct { get; set; }
    [JsonPropertyName("time_cond_proj_dim")] public int? TimeCondProjDim { get; set; }
    [JsonPropertyName("conv_in_kernel")] public int ConvInKernel { get; set; } = 3;
    [JsonPropertyName("conv_out_kernel")] public int ConvOutKernel { get; set; } = 3;
    [JsonPropertyName("projection_class_embeddings_input_dim")] public int? ProjectionClassEmbeddingsInputDim { get; set; }
    [JsonPropertyName("attention_type")] public string AttentionType { get; set; } = "default";
    [JsonPropertyName("class_embeddings_concat")] public bool ClassEmbeddingsConcat { get; set; }
    [JsonPropertyName("mid_block_only_cross_attention")] public bool? MidBlockOnlyCrossAttention { get; set; }
    [JsonPropertyName("cross_attention_norm")] public string? CrossAttentionNorm { get; set; }

    /// <summary>Where this config was read from (for error messages); "config.json" when built in code.</summary>
    [JsonIgnore] public string SourcePath { get; private set; } = "config.json";

    public static UNet2DConditionConfig Load(string configJsonPath) =>
        Checked(ModelConfigJson.Read<UNet2DConditionConfig>(configJsonPath, ModelName), Path.GetFullPath(configJsonPath));

    /// <summary>A config from its JSON text; <paramref name="source"/> names it in messages.</summary>
    public static UNet2DConditionConfig FromJson(string json, string source = "config.json") =>
        Checked(ModelConfigJson.Parse<UNet2DConditionConfig>(json, source, ModelName), source);

    private static UNet2DConditionConfig Checked(UNet2DConditionConfig config, string source)
    {
        config.SourcePath = source;
        config.Validate();
        return config;
    }

    /// <summary>Throws a <see cref="DiffusionException"/> naming the first key this engine cannot run (NotSupported) or that is inconsistent (InvalidData).</summary>
    public void Validate()
    {
        DiffusionException Unsupported(string key, object? value, string detail)
            => ModelConfigJson.Unsupported(ModelName, SourcePath, key, value, detail);

        if (NumAttentionHeads is not null)
            throw Unsupported("num_attention_heads", NumAttentionHeads,
                "diffusers' UNet2DConditionModel refuses it too; SD 1.x/2.x configs leave it null and give the heads in attention_head_dim.");
        if (ClassEmbedType is not null) throw Unsupported("class_embed_type", ClassEmbedType, "class embeddings are not implemented; it must be null.");
        if (NumClassEmbeds is not null) throw Unsupported("num_class_embeds", NumClassEmbeds, "class embeddings are not implemented; it must be null.");
        if (AdditionEmbedType is not (null or "text_time"))
            throw Unsupported("addition_embed_type", AdditionEmbedType, "only SDXL's \"text_time\" addition embeddings are implemented (no Kandinsky \"text\"/\"image\"); it must be null or \"text_time\".");
        if (AdditionEmbedType == "text_time" && (AdditionTimeEmbedDim is not > 0 || ProjectionClassEmbeddingsInputDim is not > 0))
            throw Unsupported("addition_time_embed_dim", AdditionTimeEmbedDim,
                "\"text_time\" addition embeddings need addition_time_embed_dim and projection_class_embeddings_input_dim (6 x addition_time_embed_dim + the pooled text width).");
        if (EncoderHidDimType is not null) throw Unsupported("encoder_hid_dim_type", EncoderHidDimType, "encoder hidden-state projections are not implemented; it must be null.");
        if (EncoderHidDim is not null) throw Unsupported("encoder_hid_dim", EncoderHidDim, "encoder hidden-state projections are not implemented; it must be null.");
        if (DualCrossAttention) throw Unsupported("dual_cross_attention", true, "dual cross-attention is not implemented; it must be false.");
        if (OnlyCrossAttention.PerBlock(DownBlockTypes.Length, "only_cross_attention", SourcePath).Any(b => b))
            throw Unsupported("only_cross_attention", OnlyCrossAttention, "cross-attention-only blocks are not implemented; it must be false.");
        if (AttentionType != "default") throw Unsupported("attention_type", AttentionType, "only \"default\" attention is implemented (no GLIGEN).");
        if (TimeEmbeddingType != "positional") throw Unsupported("time_embedding_type", TimeEmbeddingType, "only \"positional\" (sinusoidal) time embeddings are implemented.");
        if (TimeCondProjDim is not null) throw Unsupported("time_cond_proj_dim", TimeCondProjDim, "timestep conditioning (LCM) is not implemented; it must be null.");
        if (TimeEmbeddingActFn is not null) throw Unsupported("time_embedding_act_fn", TimeEmbeddingActFn, "it must be null.");
        if (TimestepPostAct is not null) throw Unsupported("timestep_post_act", TimestepPostAct, "it must be null.");
        if (ResnetTimeScaleShift != "default") throw Unsupported("resnet_time_scale_shift", ResnetTimeScaleShift, "only \"default\" is implemented.");
        if (CrossAttentionNorm is not null) throw Unsupported("cross_attention_norm", CrossAttentionNorm, "it must be null.");
        if (ReverseTransformerLayersPerBlock is not null) throw Unsupported("reverse_transformer_layers_per_block", "a list", "asymmetric UNets are not implemented; it must be null.");
        if (ActFn is not ("silu" or "swish")) throw Unsupported("act_fn", ActFn, "only \"silu\" is implemented.");
        if (NormNumGroups is null) throw Unsupported("norm_num_groups", null, "a group count is required (32 for SD).");
        foreach (var type in DownBlockTypes)
            if (type is not ("CrossAttnDownBlock2D" or "DownBlock2D"))
                throw Unsupported("down_block_types", type, "only CrossAttnDownBlock2D and DownBlock2D are implemented.");
        foreach (var type in UpBlockTypes)
            if (type is not ("CrossAttnUpBlock2D" or "UpBlock2D"))
                throw Unsupported("up_block_types", type, "only CrossAttnUpBlock2D and UpBlock2D are implemented.");
        if (MidBlockType is not (null or "UNetMidBlock2DCrossAttn"))
            throw Unsupported("mid_block_type", MidBlockType, "only UNetMidBlock2DCrossAttn (or null) is implemented.");

        int blocks = DownBlockTypes.Length;
        if (UpBlockTypes.Length != blocks || BlockOutChannels.Length != blocks)
            throw new DiffusionException("ModelConfigInconsistent", DiffusionErrorKind.InvalidData,
                $"The {ModelName} config '{SourcePath}' has {blocks} down_block_types, {UpBlockTypes.Length} up_block_types and " +
                $"{BlockOutChannels.Length} block_out_channels; they must have the same length. Restore the model's original config.json.", SourcePath);
        var heads = AttentionHeadDim.PerBlock(blocks, "attention_head_dim", SourcePath);

        var rules = new ConfigRules(ModelName, SourcePath);
        rules.Positive("in_channels", InChannels);
        rules.Positive("out_channels", OutChannels);
        if (blocks == 0) throw rules.Invalid("down_block_types", "[]", "it must list at least one block");
        rules.Positive("block_out_channels", BlockOutChannels);
        rules.Positive("layers_per_block", LayersPerBlock.PerBlock(blocks, "layers_per_block", SourcePath));
        rules.Positive("cross_attention_dim", CrossAttentionDim.PerBlock(blocks, "cross_attention_dim", SourcePath));
        rules.Positive("transformer_layers_per_block", TransformerLayersPerBlock.PerBlock(blocks, "transformer_layers_per_block", SourcePath));
        rules.Divides("norm_num_groups", NormNumGroups.Value, "block_out_channels", BlockOutChannels.Select(c => (long)c));
        // SD 1.x/2.x: attention_head_dim is the number of heads of each block's attention, which splits its channels.
        for (int b = 0; b < blocks; b++)
            if (DownBlockTypes[b].StartsWith("CrossAttn", StringComparison.Ordinal))
                rules.Divides("attention_head_dim", heads[b], "block_out_channels of a cross-attention block", [BlockOutChannels[b]]);
        if (MidBlockType is not null)
            rules.Divides("attention_head_dim", heads[^1], "block_out_channels of the mid block", [BlockOutChannels[^1]]);
        if (SampleSize?.Single is int size) rules.Positive("sample_size", size);
    }
}

/// <summary>
/// diffusers' <c>UNet2DConditionModel</c> for Stable Diffusion 1.x/2.x: sinusoidal time embedding, conv_in, down
/// blocks (keeping every intermediate output as a skip connection), the cross-attention mid block, up blocks that
/// consume the skips in reverse, GroupNorm + SiLU and conv_out. Predicts the noise (or v) for a latent batch.
/// </summary>
public sealed partial class UNet2DConditionModel : nn.Module<(Tensor Sample, Tensor Timestep, Tensor EncoderHiddenStates, Tensor? TextEmbeds, Tensor? TimeIds), Tensor>
{
    public readonly Conv2d conv_in;
    public readonly TimestepEmbedding time_embedding;
    /// <summary>SDXL (addition_embed_type "text_time"): the pooled text embeddings and the six size/crop numbers, embedded and added to the time embedding.</summary>
    public readonly TimestepEmbedding? add_embedding;
    private readonly Timesteps? _addTimeProj;
    public readonly ModuleList<UNetDownBlock> down_blocks;
    public readonly UNetMidBlock2DCrossAttn? mid_block;
    public readonly ModuleList<UNetUpBlock> up_blocks;
    public readonly GroupNorm conv_norm_out;
    public readonly Conv2d conv_out;
    private readonly Timesteps _timeProj;
    private readonly int _numUpsamplers;

    public UNet2DConditionConfig Config { get; }

    public UNet2DConditionModel(UNet2DConditionConfig config)
        : base(nameof(UNet2DConditionModel))
    {
        config.Validate();
        Config = config;
        int blocks = config.DownBlockTypes.Length;
        var channels = config.BlockOutChannels;
        // SD 1.x quirk: with num_attention_heads null, attention_head_dim holds the number of heads.
        var heads = config.AttentionHeadDim.PerBlock(blocks, "attention_head_dim", config.SourcePath);
        var crossDims = config.CrossAttentionDim.PerBlock(blocks, "cross_attention_dim", config.SourcePath);
        var layers = config.LayersPerBlock.PerBlock(blocks, "layers_per_block", config.SourcePath);
        var transformerLayers = config.TransformerLayersPerBlock.PerBlock(blocks, "transformer_layers_per_block", config.SourcePath);
        long groups = config.NormNumGroups!.Value;
        double eps = config.NormEps;

        conv_in = nn.Conv2d(config.InChannels, channels[0], kernel_size: config.ConvInKernel, padding: (config.ConvInKernel - 1) / 2, device: Construction.Device, dtype: Construction.DType);
        long timeEmbedDim = config.TimeEmbeddingDim ?? channels[0] * 4;
        _timeProj = new Timesteps(channels[0], config.FlipSinToCos, config.FreqShift);
        time_embedding = new TimestepEmbedding(channels[0], timeEmbedDim);
        if (config.AdditionEmbedType == "text_time")
        {
            _addTimeProj = new Timesteps(config.AdditionTimeEmbedDim!.Value, config.FlipSinToCos, config.FreqShift);
            add_embedding = new TimestepEmbedding(config.ProjectionClassEmbeddingsInputDim!.Value, timeEmbedDim);
        }

        var down = new List<UNetDownBlock>();
        long outputChannel = channels[0];
        for (int i = 0; i < blocks; i++)
        {
            long inputChannel = outputChannel;
            outputChannel = channels[i];
            bool isFinal = i == blocks - 1;
            down.Add(config.DownBlockTypes[i] == "CrossAttnDownBlock2D"
                ? new CrossAttnDownBlock2D(inputChannel, outputChannel, timeEmbedDim, layers[i], transformerLayers[i], eps, groups,
                    heads[i], crossDims[i], addDownsample: !isFinal, config.DownsamplePadding, config.UseLinearProjection)
                : new DownBlock2D(inputChannel, outputChannel, timeEmbedDim, layers[i], eps, groups, addDownsample: !isFinal, config.DownsamplePadding));
        }
        down_blocks = nn.ModuleList(down.ToArray());

        if (config.MidBlockType is not null)
            mid_block = new UNetMidBlock2DCrossAttn(channels[^1], timeEmbedDim, transformerLayers[^1], eps, groups,
                config.MidBlockScaleFactor, heads[^1], crossDims[^1], config.UseLinearProjection);

        var reversedChannels = Enumerable.Reverse(channels).ToArray();
        var reversedHeads = Enumerable.Reverse(heads).ToArray();
        var reversedLayers = Enumerable.Reverse(layers).ToArray();
        var reversedCrossDims = Enumerable.Reverse(crossDims).ToArray();
        var reversedTransformerLayers = Enumerable.Reverse(transformerLayers).ToArray();
        var up = new List<UNetUpBlock>();
        outputChannel = reversedChannels[0];
        for (int i = 0; i < blocks; i++)
        {
            bool isFinal = i == blocks - 1;
            long prevOutputChannel = outputChannel;
            outputChannel = reversedChannels[i];
            long inputChannel = reversedChannels[Math.Min(i + 1, blocks - 1)];
            if (!isFinal) _numUpsamplers++;
            up.Add(config.UpBlockTypes[i] == "CrossAttnUpBlock2D"
                ? new CrossAttnUpBlock2D(inputChannel, prevOutputChannel, outputChannel, timeEmbedDim, reversedLayers[i] + 1,
                    reversedTransformerLayers[i], eps, groups, reversedHeads[i], reversedCrossDims[i], addUpsample: !isFinal, config.UseLinearProjection)
                : new UpBlock2D(inputChannel, prevOutputChannel, outputChannel, timeEmbedDim, reversedLayers[i] + 1, eps, groups, addUpsample: !isFinal));
        }
        up_blocks = nn.ModuleList(up.ToArray());

        conv_norm_out = nn.GroupNorm(groups, channels[0], eps, device: Construction.Device, dtype: Construction.DType);
        conv_out = nn.Conv2d(channels[0], config.OutChannels, kernel_size: config.ConvOutKernel, padding: (config.ConvOutKernel - 1) / 2, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <param name="sample">[B, in_channels, h, w] noisy latents</param>
    /// <param name="timestep">0-dim, [1] or [B] timesteps (any numeric dtype)</param>
    /// <param name="encoderHiddenStates">[B, S, cross_attention_dim] text embeddings</param>
    /// <param name="textEmbeds">SDXL: [B, P] pooled text embeddings (diffusers' added_cond_kwargs["text_embeds"]); null otherwise.</param>
    /// <param name="timeIds">SDXL: [B, 6] original size, crop top-left, target size (added_cond_kwargs["time_ids"]); null otherwise.</param>
    /// <returns>[B, out_channels, h, w] model output (noise prediction for SD 1.x)</returns>
    /// <remarks>The model's call: hooks registered on the model (a device map's placement, a benchmark's timing) run around it.</remarks>
    public Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates, Tensor? textEmbeds = null, Tensor? timeIds = null) =>
        call((sample, timestep, encoderHiddenStates, textEmbeds, timeIds));

    public override Tensor forward((Tensor Sample, Tensor Timestep, Tensor EncoderHiddenStates, Tensor? TextEmbeds, Tensor? TimeIds) input)
    {
        var (sample, timestep, encoderHiddenStates, textEmbeds, timeIds) = input;
        if (add_embedding is not null && (textEmbeds is null || timeIds is null))
            throw new DiffusionException("AddedConditionMissing", DiffusionErrorKind.InvalidArgument,
                "This UNet (addition_embed_type \"text_time\", SDXL) needs the pooled text embeddings and the time ids; encode the prompts with the SDXL pipeline's two text encoders.", "Embedding");
        using var scope = torch.NewDisposeScope();
        long overallUpFactor = 1L << _numUpsamplers;
        bool forwardUpsampleSize = sample.shape[^2] % overallUpFactor != 0 || sample.shape[^1] % overallUpFactor != 0;

        if (Config.CenterInputSample) sample = 2 * sample - 1.0;

        var timesteps = timestep.dim() == 0 ? timestep.unsqueeze(0) : timestep;
        timesteps = timesteps.to(sample.device).expand(sample.shape[0]); // [B]
        var tEmb = _timeProj.forward(timesteps).to_type(sample.dtype);  // [B, C0], computed in float32
        var emb = time_embedding.call(tEmb); // [B, time_embed_dim]
        if (add_embedding is not null)
        {
            var timeEmbeds = _addTimeProj!.forward(timeIds!.flatten()).reshape(textEmbeds!.shape[0], -1); // [B*6, d] -> [B, 6d]
            var addEmbeds = torch.cat([textEmbeds!, timeEmbeds], -1).to_type(emb.dtype); // [B, P + 6d]
            var augEmb = add_embedding.call(addEmbeds);
            emb = emb + augEmb.to(emb.device); // [B, time_embed_dim]
        }

        sample = conv_in.call(sample);
        var skips = new List<Tensor> { sample };
        foreach (var block in down_blocks)
        {
            (sample, var states) = block.call(sample, emb, encoderHiddenStates);
            skips.AddRange(states);
        }

        if (mid_block is not null) sample = mid_block.call(sample, emb, encoderHiddenStates);

        for (int i = 0; i < up_blocks.Count; i++)
        {
            var block = up_blocks[i];
            bool isFinal = i == up_blocks.Count - 1;
            var blockSkips = skips.GetRange(skips.Count - block.ResnetCount, block.ResnetCount);
            skips.RemoveRange(skips.Count - block.ResnetCount, block.ResnetCount);
            long[]? upsampleSize = !isFinal && forwardUpsampleSize ? skips[^1].shape[2..] : null;
            sample = block.call(sample, blockSkips, emb, encoderHiddenStates, upsampleSize);
        }

        sample = F.silu(conv_norm_out.call(sample));
        return scope.MoveToOuter(conv_out.call(sample));
    }
}
