using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Families;

/// <summary>
/// SDXL, as diffusers' StableDiffusionXLPipeline: two CLIP text encoders (CLIPTextModel and CLIPTextModelWithProjection)
/// whose penultimate hidden states are concatenated, pooled text embeddings from the second, the UNet's "text_time"
/// conditioning (pooled embeddings + original size, crop, target size), and a VAE decoded in float32 when the pipeline
/// runs in float16 (force_upcast). The denoise run is Stable Diffusion's, with the added conditioning.
/// </summary>
[PipelineFamily("StableDiffusionXLPipeline")]
internal sealed class StableDiffusionXLFamily : StableDiffusionFamily
{
    public override string Name => "StableDiffusionXL";
    public override string Description => "StableDiffusionXLPipeline (SDXL)";
    public override IReadOnlyList<string> TextComponents { get; } = ["tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2"];
    public override double DefaultGuidanceScale => 5.0;

    public override IReadOnlyList<DiffusionEmbedding> Encode(DiffusionPipeline pipe, IReadOnlyList<string> prompts, IReadOnlyList<string?> negativePrompts,
        EncodeOptions options, IReadOnlyList<int> indices, Action<PipelineWarning> warn)
    {
        const string stage = "Encoding prompts (SDXL)";
        var tokenizers = new[] { pipe.Require<CLIPTokenizer>("tokenizer", stage), pipe.Require<CLIPTokenizer>("tokenizer_2", stage) };
        var encoders = new[] { pipe.Require<CLIPTextModel>("text_encoder", stage), pipe.Require<CLIPTextModel>("text_encoder_2", stage) };
        if (encoders[1].text_projection is null)
            throw new DiffusionException("ComponentTypeMismatch", DiffusionErrorKind.InvalidData,
                $"SDXL's text_encoder_2 in '{pipe.Path}' must be a CLIPTextModelWithProjection (its pooled output is the UNet's text_embeds). Check model_index.json.", "text_encoder_2");
        // diffusers: prompt_2 = prompt_2 or prompt; negative_prompt_2 = negative_prompt_2 or negative_prompt.
        var prompts2 = Generation.ExpandNegatives(prompts.Count, options.Prompt2).Select((p, i) => p ?? prompts[i]).ToList();
        var negatives2 = Generation.ExpandNegatives(prompts.Count, options.NegativePrompt2).Select((n, i) => n ?? negativePrompts[i]).ToList();
        bool zeroNegatives = ForceZerosForEmptyPrompt(pipe);

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var tokens = prompts.Select(p => TokenizeWarn(tokenizers[0], p, warn)).ToList();
        var tokens2 = prompts2.Select(p => TokenizeWarn(tokenizers[1], p, warn)).ToList();
        var (positive, pooled) = EncodeBoth(encoders, tokens.Select(t => t.Ids).ToList(), tokens2.Select(t => t.Ids).ToList(), pipe); // [B,77,C1+C2], [B,P]

        var result = new List<DiffusionEmbedding>();
        for (int i = 0; i < prompts.Count; i++)
        {
            Tensor negative, negativePooled;
            if (negativePrompts[i] is null && negatives2[i] is null && zeroNegatives)
            {
                // force_zeros_for_empty_prompt: without a negative prompt the unconditional input is zeros, not "" encoded.
                negative = torch.zeros_like(positive.narrow(0, i, 1));
                negativePooled = torch.zeros_like(pooled.narrow(0, i, 1));
            }
            else
            {
                var n1 = tokenizers[0].Encode(negativePrompts[i] ?? "", 77, pad: true);
                var n2 = tokenizers[1].Encode(negatives2[i] ?? "", 77, pad: true);
                (negative, negativePooled) = EncodeBoth(encoders, [n1.Ids], [n2.Ids], pipe);
            }
            result.Add(new DiffusionEmbedding(positive.narrow(0, i, 1).contiguous(), negative.contiguous(), pooled.narrow(0, i, 1).contiguous(), negativePooled.contiguous())
            {
                Index = indices[i], Prompt = prompts[i], NegativePrompt = negativePrompts[i], Prompt2 = options.Prompt2 is null ? null : prompts2[i],
                NegativePrompt2 = options.NegativePrompt2 is null ? null : negatives2[i], Family = Name, Model = pipe.Path,
                TokenCount = tokens[i].TokenCount, Truncated = tokens[i].Truncated || tokens2[i].Truncated,
                TruncatedText = tokens[i].DroppedText ?? tokens2[i].DroppedText,
            });
        }
        return result;
    }

    /// <summary>Both encoders' hidden_states[-2] concatenated on the channel axis, and the second's projected pooled output.</summary>
    private static (Tensor Embeds, Tensor Pooled) EncodeBoth(CLIPTextModel[] encoders, List<long[]> ids1, List<long[]> ids2, DiffusionPipeline pipe)
    {
        using var scope = torch.NewDisposeScope();
        using var first = encoders[0].ForwardHiddenState(Ids(ids1, pipe));   // [B,77,C1]
        using var second = encoders[1].ForwardHiddenState(Ids(ids2, pipe));  // [B,77,C2], pooled [B,P]
        var embeds = torch.cat([first.LastHiddenState, second.LastHiddenState.to(first.LastHiddenState.device)], -1); // [B,77,C1+C2]
        return scope.MoveToOuter(embeds, second.PooledOutput.alias());
    }

