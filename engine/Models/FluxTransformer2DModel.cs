using System.Text.Json;
using System.Text.Json.Serialization;
using Diffusion.Engine.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Diffusion.Engine.Models;

/// <summary>
/// The transformer's config.json (diffusers FluxTransformer2DModel). A key that is absent takes diffusers' default:
/// FLUX.1's shape, without the guidance embedder (guidance_embeds false, as FLUX.1-schnell; FLUX.1-dev's config.json
/// sets it true).
/// </summary>
public sealed class FluxTransformer2DConfig : IModelConfig
{
    private const string ModelName = "FLUX transformer";

    [JsonPropertyName("patch_size")] public int PatchSize { get; set; } = 1;
    [JsonPropertyName("in_channels")] public int InChannels { get; set; } = 64;
    [JsonPropertyName("out_channels")] public int? OutChannels { get; set; }
    [JsonPropertyName("num_layers")] public int NumLayers { get; set; } = 19;
    [JsonPropertyName("num_single_layers")] public int NumSingleLayers { get; set; } = 38;
    [JsonPropertyName("attention_head_dim")] public int AttentionHeadDim { get; set; } = 128;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; set; } = 24;
    [JsonPropertyName("joint_attention_dim")] public int JointAttentionDim { get; set; } = 4096;
    [JsonPropertyName("pooled_projection_dim")] public int PooledProjectionDim { get; set; } = 768;
    /// <summary>True for guidance-distilled models (FLUX.1-dev), false for FLUX.1-schnell.</summary>
    [JsonPropertyName("guidance_embeds")] public bool GuidanceEmbeds { get; set; }
    [JsonPropertyName("axes_dims_rope")] public int[] AxesDimsRope { get; set; } = [16, 56, 56];

    [JsonIgnore] public int InnerDim => NumAttentionHeads * AttentionHeadDim;
    [JsonIgnore] public int EffectiveOutChannels => OutChannels ?? InChannels;

    /// <summary>Where this config was read from (for error messages); "config.json" when built in code.</summary>
    [JsonIgnore] public string SourcePath { get; private set; } = "config.json";

    public static FluxTransformer2DConfig Load(string configJsonPath) =>
        Checked(ModelConfigJson.Read<FluxTransformer2DConfig>(configJsonPath, ModelName), Path.GetFullPath(configJsonPath));

    /// <summary>A config from its JSON text; <paramref name="source"/> names it in messages.</summary>
    public static FluxTransformer2DConfig FromJson(string json, string source = "config.json") =>
        Checked(ModelConfigJson.Parse<FluxTransformer2DConfig>(json, source, ModelName), source);

    private static FluxTransformer2DConfig Checked(FluxTransformer2DConfig config, string source)
    {
        config.SourcePath = source;
        config.Validate(source);
        return config;
    }

    private void Validate(string path)
    {
        string? problem = null;
        if (InChannels <= 0 || NumAttentionHeads <= 0 || AttentionHeadDim <= 0 || JointAttentionDim <= 0 || PooledProjectionDim <= 0 || PatchSize <= 0)
            problem = "channel counts, head counts and dimensions must be positive";
        else if (NumLayers < 0 || NumSingleLayers < 0)
            problem = "num_layers and num_single_layers cannot be negative";
        else if (AxesDimsRope is null || AxesDimsRope.Length == 0 || AxesDimsRope.Any(d => d <= 0 || d % 2 != 0))
            problem = "axes_dims_rope must list positive even sizes";
        else if (AxesDimsRope.Sum() != AttentionHeadDim)
            problem = $"axes_dims_rope [{string.Join(", ", AxesDimsRope)}] must add up to attention_head_dim {AttentionHeadDim}";
        if (problem is not null)
            throw new DiffusionException("ModelConfigInvalid", DiffusionErrorKind.InvalidData,
                $"The transformer config '{path}' is not usable: {problem}. Replace it with the model's original config.json.", path);
    }
}

