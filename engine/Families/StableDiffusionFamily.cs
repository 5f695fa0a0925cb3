using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Schedulers;
using Diffusion.Engine.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Families;

/// <summary>
/// Stable Diffusion 1.x, as diffusers' StableDiffusionPipeline: 1. encode the prompts (CLIP), 2. draw the initial noise
/// from a CPU generator, 3. denoise with the UNet and classifier-free guidance, 4. decode with the VAE.
/// </summary>
[PipelineFamily("StableDiffusionPipeline")]
internal class StableDiffusionFamily : IPipelineFamily
{
    public virtual string Name => "StableDiffusion";
    public virtual string Description => "StableDiffusionPipeline (SD 1.x/2.x)";
    public virtual IReadOnlyList<string> TextComponents { get; } = ["tokenizer", "text_encoder"];
    public string DenoiserComponent => "unet";
    public int DefaultSteps => 50;
    public virtual double DefaultGuidanceScale => 7.5;
    public bool DistilledGuidance => false;

    /// <summary>The UNet's sample_size (latent side) times the VAE's scale, as diffusers' default_sample_size; 64 without a UNet config.</summary>
    public int DefaultImageSize(DiffusersFolder folder, int vaeScaleFactor)
    {
        var path = folder.OptionalConfig(DenoiserComponent);
        return (path is null ? 64 : SampleSize(UNet2DConditionConfig.Load(path))) * vaeScaleFactor;
    }

    private static int SampleSize(UNet2DConditionConfig config) => config.SampleSize?.Single ?? config.SampleSize?.List?[0] ?? 64;

    public int ImageSizeMultiple(int vaeScaleFactor) => vaeScaleFactor;

    /// <summary>StableDiffusionImg2ImgPipeline.get_timesteps: <c>init_timestep = min(int(steps * strength), steps)</c>, truncated.</summary>
    public int StartStep(int steps, double strength) => Math.Max(steps - Math.Min((int)(steps * strength), steps), 0);

    public virtual ScalarType VaeEncodeDType(DiffusionPipeline pipe, AutoencoderKL vae) => pipe.TorchDType;

    public virtual IReadOnlyList<DiffusionEmbedding> Encode(DiffusionPipeline pipe, IReadOnlyList<string> prompts,
        IReadOnlyList<string?> negativePrompts, EncodeOptions options, IReadOnlyList<int> indices, Action<PipelineWarning> warn)
    {
        const string stage = "Encoding prompts";
        var tokenizer = pipe.Require<CLIPTokenizer>("tokenizer", stage);
        var encoder = pipe.Require<CLIPTextModel>("text_encoder", stage);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();

        // 1. Tokenize: pad to 77 with truncation, warn with the dropped text as diffusers does.
        var tokens = prompts.Select((p, i) => TokenizeWarn(tokenizer, p, warn)).ToList();
        var negTokens = negativePrompts.Select(n => tokenizer.Encode(n ?? "", 77, pad: true)).ToList();

        // 2. Encode positives and negatives (negatives are "" when not given, as diffusers' unconditional input).
        var positive = EncodeIds(encoder, tokens.Select(t => t.Ids).ToList(), pipe); // [B,77,C]
        var negative = EncodeIds(encoder, negTokens.Select(t => t.Ids).ToList(), pipe); // [B,77,C]

        var result = new List<DiffusionEmbedding>();
        for (int i = 0; i < prompts.Count; i++)
        {
            result.Add(new DiffusionEmbedding(positive.narrow(0, i, 1).contiguous(), negative.narrow(0, i, 1).contiguous())
            {
                Index = indices[i], Prompt = prompts[i], NegativePrompt = negativePrompts[i], Family = Name,
                Model = pipe.Path, TokenCount = tokens[i].TokenCount, Truncated = tokens[i].Truncated, TruncatedText = tokens[i].DroppedText,
            });
        }
        return result;
    }

    internal static TokenizedPrompt TokenizeWarn(CLIPTokenizer tokenizer, string prompt, Action<PipelineWarning> warn)
    {
        var t = tokenizer.Encode(prompt, 77, pad: true);
        if (t.Truncated)
            warn(new PipelineWarning($"The following part of your input was truncated because CLIP can only handle sequences up to 77 tokens: \"{t.DroppedText}\""));
        return t;
    }

    private static Tensor EncodeIds(CLIPTextModel encoder, List<long[]> ids, DiffusionPipeline pipe)
    {
        var rows = ids.Count; var len = ids[0].Length;
        using var input = torch.tensor(ids.SelectMany(x => x).ToArray(), [rows, len], ScalarType.Int64, device: pipe.TorchDevice);
        return encoder.forward(input).LastHiddenState;
    }

