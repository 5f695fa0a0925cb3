using System.Diagnostics;
using Diffusion.Engine.Devices;

namespace Diffusion.Engine.Pipelines;

/// <summary>A whole generation in one call: the stages of <see cref="Generation"/> for every prompt of a <see cref="GenerationRequest"/>.</summary>
public static class GenerationRunner
{
    /// <summary>Runs the request and returns its results in prompt order (see <see cref="Run(DiffusionPipeline, GenerationRequest, Action{GenerationResult}, IProgress{GenerationProgress}?, CancellationToken, Action{PipelineWarning}?)"/>).</summary>
    public static IReadOnlyList<GenerationResult> Run(DiffusionPipeline pipe, GenerationRequest request,
        IProgress<GenerationProgress>? progress = null, CancellationToken cancel = default, Action<PipelineWarning>? warn = null)
    {
        var results = new List<GenerationResult>();
        Run(pipe, request, results.Add, progress, cancel, warn);
        return results;
    }

    /// <summary>
    /// Runs the request, handing each result to <paramref name="onResult"/> as soon as it is made, in prompt order, on
    /// this thread. Batches: consecutive prompts with the same values share a denoise run from one generator seeded
    /// with the seed, split into batches of BatchSize; with a seed per prompt each prompt runs alone. Every latent is
    /// decoded on its own and, with an output path, saved (a file that exists is an error for that image unless
    /// Overwrite). A run that fails on its own values gives an error result for its prompts and the next go on
    /// (<see cref="IsPromptError"/>); other errors end the generation. <paramref name="cancel"/> is checked after
    /// every denoising step and before every run and decode: it ends the generation with OperationCanceledException,
    /// with nothing made after it and the batch's memory freed.
    /// </summary>
    public static void Run(DiffusionPipeline pipe, GenerationRequest request, Action<GenerationResult> onResult,
        IProgress<GenerationProgress>? progress = null, CancellationToken cancel = default, Action<PipelineWarning>? warn = null) =>
        new GenerationRun(pipe, request, onResult, progress, cancel, warn ?? (_ => { })).Execute();

    /// <summary>
    /// The request's checks, for callers that want them before any model work: its modes, negative prompt and
    /// prompt_2 counts, distinct indices, output templates that parse and give every image its own file.
    /// </summary>
    public static void Check(GenerationRequest request) => GenerationPlan.Prompts(request, request.Seed);

    /// <summary>An error of a run's own values (an invalid argument or data, a size refused before allocating): its prompts fail, the others go on.</summary>
    public static bool IsPromptError(DiffusionException e) =>
        e.Kind is DiffusionErrorKind.InvalidArgument or DiffusionErrorKind.InvalidData || e.ErrorId == "InsufficientMemory";

}

