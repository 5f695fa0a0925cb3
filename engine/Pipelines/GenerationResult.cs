using Diffusion.Engine.Imaging;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// What a whole generation hands back, in prompt order: an image (saved at <see cref="Path"/> with an output path), or
/// an <see cref="Error"/> for the prompts in <see cref="Indices"/>: a run that failed on its own values (a size that
/// does not fit the model, a LoRA tag that does not parse) fails its prompts and the others go on; a save that failed
/// (the file exists) fails its image.
/// </summary>
public sealed record GenerationResult
{
    /// <summary>The image's index (its prompt's); for an error, the first of <see cref="Indices"/>.</summary>
    public int Index { get; init; }
    /// <summary>The prompts this result is for: the image's, or every prompt of the run that failed.</summary>
    public IReadOnlyList<int> Indices { get; init; } = [];
    public string Prompt { get; init; } = "";
    public long Seed { get; init; }
    public DiffusionImage? Image { get; init; }
    /// <summary>Where the image was saved (or, with a failed save, was to be); null without an output path.</summary>
    public string? Path { get; init; }
    /// <summary>The pipeline's device.</summary>
    public string Device { get; init; } = "";
    /// <summary>Seconds it took: its batch's denoising, or with a seed per prompt its whole encode, denoise and decode.</summary>
    public double Seconds { get; init; }
    public DiffusionException? Error { get; init; }
    public bool Succeeded => Error is null;
}

/// <summary>Told around each save of a generation, on the generating thread; what it throws ends the generation.</summary>
public interface IGenerationSaveObserver
{
    /// <summary>Before the file is written (<see cref="GenerationResult.Path"/> set).</summary>
    void BeforeSave(GenerationResult image);
    /// <summary>After the file is in place, before the result is handed on.</summary>
    void AfterSave(GenerationResult image);
    /// <summary>The save failed with <paramref name="error"/>; an error result for the image follows.</summary>
    void SaveFailed(GenerationResult image, DiffusionException error);
}

public enum GenerationStage
{
    /// <summary>A run starts: prompts that share one denoise run (with a seed per prompt: one prompt).</summary>
    RunStarted,
    /// <summary>The run's prompts are encoded (<see cref="GenerationProgress.Elapsed"/>: how long it took).</summary>
    Encoded,
    /// <summary>A denoising step of a batch finished (<see cref="GenerationProgress.Step"/>).</summary>
    DenoiseStep,
    /// <summary>A batch's denoising ended; <see cref="GenerationProgress.Latents"/> holds its latents when it finished.</summary>
    DenoiseEnded,
    /// <summary>One latent was decoded (<see cref="GenerationProgress.Elapsed"/>: how long it took).</summary>
    Decoded,
}

/// <summary>
/// Where a whole generation is, reported synchronously on the generating thread (a caller may write it out from
/// there). <see cref="Run"/> of <see cref="Runs"/> counts the runs from 0; <see cref="Indices"/> and
/// <see cref="Prompts"/> are the images the report is about (the run's, the batch's, or the decoded one).
/// </summary>
public sealed record GenerationProgress(GenerationStage Stage, int Run, int Runs, IReadOnlyList<int> Indices, IReadOnlyList<string> Prompts)
{
    public DenoiseStep? Step { get; init; }
    /// <summary>DenoiseEnded of a batch that finished: its latents (still owned by the generation: valid during the report only).</summary>
    public IReadOnlyList<DiffusionLatent>? Latents { get; init; }
    public TimeSpan Elapsed { get; init; }
}