    /// <summary>The UNet run: classifier-free guidance on [uncond, text] halves, the initial noise from a CPU generator.</summary>
    public DenoiseSetup PrepareDenoise(DiffusionPipeline pipe, IReadOnlyList<DiffusionEmbedding> batch, DenoiseOptions o, Action<PipelineWarning> warn)
    {
        const string stage = "Denoising";
        var unet = pipe.Require<UNet2DConditionModel>(DenoiserComponent, stage);
        var scheduler = pipe.CreateScheduler(o.Scheduler, stage);
        int steps = o.Steps ?? DefaultSteps;
        double guidance = o.GuidanceScale ?? DefaultGuidanceScale;
        double rescale = PipelineChecks.GuidanceRescale(o.GuidanceRescale ?? 0);
        int vsf = pipe.VaeScaleFactor;
        int defaultSize = SampleSize(unet.Config) * vsf;
        int height = o.Height ?? o.InitImage?.Height ?? defaultSize, width = o.Width ?? o.InitImage?.Width ?? defaultSize;
        PipelineChecks.Size(height, width, vsf);
        PipelineChecks.Steps(steps);
        long seed = PipelineChecks.RunSeed(o, batch);
        // Latents: the current ones, the model input (doubled for guidance) and the scheduler's working copies.
        long latentBytes = 6L * batch.Count * unet.Config.InChannels * (height / vsf) * (width / vsf) * 4;
        PipelineChecks.RunFits(pipe, UNet2DConditionModel.Registration.ClassName, unet.Config, height, width, batch.Count, latentBytes, stage);
        bool cfg = guidance > 1.0;
        if (rescale > 0 && !cfg)
            warn(new PipelineWarning($"-GuidanceRescale {rescale} has no effect without classifier-free guidance (-GuidanceScale {guidance} is not above 1)."));
        var device = pipe.TorchDevice; var dtype = pipe.TorchDType;

        // 1. Text conditioning: [neg..., pos...] as diffusers concatenates for classifier-free guidance.
        Tensor context;
        using (var _ = torch.NewDisposeScope())
        {
            var pos = torch.cat(batch.Select(e => e.PromptEmbeds).ToArray(), 0);
            context = cfg ? torch.cat([torch.cat(batch.Select(e => PipelineChecks.Negative(e)).ToArray(), 0), pos], 0) : pos;
            context = context.to(dtype, device).MoveToOuterDisposeScope();
        }
        Tensor? textEmbeds = null, timeIds = null;
        try
        {
            // SDXL's UNet (addition_embed_type "text_time") also takes the pooled text embeddings and the size/crop ids, in the same [neg..., pos...] order.
            (textEmbeds, timeIds) = AddedConditioning(pipe, unet, batch, o, height, width, cfg);

            // 2. Timesteps and initial noise from a CPU generator seeded with `seed` (same numbers as torch.Generator).
            PipelineChecks.StepsWithinTraining(scheduler, steps);
            scheduler.SetTimesteps(steps);
            PipelineChecks.TimestepsInRange(scheduler, steps);
            var generator = new torch.Generator((ulong)seed, torch.CPU);
            long[] shape = [batch.Count, unet.Config.InChannels, height / vsf, width / vsf];
            // Noise is drawn in the embeddings' dtype, as diffusers does (libtorch's CPU randn gives other numbers in float16/bfloat16).
            using var given = PipelineChecks.InitialLatents(o, batch.Count, [1, .. shape[1..]]);
            int firstStep = 0;
            double? strength = null;
            Tensor latents;
            if (o.InitImage is { } init)
            {
                // img2img: the init image's latents noised to the level of the first step the strength leaves (SDXL's
                // get_timesteps and prepare_latents are SD's; its size ids above default to the init image's size).
                (var noised, firstStep, var chosen) = ImageToImage.Begin(init, pipe, o, scheduler, steps, height, width, given is not null, batch.Count, generator, dtype);
                using (noised) latents = noised.to(device);
                strength = chosen;
            }
            else
            {
                using var initial = given?.to(dtype) ?? torch.randn(shape, dtype, torch.CPU, generator: generator);
                latents = (initial * scheduler.InitNoiseSigma).to(device);
            }

            var run = new DenoiseRunInfo(Name, pipe.Path, seed, steps, scheduler.Timesteps.Length - firstStep, guidance, scheduler.Name, height, width)
            {
                GuidanceRescale = cfg ? rescale : 0, Strength = strength, Sampler = SamplerNames.Of(scheduler), ModelHash = ModelIdentity.Hash(pipe.Path, DenoiserComponent), Loras = pipe.Loras.Describe(),
            };

            // 3. One step: classifier-free guidance on [uncond, text] halves.
            Tensor Step(int i, Tensor current)
            {
                var modelInput = cfg ? torch.cat([current, current], 0) : current; // [2B or B, 4, h, w]
                modelInput = scheduler.ScaleModelInput(modelInput, i);
                var t = torch.full([], scheduler.Timesteps[i], ScalarType.Float32, device); // filled on the device: no host-to-device copy per step
                var noise = unet.forward(modelInput, t, context, textEmbeds, timeIds);
                if (cfg)
                {
                    var chunks = noise.chunk(2, 0); // uncond, text
                    noise = chunks[0] + guidance * (chunks[1] - chunks[0]);
                    if (rescale > 0) noise = RescaleNoiseCfg(noise, chunks[1], rescale);
                }
                return scheduler.Step(noise, i, current, generator);
            }
            return new DenoiseSetup(latents, scheduler, run, Step, firstStep, context, textEmbeds, timeIds);
        }
        catch
        {
            context.Dispose(); textEmbeds?.Dispose(); timeIds?.Dispose();
            throw;
        }
    }

