using Diffusion.Engine.Imaging;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>A denoise run: enumerate <see cref="Steps"/> (one item per finished step), then read <see cref="Results"/>.</summary>
public sealed class DenoiseRun
{
    private readonly List<DiffusionLatent> _results = new();
    public IEnumerable<DenoiseStep> Steps { get; }
    public int TotalSteps { get; }
    public IReadOnlyList<DiffusionLatent> Results => _results;

    internal DenoiseRun(Func<List<DiffusionLatent>, IEnumerable<DenoiseStep>> loop, int totalSteps)
    {
        TotalSteps = totalSteps;
        Steps = NativeFailure.Guard("Denoising", loop(_results));
    }
}

/// <summary>The three stages of generation, the same calls for every model family.</summary>
public static class Generation
{
    public static IReadOnlyList<DiffusionEmbedding> Encode(DiffusionPipeline pipe, IReadOnlyList<string> prompts,
        IReadOnlyList<string?>? negativePrompts, EncodeOptions options, Action<PipelineWarning> warn, int firstIndex = 0,
        IReadOnlyList<int>? indices = null)
    {
        if (prompts.Count == 0) return [];
        var negatives = ExpandNegatives(prompts.Count, negativePrompts);
        // Each embedding's Index: its prompt's place in the caller's input (gaps where an input item was refused).
        var idx = indices ?? Enumerable.Range(firstIndex, prompts.Count).ToList();
        if (idx.Count != prompts.Count) throw new ArgumentException($"{idx.Count} indices for {prompts.Count} prompts.", nameof(indices));
        using var lora = pipe.Loras.WithCallScale(options.LoraScale ?? 1.0, options.ActiveLoras);
        if (options.StripLoraTags)
        {
            var written = prompts;
            prompts = prompts.Select(p => Lora.LoraTags.Parse(p).Text).ToList();
            var embeddings = Encode(pipe, prompts, negatives, options, warn, idx);
            for (int i = 0; i < embeddings.Count; i++) embeddings[i].Prompt = written[i]; // as written, tags and all
            return embeddings;
        }
        return Encode(pipe, prompts, negatives, options, warn, idx);
    }

    private static IReadOnlyList<DiffusionEmbedding> Encode(DiffusionPipeline pipe, IReadOnlyList<string> prompts, IReadOnlyList<string?> negatives,
        EncodeOptions options, Action<PipelineWarning> warn, IReadOnlyList<int> idx)
    {
        if (pipe.FamilyKind == ModelFamily.Flux && negatives.Any(n => !string.IsNullOrEmpty(n)))
            warn(new PipelineWarning("FLUX.1 ignores -NegativePrompt: it is guidance-distilled, with no unconditional pass for a negative prompt " +
                "(diffusers warns the same: negative_prompt is passed but classifier-free guidance is not enabled since true_cfg_scale <= 1). " +
                "The negative prompt is not used and not recorded in the images' parameters."));
        return NativeFailure.Guard("Encoding prompts", () => pipe.FamilyKind switch
        {
            ModelFamily.Flux => FluxStages.Encode(pipe, prompts, options, warn, idx),
            ModelFamily.StableDiffusionXL => StableDiffusionXLStages.Encode(pipe, prompts, negatives, options, idx, warn),
            _ => StableDiffusionStages.Encode(pipe, prompts, negatives, idx, warn),
        });
    }

    /// <summary>One negative prompt per prompt: none, one for all, or exactly as many as prompts.</summary>
    public static IReadOnlyList<string?> ExpandNegatives(int count, IReadOnlyList<string?>? negatives)
    {
        if (negatives is null || negatives.Count == 0) return Enumerable.Repeat<string?>(null, count).ToList();
        if (negatives.Count == 1) return Enumerable.Repeat(negatives[0], count).ToList();
        if (negatives.Count == count) return negatives;
        throw new DiffusionException("NegativePromptCountMismatch", DiffusionErrorKind.InvalidArgument,
            $"-NegativePrompt has {negatives.Count} entries for {count} prompts. Give one negative prompt for all, or one per prompt.", "NegativePrompt");
    }

