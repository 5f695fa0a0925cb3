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
        EncodeOptions options, Action<PipelineWarning> warn, IReadOnlyList<int> idx) =>
        NativeFailure.Guard("Encoding prompts", () => pipe.PipelineFamily.Encode(pipe, prompts, negatives, options, idx, warn));

    /// <summary>One negative prompt per prompt: none, one for all, or exactly as many as prompts.</summary>
    public static IReadOnlyList<string?> ExpandNegatives(int count, IReadOnlyList<string?>? negatives) =>
        PerPrompt(count, negatives, "NegativePromptCountMismatch", "-NegativePrompt", "negative prompt", "NegativePrompt");

    /// <summary>
    /// One value per prompt from a list given once for all or once per prompt (null for each when none is given); another
    /// count is refused as <paramref name="errorId"/>, naming <paramref name="parameter"/>.
    /// </summary>
    /// <param name="what">What one entry is, in the message ("Give one negative prompt for all"), or null.</param>
    internal static IReadOnlyList<string?> PerPrompt(int count, IReadOnlyList<string?>? values, string errorId, string parameter, string? what, string target)
    {
        if (values is null || values.Count == 0) return Enumerable.Repeat<string?>(null, count).ToList();
        if (values.Count == 1) return Enumerable.Repeat(values[0], count).ToList();
        if (values.Count == count) return values;
        throw new DiffusionException(errorId, DiffusionErrorKind.InvalidArgument,
            $"{parameter} has {values.Count} entries for {count} prompts. Give one {(what is null ? "" : what + " ")}for all, or one per prompt.", target);
    }

    public static DenoiseRun Denoise(DiffusionPipeline pipe, IReadOnlyList<DiffusionEmbedding> batch, DenoiseOptions options, Action<PipelineWarning> warn)
    {
        foreach (var e in batch)
        {
            if (e.Family.Length > 0 && e.Family != pipe.Family)
                throw new DiffusionException("EmbeddingFamilyMismatch", DiffusionErrorKind.InvalidArgument,
                    $"Embedding #{e.Index} was made by a {e.Family} pipeline; this pipeline ('{pipe.Path}') is {pipe.Family}. Encode the prompt with this model's text encoders.", "Embedding");
        }
        var family = pipe.PipelineFamily;
        return new DenoiseRun(r => WithLoraScale(pipe, options, Run(family, pipe, batch, options, r, warn)), options.Steps ?? family.DefaultSteps);
    }

    /// <summary>The family's setup, then the shared loop over its step; the setup's conditioning lives until the loop ends.</summary>
    private static IEnumerable<DenoiseStep> Run(IPipelineFamily family, DiffusionPipeline pipe, IReadOnlyList<DiffusionEmbedding> batch,
        DenoiseOptions options, List<DiffusionLatent> results, Action<PipelineWarning> warn)
    {
        using var setup = family.PrepareDenoise(pipe, batch, options, warn);
        foreach (var done in DenoiseLoop.Run(setup.Latents, setup.Scheduler, setup.Run, batch, options.CaptureSteps, results, setup.Step, setup.FirstStep))
            yield return done;
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
        var family = pipe.PipelineFamily;
        foreach (var group in latents.GroupBy(l => (l.Family, l.Height, l.Width)))
        {
            var items = group.ToList();
            foreach (var l in items)
                if (l.Family.Length > 0 && l.Family != pipe.Family)
                    throw new DiffusionException("LatentFamilyMismatch", DiffusionErrorKind.InvalidArgument,
                        $"Latent #{l.Index} was made by a {l.Family} pipeline; this VAE belongs to a {pipe.Family} pipeline ('{pipe.Path}'). Decode it with its own model's VAE.", "Latent");
            foreach (var l in items) family.CheckLatent(pipe, l);
            var vae = pipe.Require<Models.AutoencoderKL>("vae", "Decoding latents");
            PipelineChecks.RunFits(pipe, Models.AutoencoderKL.Registration.ClassName, vae.Config, items[0].Height, items[0].Width, items.Count,
                items.Sum(l => l.Latents.numel() * 4L) + 3L * items.Count * items[0].Height * items[0].Width * 4 * 2, "Decoding latents");
            using var scope = torch.NewDisposeScope();
            var batch = torch.cat(items.Select(l => l.Latents.to(pipe.TorchDevice)).ToArray(), 0);
            var pixels = NativeFailure.Guard("Decoding latents", () => family.Decode(pipe, batch, items[0].Height, items[0].Width)); // [B,3,H,W] float32 CPU in [0,1]
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
                    Model = ModelIdentity.Name(l.Model), ModelHash = l.ModelHash, Sampler = l.Sampler, DistilledGuidance = family.DistilledGuidance,
                    BatchSize = l.BatchSize, BatchPosition = l.BatchPosition, Strength = l.Strength, Loras = l.Loras,
                }, l.Index));
            }
        }
        return images;
    }
}