/// <summary>One <see cref="GenerationRunner.Run(DiffusionPipeline, GenerationRequest, Action{GenerationResult}, IProgress{GenerationProgress}?, CancellationToken, Action{PipelineWarning}?)"/> call.</summary>
internal sealed class GenerationRun(DiffusionPipeline pipe, GenerationRequest request, Action<GenerationResult> onResult,
    IProgress<GenerationProgress>? progress, CancellationToken cancel, Action<PipelineWarning> warn)
{
    /// <summary>True while the caller's code runs (results, progress, the save observer): what it throws is not a prompt's error.</summary>
    private bool _inCaller;

    public void Execute()
    {
        long? seedBase = request.SeedPerPrompt ? request.Seed ?? RandomSeed.Next() : null;
        var prompts = GenerationPlan.Prompts(request, seedBase);
        var runs = Runs(prompts);
        for (int r = 0; r < runs.Count; r++)
        {
            var run = runs[r];
            cancel.ThrowIfCancellationRequested();
            Report(new GenerationProgress(GenerationStage.RunStarted, r, runs.Count, Indices(run), run.Select(p => p.Prompt).ToList()));
            try { Generate(run, r, runs.Count); }
            catch (DiffusionException e) when (!_inCaller && GenerationRunner.IsPromptError(e))
            {
                Caller(() => onResult(new GenerationResult
                {
                    Index = run[0].Index, Indices = Indices(run), Prompt = run[0].Prompt, Seed = run[0].Seed ?? 0, Device = pipe.Device, Error = e,
                }));
            }
        }
    }

    /// <summary>Seed per prompt: one run each. Batches: consecutive prompts that can share one denoise run.</summary>
    private List<List<PlannedPrompt>> Runs(IReadOnlyList<PlannedPrompt> prompts)
    {
        var runs = new List<List<PlannedPrompt>>();
        foreach (var p in prompts)
        {
            if (!request.SeedPerPrompt && runs.Count > 0 && runs[^1][0].SharesRunWith(p)) runs[^1].Add(p);
            else runs.Add([p]);
        }
        return runs;
    }

    private void Generate(List<PlannedPrompt> run, int r, int runs)
    {
        var clock = Stopwatch.StartNew();
        var first = run[0];
        var active = GenerationPlan.ActiveLoras(request, first);
        var options = new DenoiseOptions
        {
            Steps = first.Steps, GuidanceScale = first.GuidanceScale, GuidanceRescale = request.GuidanceRescale, Seed = first.Seed,
            Height = first.Height, Width = first.Width, Scheduler = request.Scheduler,
            LoraScale = request.LoraScale, ActiveLoras = active, InitImage = request.InitImage, Strength = request.Strength,
            OriginalSize = request.OriginalSize, CropCoordinates = request.CropCoordinates, TargetSize = request.TargetSize,
        };
        var embeddings = Encode(run, active, r, runs);
        try
        {
            if (request.BatchPosition is int position)
            {
                // The prompt fills every place of the batch, so the noise and the batched kernels are the original batch's.
                int size = request.BatchSize!.Value;
                Denoise(Enumerable.Repeat(embeddings[0], size).ToList(), options, size, r, runs, latent =>
                {
                    if (latent.BatchPosition == position) Finish(latent, first, latent.Seconds);
                });
            }
            else
            {
                Denoise(embeddings, options, request.SeedPerPrompt ? 1 : request.BatchSize, r, runs,
                    latent => Finish(latent, first, request.SeedPerPrompt ? null : latent.Seconds, clock));
            }
        }
        finally
        {
            foreach (var e in embeddings) e.Dispose();
        }
    }

    private IReadOnlyList<DiffusionEmbedding> Encode(List<PlannedPrompt> run, IReadOnlyDictionary<string, double>? active, int r, int runs)
    {
        var clock = Stopwatch.StartNew();
        var embeddings = Generation.Encode(pipe, run.Select(p => p.Prompt).ToList(), run.Select(p => p.NegativePrompt).ToList(), new EncodeOptions
        {
            MaxSequenceLength = request.MaxSequenceLength, LoraScale = request.LoraScale, ActiveLoras = active, StripLoraTags = request.ParseLoraTags,
            Prompt2 = run.Any(p => p.Prompt2 is not null) ? run.Select(p => p.Prompt2).ToList() : null,
            NegativePrompt2 = run.Any(p => p.NegativePrompt2 is not null) ? run.Select(p => p.NegativePrompt2).ToList() : null,
        }, warn, indices: Indices(run));
        Report(new GenerationProgress(GenerationStage.Encoded, r, runs, Indices(run), run.Select(p => p.Prompt).ToList()) { Elapsed = clock.Elapsed });
        return embeddings;
    }

    /// <summary>
    /// Denoises the embeddings in batches of <paramref name="batchSize"/> (default: all), handing each latent to
    /// <paramref name="onLatent"/> and freeing it after. A batch that fails or is cancelled frees its latents and flushes
    /// the allocator's cache, so that the next run (or the caller) starts from the memory there was.
    /// </summary>
    private void Denoise(IReadOnlyList<DiffusionEmbedding> embeddings, DenoiseOptions options, int? batchSize, int r, int runs, Action<DiffusionLatent> onLatent)
    {
        int size = batchSize ?? Math.Max(1, embeddings.Count);
        for (int start = 0; start < embeddings.Count; start += size)
        {
            var batch = embeddings.Skip(start).Take(size).ToList();
            var indices = batch.Select(e => e.Index).ToList();
            var prompts = batch.Select(e => e.Prompt).ToList();
            var denoise = Generation.Denoise(pipe, batch, options, warn);
            bool finished = false;
            try
            {
                foreach (var step in denoise.Steps)
                {
                    Report(new GenerationProgress(GenerationStage.DenoiseStep, r, runs, indices, prompts) { Step = step, Elapsed = step.Elapsed });
                    cancel.ThrowIfCancellationRequested();
                }
                finished = true;
            }
            catch
            {
                foreach (var l in denoise.Results) l.Dispose();
                MemoryCleaner.Flush();
                throw;
            }
            finally
            {
                Report(new GenerationProgress(GenerationStage.DenoiseEnded, r, runs, indices, prompts) { Latents = finished ? denoise.Results : null });
            }
            try
            {
                foreach (var latent in denoise.Results)
                    using (latent) onLatent(latent);
            }
            finally
            {
                foreach (var l in denoise.Results) l.Dispose(); // those a failure left
            }
        }
    }

    /// <summary>Decodes one latent, saves it with an output path, and hands the result on.</summary>
    /// <param name="seconds">The result's seconds; null: <paramref name="clock"/>'s after decoding (the prompt's whole run).</param>
    private void Finish(DiffusionLatent latent, PlannedPrompt run, double? seconds, Stopwatch? clock = null)
    {
        cancel.ThrowIfCancellationRequested();
        var decoding = Stopwatch.StartNew();
        var image = Generation.Decode(pipe, [latent])[0];
        Report(new GenerationProgress(GenerationStage.Decoded, 0, 0, [latent.Index], [latent.Prompt]) { Elapsed = decoding.Elapsed });
        var result = new GenerationResult
        {
            Index = image.Index, Indices = [image.Index], Prompt = latent.Prompt, Seed = latent.Seed, Image = image, Device = pipe.Device,
            Seconds = seconds ?? clock!.Elapsed.TotalSeconds,
        };
        if (run.Output is { } template)
        {
            result = result with { Path = template.Expand(image.Index, latent.Seed, latent.Prompt, request.Rank) };
            var observer = request.SaveObserver;
            if (observer is not null) Caller(() => observer.BeforeSave(result));
            try { image.Save(result.Path, overwrite: request.Overwrite, request.Quality); }
            catch (DiffusionException e)
            {
                if (observer is not null) Caller(() => observer.SaveFailed(result, e));
                var failed = result with { Error = e };
                Caller(() => onResult(failed));
                return;
            }
            if (observer is not null) Caller(() => observer.AfterSave(result));
        }
        Caller(() => onResult(result));
    }

    private void Report(GenerationProgress p)
    {
        if (progress is not null) Caller(() => progress.Report(p));
    }

    /// <summary>
    /// Runs the caller's code. The flag is read by the prompt-error filter, which runs before any finally unwinds, so an
    /// error the caller throws (an error record, a journal that cannot be written) ends the generation as it is.
    /// </summary>
    private void Caller(Action call)
    {
        _inCaller = true;
        try { call(); }
        finally { _inCaller = false; }
    }

    private static List<int> Indices(IEnumerable<PlannedPrompt> run) => run.Select(p => p.Index).ToList();
}