    /// <summary>The UNet's added conditioning (SDXL's text_embeds and time_ids); none for SD 1.x/2.x.</summary>
    protected virtual (Tensor? TextEmbeds, Tensor? TimeIds) AddedConditioning(DiffusionPipeline pipe, UNet2DConditionModel unet,
        IReadOnlyList<DiffusionEmbedding> batch, DenoiseOptions o, int height, int width, bool cfg) => (null, null);

    /// <summary>
    /// diffusers' rescale_noise_cfg: the guided prediction scaled to the text prediction's standard deviation per image
    /// (unbiased, over all but the batch dimension), mixed with the unscaled one by <paramref name="rescale"/>.
    /// </summary>
    internal static Tensor RescaleNoiseCfg(Tensor guided, Tensor text, double rescale)
    {
        long[] perImage = [.. Enumerable.Range(1, (int)guided.dim() - 1).Select(d => (long)d)]; // every dimension but the batch
        var stdText = text.std(perImage, unbiased: true, keepdim: true); // [B,1,1,1]
        var stdGuided = guided.std(perImage, unbiased: true, keepdim: true); // [B,1,1,1]
        var rescaled = guided * (stdText / stdGuided);
        return rescale * rescaled + (1 - rescale) * guided;
    }

    /// <summary>What the VAE can decode: [1, latent_channels, h, w].</summary>
    public void CheckLatent(DiffusionPipeline pipe, DiffusionLatent latent)
    {
        var vae = pipe.Require<AutoencoderKL>("vae", "Decoding latents");
        var shape = latent.Latents.shape;
        if (shape.Length != 4 || shape[0] != 1 || shape[1] != vae.Config.LatentChannels)
            throw new DiffusionException("LatentShapeInvalid", DiffusionErrorKind.InvalidArgument,
                $"Latent #{latent.Index} has shape [{string.Join(",", shape)}]; this VAE ('{pipe.Path}') decodes [1,{vae.Config.LatentChannels},height/{pipe.VaeScaleFactor},width/{pipe.VaeScaleFactor}]. " +
                "Give latents from Invoke-Denoise or Import-DiffusionTensor of this model.", "Latent");
    }

    /// <summary>VAE decode of SD latents [B,4,h,w] to images [B,3,H,W] in [0,1].</summary>
    public virtual Tensor Decode(DiffusionPipeline pipe, Tensor latents, int height, int width) => DecodeIn(pipe, latents, vaeDType: null);

    /// <param name="vaeDType">The dtype the VAE computes in (SDXL's force_upcast: float32 under a float16 pipeline); null: the pipeline's.</param>
    internal static Tensor DecodeIn(DiffusionPipeline pipe, Tensor latents, ScalarType? vaeDType)
    {
        var vae = pipe.Require<AutoencoderKL>("vae", "Decoding latents");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var z = latents.to(vaeDType ?? pipe.TorchDType, pipe.TorchDevice) / vae.Config.ScalingFactor;
        var image = vae.Decode(z);
        return (image / 2 + 0.5).clamp(0, 1).to(ScalarType.Float32, torch.CPU).MoveToOuterDisposeScope(); // [B,3,H,W]
    }
}