    private static Tensor Ids(List<long[]> ids, DiffusionPipeline pipe) =>
        torch.tensor(ids.SelectMany(x => x).ToArray(), [ids.Count, ids[0].Length], ScalarType.Int64, device: pipe.TorchDevice);

    /// <summary>model_index.json's force_zeros_for_empty_prompt (StableDiffusionXLPipeline's default: true).</summary>
    private static bool ForceZerosForEmptyPrompt(DiffusionPipeline pipe) => pipe.Folder.Flag("force_zeros_for_empty_prompt", absent: true);

    /// <summary>
    /// diffusers' added_cond_kwargs: text_embeds = the pooled embeddings, time_ids = (original size, crop top-left,
    /// target size) per image, both [negatives..., positives...] under classifier-free guidance, on the UNet's device.
    /// </summary>
    /// <returns>text embeds [B or 2B, P] and time ids [B or 2B, 6]</returns>
    protected override (Tensor? TextEmbeds, Tensor? TimeIds) AddedConditioning(DiffusionPipeline pipe, UNet2DConditionModel unet,
        IReadOnlyList<DiffusionEmbedding> batch, DenoiseOptions o, int height, int width, bool cfg)
    {
        if (unet.add_embedding is null) return (null, null);
        var original = o.OriginalSize ?? (height, width);
        var crop = o.CropCoordinates ?? (0, 0);
        var target = o.TargetSize ?? (height, width);
        float[] ids = [original.Height, original.Width, crop.Top, crop.Left, target.Height, target.Width];
        var pooled = batch.Select(e => e.PooledPromptEmbeds ?? throw MissingPooled(e)).ToArray();
        long expected = unet.Config.ProjectionClassEmbeddingsInputDim!.Value;
        long passed = unet.Config.AdditionTimeEmbedDim!.Value * ids.Length + pooled[0].shape[^1];
        if (passed != expected)
            throw new DiffusionException("AddedConditioningMismatch", DiffusionErrorKind.InvalidArgument,
                $"The UNet in '{pipe.Path}' expects {expected} added-embedding inputs but gets {passed} (6 x {unet.Config.AdditionTimeEmbedDim} time ids + " +
                $"{pooled[0].shape[^1]} pooled text). The embeddings come from another model's second text encoder: encode the prompts with this pipeline.", "Embedding");
        using var scope = torch.NewDisposeScope();
        var dtype = pipe.TorchDType; var device = pipe.TorchDevice;
        var text = torch.cat(pooled, 0);
        if (cfg) text = torch.cat([torch.cat(batch.Select(e => e.NegativePooledPromptEmbeds ?? throw MissingPooled(e)).ToArray(), 0), text], 0);
        var timeIds = torch.tensor(ids, [1, ids.Length], ScalarType.Float32).repeat(text.shape[0], 1); // [B or 2B, 6]
        return scope.MoveToOuter(text.to(dtype, device), timeIds.to(dtype, device));
    }

    private static DiffusionException MissingPooled(DiffusionEmbedding e) =>
        new("PooledEmbeddingMissing", DiffusionErrorKind.InvalidArgument,
            $"Embedding #{e.Index} has no pooled prompt embeddings, which SDXL's UNet needs. Encode it with an SDXL pipeline's two text encoders.", "Embedding");

    /// <summary>
    /// Stable Diffusion's decode, with SDXL's force_upcast: a float16 VAE whose config asks for it decodes in float32
    /// (diffusers' upcast_vae: the float16 weights converted to float32 for the call, then back, losslessly).
    /// </summary>
    public override Tensor Decode(DiffusionPipeline pipe, Tensor latents, int height, int width)
    {
        var vae = pipe.Require<AutoencoderKL>("vae", "Decoding latents");
        bool upcast = vae.Config.ForceUpcast && pipe.TorchDType == ScalarType.Float16 && pipe.Components["vae"].DevicePlan is null;
        if (!upcast) return DecodeIn(pipe, latents, vaeDType: null);
        return ImageToImage.WithVaeIn(pipe, vae, ScalarType.Float32, () => DecodeIn(pipe, latents, ScalarType.Float32));
    }

    /// <summary>
    /// The dtype SDXL's VAE encodes an init image in (StableDiffusionXLImg2ImgPipeline.prepare_latents): float32 whenever
    /// its config says force_upcast, whatever the pipeline's dtype (decoding upcasts a float16 VAE only); the pipeline's
    /// otherwise, and for a VAE placed by a device map, which is not converted (as in <see cref="Decode"/>).
    /// </summary>
    public override ScalarType VaeEncodeDType(DiffusionPipeline pipe, AutoencoderKL vae) =>
        vae.Config.ForceUpcast && pipe.Components["vae"].DevicePlan is null ? ScalarType.Float32 : pipe.TorchDType;
}