/// <summary>
/// diffusers' FluxTransformer2DModel: the FLUX.1 rectified-flow transformer. Packed latent tokens [B, L, 64] and T5
/// tokens [B, S, joint] go through double-stream blocks, then single-stream blocks over the joined sequence, and come
/// out as the velocity [B, L, 64]. Module fields are named as the checkpoint keys.
/// </summary>
public sealed partial class FluxTransformer2DModel : nn.Module<(Tensor HiddenStates, Tensor EncoderHiddenStates, Tensor PooledProjections, Tensor Timestep, Tensor ImgIds, Tensor TxtIds, Tensor? Guidance, (Tensor Cos, Tensor Sin)? Rotary), Tensor>
{
    /// <summary>CombinedTimestepGuidanceTextProjEmbeddings (guidance_embeds) or CombinedTimestepTextProjEmbeddings.</summary>
    public readonly nn.Module time_text_embed;
    public readonly Linear context_embedder;
    public readonly Linear x_embedder;
    public readonly ModuleList<FluxTransformerBlock> transformer_blocks;
    public readonly ModuleList<FluxSingleTransformerBlock> single_transformer_blocks;
    public readonly AdaLayerNormContinuous norm_out;
    public readonly Linear proj_out;
    private readonly FluxPosEmbed _posEmbed;

    public FluxTransformer2DConfig Config { get; }