    public static DenoiseRun Denoise(DiffusionPipeline pipe, IReadOnlyList<DiffusionEmbedding> batch, DenoiseOptions options, Action<PipelineWarning> warn)
    {
        foreach (var e in batch)
        {
            if (e.FamilyKind != pipe.FamilyKind)
                throw new DiffusionException("EmbeddingFamilyMismatch", DiffusionErrorKind.InvalidArgument,
                    $"Embedding #{e.Index} was made by a {e.FamilyKind} pipeline; this pipeline ('{pipe.Path}') is {pipe.FamilyKind}. Encode the prompt with this model's text encoders.", "Embedding");
        }
        int steps = options.Steps ?? (pipe.FamilyKind == ModelFamily.Flux ? FluxStages.DefaultSteps : StableDiffusionStages.DefaultSteps);
        return pipe.FamilyKind switch
        {
            ModelFamily.Flux => new DenoiseRun(r => WithLoraScale(pipe, options, FluxStages.Denoise(pipe, batch, options, r, warn)), steps),
            _ => new DenoiseRun(r => WithLoraScale(pipe, options, StableDiffusionStages.Denoise(pipe, batch, options, r, warn)), steps),
        };
    }

    /// <summary>The run's LoRA scale holds while its steps are enumerated (the loop runs lazily, step by step).</summary>
    private static IEnumerable<DenoiseStep> WithLoraScale(DiffusionPipeline pipe, DenoiseOptions options, IEnumerable<DenoiseStep> steps)
    {
        using var lora = pipe.Loras.WithCallScale(options.LoraScale ?? 1.0, options.ActiveLoras);
        foreach (var step in steps) yield return step;
    }

    /// <summary>Decodes latents to images, batching latents of the same size.</summary>
    public static IReadOnlyList<DiffusionImage> Decode(DiffusionPipeline pipe, IReadOnlyList<DiffusionLatent> latents)
    {
        var images = new List<DiffusionImage>();
        foreach (var group in latents.GroupBy(l => (l.FamilyKind, l.Height, l.Width)))
        {
            var items = group.ToList();
            foreach (var l in items)
                if (l.FamilyKind != pipe.FamilyKind)
                    throw new DiffusionException("LatentFamilyMismatch", DiffusionErrorKind.InvalidArgument,
                        $"Latent #{l.Index} was made by a {l.FamilyKind} pipeline; this VAE belongs to a {pipe.FamilyKind} pipeline ('{pipe.Path}'). Decode it with its own model's VAE.", "Latent");
            foreach (var l in items)
            {
                if (pipe.FamilyKind == ModelFamily.Flux) FluxStages.CheckLatent(pipe, l);
                else StableDiffusionStages.CheckLatent(pipe, l);
            }
            var vae = pipe.Require<Models.AutoencoderKL>("vae", "Decoding latents");
            PipelineChecks.RunFits(pipe, "AutoencoderKL", vae.Config, items[0].Height, items[0].Width, items.Count,
                items.Sum(l => l.Latents.numel() * 4L) + 3L * items.Count * items[0].Height * items[0].Width * 4 * 2, "Decoding latents");
            using var scope = torch.NewDisposeScope();
            var batch = torch.cat(items.Select(l => l.Latents.to(pipe.TorchDevice)).ToArray(), 0);
            var pixels = NativeFailure.Guard("Decoding latents", () => pipe.FamilyKind switch
            {
                ModelFamily.Flux => FluxStages.Decode(pipe, batch, items[0].Height, items[0].Width),
                ModelFamily.StableDiffusionXL => StableDiffusionXLStages.Decode(pipe, batch),
                _ => StableDiffusionStages.Decode(pipe, batch),
            }); // [B,3,H,W] float32 CPU in [0,1]
            // NaN survives the clamp to [0,1].
            OutputChecks.RequireFinite(pixels, items.Select(l => l.Index).ToList(), "Decoding latents", "pixels",
                "a VAE run in float16 overflows (decode with -DType float32, as diffusers' force_upcast does), VAE weights " +
                "with NaN or Inf, or latents that are not finite");
            for (int i = 0; i < items.Count; i++)
            {
                var l = items[i];
                images.Add(new DiffusionImage(pixels[i].contiguous(), new GenerationParameters
                {
                    Prompt = l.Prompt, NegativePrompt = l.NegativePrompt, Steps = l.Steps, Scheduler = l.Scheduler,
                    GuidanceScale = l.GuidanceScale, GuidanceRescale = l.GuidanceRescale, Seed = l.Seed, Width = l.Width, Height = l.Height,
                    Model = ModelIdentity.Name(l.Model), ModelHash = l.ModelHash, Sampler = l.Sampler, DistilledGuidance = l.FamilyKind == ModelFamily.Flux,
                    BatchSize = l.BatchSize, BatchPosition = l.BatchPosition, Strength = l.Strength, Loras = l.Loras,
                }, l.Index));
            }
        }
        return images;
    }
}
