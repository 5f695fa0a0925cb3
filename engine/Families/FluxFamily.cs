using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Schedulers;
using Diffusion.Engine.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Families;

/// <summary>
/// FLUX.1 (dev and schnell), as diffusers' FluxPipeline: 1. CLIP pooled + T5 sequence embeddings, 2. packed noise
/// from a CPU generator, 3. flow-matching Euler with the transformer (guidance embedding for dev), 4. unpack, unscale
/// and shift, VAE decode.
/// </summary>
[PipelineFamily("FluxPipeline")]
internal sealed class FluxFamily : IPipelineFamily
{
    /// <summary>FluxPipeline's default_sample_size: the latent side before packing.</summary>
    private const int DefaultSampleSize = 128;

    public string Name => "Flux";
    public string Description => "FluxPipeline (FLUX.1 dev/schnell)";
    public IReadOnlyList<string> TextComponents { get; } = ["tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2"];
    public string DenoiserComponent => "transformer";
    public int DefaultSteps => 28;
    public double DefaultGuidanceScale => 3.5;
    /// <summary>FLUX.1 dev takes the guidance scale as an input (guidance-distilled); it is not classifier-free guidance.</summary>
    public bool DistilledGuidance => true;

    public int DefaultImageSize(DiffusersFolder folder, int vaeScaleFactor) => DefaultSampleSize * vaeScaleFactor;

    /// <summary>FluxImg2ImgPipeline's image processor: multiples of the VAE's scale times 2 (the latents are packed 2x2).</summary>
    public int ImageSizeMultiple(int vaeScaleFactor) => vaeScaleFactor * 2;

    /// <summary>FluxImg2ImgPipeline.get_timesteps keeps <c>steps * strength</c> as a float: <c>t_start = int(steps - steps * strength)</c>.</summary>
    public int StartStep(int steps, double strength) => (int)Math.Max(steps - Math.Min(steps * strength, steps), 0);

    public ScalarType VaeEncodeDType(DiffusionPipeline pipe, AutoencoderKL vae) => pipe.TorchDType;

    public IReadOnlyList<DiffusionEmbedding> Encode(DiffusionPipeline pipe, IReadOnlyList<string> prompts, IReadOnlyList<string?> negativePrompts,
        EncodeOptions o, IReadOnlyList<int> indices, Action<PipelineWarning> warn)
    {
        const string stage = "Encoding prompts (FLUX)";
        if (negativePrompts.Any(n => !string.IsNullOrEmpty(n)))
            warn(new PipelineWarning("FLUX.1 ignores -NegativePrompt: it is guidance-distilled, with no unconditional pass for a negative prompt " +
                "(diffusers warns the same: negative_prompt is passed but classifier-free guidance is not enabled since true_cfg_scale <= 1). " +
                "The negative prompt is not used and not recorded in the images' parameters."));
        var clipTokenizer = pipe.Require<CLIPTokenizer>("tokenizer", stage);
        var clip = pipe.Require<CLIPTextModel>("text_encoder", stage);
        var t5Tokenizer = pipe.Require<T5Tokenizer>("tokenizer_2", stage);
        var t5 = pipe.Require<T5EncoderModel>("text_encoder_2", stage);
        int maxLength = o.MaxSequenceLength ?? DefaultMaxSequenceLength(pipe);
        if (maxLength < 1 || maxLength > 512)
            throw new DiffusionException("InvalidMaxSequenceLength", DiffusionErrorKind.InvalidArgument,
                $"-MaxSequenceLength {maxLength} must be between 1 and 512 (256 for schnell, 512 for dev).", "MaxSequenceLength");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var device = pipe.TorchDevice;

        // 1. CLIP: pooled output of the 77-token prompt.
        var clipTokens = prompts.Select(p => StableDiffusionFamily.TokenizeWarn(clipTokenizer, p, warn)).ToList();
        using var clipIds = Ids(clipTokens, device);
        var pooled = clip.forward(clipIds).PooledOutput.to(pipe.TorchDType); // [B, C']

        // 2. T5: the sequence embeddings, padded to max_sequence_length.
        var t5Tokens = prompts.Select(p =>
        {
            var t = t5Tokenizer.Encode(p, maxLength, pad: true);
            if (t.Truncated)
                warn(new PipelineWarning($"The following part of your input was truncated because `max_sequence_length` is set to {maxLength} tokens: \"{t.DroppedText}\""));
            return t;
        }).ToList();
        using var t5Ids = Ids(t5Tokens, device);
        var sequence = t5.forward(t5Ids).to(pipe.TorchDType); // [B, S, C]

        var result = new List<DiffusionEmbedding>();
        for (int i = 0; i < prompts.Count; i++)
        {
            result.Add(new DiffusionEmbedding(sequence.narrow(0, i, 1).contiguous(), pooledPromptEmbeds: pooled.narrow(0, i, 1).contiguous())
            {
                Index = indices[i], Prompt = prompts[i], Family = Name, Model = pipe.Path,
                TokenCount = t5Tokens[i].TokenCount, Truncated = t5Tokens[i].Truncated || clipTokens[i].Truncated,
                TruncatedText = t5Tokens[i].DroppedText ?? clipTokens[i].DroppedText,
            });
        }
        return result;
    }