    public FluxTransformer2DModel(FluxTransformer2DConfig config) : base(nameof(FluxTransformer2DModel))
    {
        Config = config;
        long inner = config.InnerDim;
        _posEmbed = new FluxPosEmbed(theta: 10000, config.AxesDimsRope);
        time_text_embed = config.GuidanceEmbeds
            ? new CombinedTimestepGuidanceTextProjEmbeddings(inner, config.PooledProjectionDim)
            : new CombinedTimestepTextProjEmbeddings(inner, config.PooledProjectionDim);
        context_embedder = nn.Linear(config.JointAttentionDim, inner, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        x_embedder = nn.Linear(config.InChannels, inner, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        transformer_blocks = nn.ModuleList(Enumerable.Range(0, config.NumLayers)
            .Select(_ => new FluxTransformerBlock(inner, config.NumAttentionHeads, config.AttentionHeadDim)).ToArray());
        single_transformer_blocks = nn.ModuleList(Enumerable.Range(0, config.NumSingleLayers)
            .Select(_ => new FluxSingleTransformerBlock(inner, config.NumAttentionHeads, config.AttentionHeadDim)).ToArray());
        norm_out = new AdaLayerNormContinuous(inner, inner, eps: 1e-6);
        proj_out = nn.Linear(inner, (long)config.PatchSize * config.PatchSize * config.EffectiveOutChannels, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <summary>
    /// One denoising evaluation. hiddenStates [B, L, in_channels] packed latents; encoderHiddenStates [B, S, joint];
    /// pooledProjections [B, pooled]; timestep [B] as the pipeline passes it (t/1000, multiplied by 1000 here);
    /// imgIds [L, 3]; txtIds [S, 3]; guidance [B] (the guidance scale, required exactly when guidance_embeds).
    /// <paramref name="rotary"/>: the tables <see cref="RotaryEmbedding"/> made for these ids, which a denoising loop
    /// computes once for all its steps (the ids do not change); null: computed here from the ids.
    /// Returns [B, L, out_channels] in the model's dtype.
    /// </summary>
    /// <remarks>The model's call: hooks registered on the model (a device map's placement, a benchmark's timing) run around it.</remarks>
    public Tensor forward(Tensor hiddenStates, Tensor encoderHiddenStates, Tensor pooledProjections, Tensor timestep,
        Tensor imgIds, Tensor txtIds, Tensor? guidance, (Tensor Cos, Tensor Sin)? rotary = null) =>
        call((hiddenStates, encoderHiddenStates, pooledProjections, timestep, imgIds, txtIds, guidance, rotary));

    public override Tensor forward((Tensor HiddenStates, Tensor EncoderHiddenStates, Tensor PooledProjections, Tensor Timestep, Tensor ImgIds, Tensor TxtIds, Tensor? Guidance, (Tensor Cos, Tensor Sin)? Rotary) input)
    {
        var (hiddenStates, encoderHiddenStates, pooledProjections, timestep, imgIds, txtIds, guidance, rotary) = input;
        using var scope = torch.NewDisposeScope();
        var dtype = x_embedder.weight.dtype;
        var device = x_embedder.weight.device;

        var hidden = x_embedder.call(hiddenStates.to(dtype, device)); // [B, L, D]
        var t = timestep.to(dtype, device) * 1000;
        var pooled = pooledProjections.to(dtype, device);
        var temb = time_text_embed switch // [B, D]
        {
            CombinedTimestepGuidanceTextProjEmbeddings withGuidance => withGuidance.call(t, GuidanceTimes1000(guidance, dtype, device), pooled),
            CombinedTimestepTextProjEmbeddings withoutGuidance when guidance is null => withoutGuidance.call(t, pooled),
            _ => throw new DiffusionException("GuidanceNotSupported", DiffusionErrorKind.InvalidArgument,
                "This FLUX transformer has no guidance embedding (guidance_embeds is false, e.g. FLUX.1-schnell), so it takes no guidance value. " +
                "Leave the guidance scale unset for this model.", "guidance"),
        };
        var encoder = context_embedder.call(encoderHiddenStates.to(dtype, device)); // [B, S, D]

        var (ropeCos, ropeSin) = rotary ?? RotaryEmbedding(imgIds, txtIds); // [S+L, head_dim] float32; the caller's tables are not disposed here

        // Each block's outputs replace its inputs, which are freed at once (57 blocks of [B, S+L, D] would add up).
        foreach (var block in transformer_blocks)
            ReplaceStreams(block.call(hidden, encoder, temb, ropeCos, ropeSin), ref encoder, ref hidden);
        foreach (var block in single_transformer_blocks)
            ReplaceStreams(block.call(hidden, encoder, temb, ropeCos, ropeSin), ref encoder, ref hidden);

        hidden = norm_out.call(hidden, temb);
        return scope.MoveToOuter(proj_out.call(hidden));
    }

    /// <summary>
    /// diffusers' pos_embed(cat(txt_ids, img_ids)): the 3-axis rotary tables (cos, sin), each [S+L, head_dim] float32 on
    /// the model's device. Computed on the CPU in float64 as diffusers does, then copied over once.
    /// </summary>
    public (Tensor Cos, Tensor Sin) RotaryEmbedding(Tensor imgIds, Tensor txtIds)
    {
        using var scope = torch.NewDisposeScope();
        var ids = torch.cat([txtIds.to(CPU), imgIds.to(CPU)], dim: 0); // [S+L, 3]
        var (cos, sin) = _posEmbed.forward(ids, x_embedder.weight.device);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    private static void ReplaceStreams((Tensor Encoder, Tensor Hidden) next, ref Tensor encoder, ref Tensor hidden)
    {
        encoder.Dispose();
        hidden.Dispose();
        (encoder, hidden) = next;
    }

    private static Tensor GuidanceTimes1000(Tensor? guidance, ScalarType dtype, Device device)
    {
        if (guidance is null)
            throw new DiffusionException("GuidanceRequired", DiffusionErrorKind.InvalidArgument,
                "This FLUX transformer is guidance-distilled (guidance_embeds is true, e.g. FLUX.1-dev) and needs a guidance value per image. " +
                "Pass the guidance scale (FLUX.1-dev is usually run with 3.5).", "guidance");
        return guidance.to(dtype, device) * 1000;
    }
}