    private static Tensor Ids(List<TokenizedPrompt> tokens, Device device) =>
        torch.tensor(tokens.SelectMany(t => t.Ids).ToArray(), [tokens.Count, tokens[0].Ids.Length], ScalarType.Int64, device: device);

    /// <summary>512 for dev (guidance-distilled: its transformer embeds the guidance), 256 for schnell, as the model cards say.</summary>
    private int DefaultMaxSequenceLength(DiffusionPipeline pipe)
    {
        // No transformer config (a partial snapshot with only the text encoders): 512, diffusers' FluxPipeline default.
        var path = pipe.Folder.OptionalConfig(DenoiserComponent);
        return path is null || FluxTransformer2DConfig.Load(path).GuidanceEmbeds ? 512 : 256;
    }

    /// <summary>The transformer run: packed noise, the rotary tables made once, flow-matching Euler steps along the predicted velocity.</summary>
    public DenoiseSetup PrepareDenoise(DiffusionPipeline pipe, IReadOnlyList<DiffusionEmbedding> batch, DenoiseOptions o, Action<PipelineWarning> warn)
    {
        const string stage = "Denoising (FLUX)";
        var transformer = pipe.Require<FluxTransformer2DModel>(DenoiserComponent, stage);
        var scheduler = pipe.CreateScheduler(o.Scheduler, stage);
        int steps = o.Steps ?? DefaultSteps;
        PipelineChecks.Steps(steps);
        double guidance = o.GuidanceScale ?? DefaultGuidanceScale;
        if (o.GuidanceRescale is double rescale && rescale != 0)
            throw new DiffusionException("GuidanceRescaleNotSupported", DiffusionErrorKind.InvalidArgument,
                $"-GuidanceRescale {rescale} applies to Stable Diffusion's classifier-free guidance; FLUX.1 is guidance-distilled " +
                "(its -GuidanceScale is an input of the transformer, with no unconditional pass to rescale against). Leave -GuidanceRescale out.", "GuidanceRescale");
        int vsf = pipe.VaeScaleFactor;
        int requestedHeight = o.Height ?? o.InitImage?.Height ?? DefaultSampleSize * vsf, requestedWidth = o.Width ?? o.InitImage?.Width ?? DefaultSampleSize * vsf;
        if (requestedHeight < vsf * 2 || requestedWidth < vsf * 2)
            throw new DiffusionException("InvalidImageSize", DiffusionErrorKind.InvalidArgument,
                $"-Height {requestedHeight} / -Width {requestedWidth}: FLUX needs at least {vsf * 2} pixels per side.", "Height");
        var (height, width) = FluxLatents.RoundSize(requestedHeight, requestedWidth, vsf, out bool rounded);
        if (rounded)
            warn(new PipelineWarning($"`height` and `width` have to be divisible by {vsf * 2} but are {requestedHeight} and {requestedWidth}. Dimensions will be resized to {height}x{width}."));
        long seed = PipelineChecks.RunSeed(o, batch);
        var device = pipe.TorchDevice; var dtype = pipe.TorchDType;
        int b = batch.Count;
        long packedTokens = (long)(height / (vsf * 2)) * (width / (vsf * 2));
        PipelineChecks.RunFits(pipe, FluxTransformer2DModel.Registration.ClassName, transformer.Config, height, width, b,
            4L * b * packedTokens * transformer.Config.InChannels * 4, stage, textLength: (int)batch[0].PromptEmbeds.shape[1]);

        // 1. Conditioning and positions: T5 sequence, CLIP pooled, text ids (zeros), image ids (row, column).
        Tensor context, pooled, textIds, imageIds, guidanceTensor;
        using (var _ = torch.NewDisposeScope())
        {
            context = torch.cat(batch.Select(e => e.PromptEmbeds).ToArray(), 0).to(dtype, device).MoveToOuterDisposeScope(); // [B,S,C]
            pooled = torch.cat(batch.Select(e => e.PooledPromptEmbeds ?? throw MissingPooled(e)).ToArray(), 0).to(dtype, device).MoveToOuterDisposeScope();
            textIds = FluxLatents.TextIds((int)context.shape[1]).MoveToOuterDisposeScope(); // [S,3] on the CPU: they only feed the rotary tables
            imageIds = FluxLatents.PrepareLatentImageIds(height / vsf / 2, width / vsf / 2).MoveToOuterDisposeScope(); // [L,3]
            guidanceTensor = torch.full([b], guidance, ScalarType.Float32, device).MoveToOuterDisposeScope();
        }
        var conditioning = new List<IDisposable> { context, pooled, textIds, imageIds, guidanceTensor };
        try
        {
            bool useGuidance = transformer.Config.GuidanceEmbeds;
            // The positions are the same at every step: their rotary tables are made once, not copied to the device per step.
            var rotary = transformer.RotaryEmbedding(imageIds, textIds); // [S+L, head_dim] x 2
            conditioning.Add(rotary.Cos); conditioning.Add(rotary.Sin);

            // 2. Packed noise [B, L, 64] from the CPU generator; sigmas linspace(1, 1/N, N) shifted by mu(L).
            var generator = new torch.Generator((ulong)seed, torch.CPU);
            var (latentHeight, latentWidth) = FluxLatents.LatentSize(height, width, vsf);
            using var given = PipelineChecks.InitialLatents(o, b, [1, (latentHeight / 2) * (latentWidth / 2), transformer.Config.InChannels]);
            int imageSeqLen = (latentHeight / 2) * (latentWidth / 2);
            var cfg = scheduler.Config;
            var mu = FlowMatchEulerDiscreteScheduler.CalculateShift(imageSeqLen, cfg.BaseImageSeqLen, cfg.MaxImageSeqLen, cfg.BaseShift, cfg.MaxShift);
            scheduler.SetTimesteps(steps, mu);
            int firstStep = 0;
            double? strength = null;
            Tensor latents;
            if (o.InitImage is { } init)
            {
                // img2img: the init image's latents [B,16,h,w] scaled to the first step's sigma (scale_noise), then packed.
                (var noised, firstStep, var chosen) = ImageToImage.Begin(init, pipe, o, scheduler, steps, height, width, given is not null, b, generator, dtype);
                strength = chosen;
                using var unpacked = noised;
                using var packed = FluxLatents.PackLatents(unpacked); // [B, L, 64]
                latents = packed.to(device);
            }
            else
                latents = given is not null
                    ? given.to(dtype, device)
                    : FluxLatents.PrepareLatents(b, transformer.Config.InChannels / 4, height, width, vsf, generator, dtype).to(device);

            var run = new DenoiseRunInfo(Name, pipe.Path, seed, steps, scheduler.Timesteps.Length - firstStep, guidance, scheduler.Name, height, width)
            {
                Strength = strength,
                Sampler = SamplerNames.Of(scheduler), ModelHash = ModelIdentity.Hash(pipe.Path, DenoiserComponent), Loras = pipe.Loras.Describe(),
            };

            // 3. One step: the transformer predicts the velocity, the flow-matching scheduler steps along it.
            Tensor Step(int i, Tensor current)
            {
                var t = torch.full([b], scheduler.Timesteps[i] / 1000f, dtype, device); // the model scales by 1000 again
                var velocity = transformer.forward(current, context, pooled, t, imageIds, textIds, useGuidance ? guidanceTensor.to(dtype) : null, rotary);
                return scheduler.Step(velocity, i, current, generator);
            }
            return new DenoiseSetup(latents, scheduler, run, Step, firstStep, [.. conditioning]);
        }
        catch
        {
            foreach (var c in conditioning) c.Dispose();
            throw;
        }
    }

    private static DiffusionException MissingPooled(DiffusionEmbedding e) =>
        new("PooledEmbeddingMissing", DiffusionErrorKind.InvalidArgument,
            $"Embedding #{e.Index} has no pooled prompt embeddings (CLIP), which FLUX needs. Encode it with a FLUX pipeline's text encoders.", "Embedding");

    /// <summary>What the VAE can decode: packed [1, (H/16)(W/16), 4·latent_channels] for the latent's Height and Width.</summary>
    public void CheckLatent(DiffusionPipeline pipe, DiffusionLatent latent)
    {
        var vae = pipe.Require<AutoencoderKL>("vae", "Decoding latents (FLUX)");
        var shape = latent.Latents.shape;
        int patch = pipe.VaeScaleFactor * 2;
        long tokens = (long)(latent.Height / patch) * (latent.Width / patch);
        if (shape.Length != 3 || shape[0] != 1 || shape[2] != 4L * vae.Config.LatentChannels || shape[1] != tokens)
            throw new DiffusionException("LatentShapeInvalid", DiffusionErrorKind.InvalidArgument,
                $"Latent #{latent.Index} has shape [{string.Join(",", shape)}]; for a {latent.Width}x{latent.Height} image this VAE ('{pipe.Path}') decodes " +
                $"packed latents [1,{tokens},{4 * vae.Config.LatentChannels}]. Give latents from Invoke-Denoise or Import-DiffusionTensor of this model, with their Height and Width.", "Latent");
    }

    /// <summary>Unpacks [B,L,64] latents, unscales and shifts them, decodes to images [B,3,H,W] in [0,1].</summary>
    public Tensor Decode(DiffusionPipeline pipe, Tensor packed, int height, int width)
    {
        var vae = pipe.Require<AutoencoderKL>("vae", "Decoding latents (FLUX)");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var latents = FluxLatents.UnpackLatents(packed, height, width, pipe.VaeScaleFactor); // [B,16,h,w]
        latents = latents.to(pipe.TorchDType, pipe.TorchDevice) / vae.Config.ScalingFactor + (vae.Config.ShiftFactor ?? 0.0);
        var image = vae.Decode(latents);
        return (image / 2 + 0.5).clamp(0, 1).to(ScalarType.Float32, torch.CPU).MoveToOuterDisposeScope();
    }
}
