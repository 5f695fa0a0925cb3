using Diffusion.Engine.Imaging;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// One prompt of a whole generation and the values of its own (an Import-Csv row's columns, say); a null value is the
/// request's. <see cref="Index"/> is the prompt's index in the whole job: the images' Index, {index} in file names, and
/// with <see cref="GenerationRequest.SeedPerPrompt"/> the offset of its seed.
/// </summary>
public sealed record GenerationPrompt(string Prompt, int Index)
{
    /// <summary>Its own negative prompt, instead of its entry of <see cref="GenerationRequest.NegativePrompts"/>.</summary>
    public string? NegativePrompt { get; init; }
    public long? Seed { get; init; }
    public int? Steps { get; init; }
    public double? GuidanceScale { get; init; }
    public int? Width { get; init; }
    public int? Height { get; init; }
    /// <summary>Its own output path (a full path or template, see <see cref="Imaging.OutputPathTemplate"/>).</summary>
    public string? OutputPath { get; init; }
}

/// <summary>
/// A whole generation (what <c>Invoke-Diffusion</c> asks for): prompts encoded, denoised in batches or one seed per
/// prompt, decoded one latent at a time and, with an output path, saved. Run it with <see cref="GenerationRunner.Run(DiffusionPipeline, GenerationRequest, Action{GenerationResult}, IProgress{GenerationProgress}?, CancellationToken, Action{PipelineWarning}?)"/>.
/// </summary>
public sealed record GenerationRequest
{
    /// <summary>The prompts, in order; their indices must be distinct.</summary>
    public IReadOnlyList<GenerationPrompt> Prompts { get; init; } = [];

    /// <summary>None, one for all, or one per prompt (see <see cref="Generation.ExpandNegatives"/>); a prompt's own comes first.</summary>
    public IReadOnlyList<string?>? NegativePrompts { get; init; }
    /// <summary>SDXL: the prompts for the second text encoder (diffusers' prompt_2): none, one for all or one per prompt.</summary>
    public IReadOnlyList<string?>? Prompt2 { get; init; }
    /// <summary>SDXL: the negative prompts for the second text encoder (negative_prompt_2): none, one for all or one per prompt.</summary>
    public IReadOnlyList<string?>? NegativePrompt2 { get; init; }

    /// <summary>
    /// The generator's seed. Batches: one generator seeded with it per run (random when null). With
    /// <see cref="SeedPerPrompt"/>: prompt i gets Seed + its index (a random base when null, the same for every prompt).
    /// </summary>
    public long? Seed { get; init; }
    /// <summary>Each prompt encoded, denoised and decoded on its own, with its own generator (diffusers: one call per prompt with seed + i).</summary>
    public bool SeedPerPrompt { get; init; }
    /// <summary>Images denoised together from one generator; default: all the prompts of a run. Not with <see cref="SeedPerPrompt"/>.</summary>
    public int? BatchSize { get; init; }
    /// <summary>
    /// With <see cref="BatchSize"/> and one prompt: replay the image at this place of a batch of BatchSize that shared one
    /// generator (the prompt fills every place; only this one is decoded).
    /// </summary>
    public int? BatchPosition { get; init; }

    public int? Steps { get; init; }
    public double? GuidanceScale { get; init; }
    /// <summary>diffusers' guidance_rescale (SD).</summary>
    public double? GuidanceRescale { get; init; }
    public int? Width { get; init; }
    public int? Height { get; init; }
    /// <summary>A scheduler for this generation instead of the pipeline's (class name, alias or config file).</summary>
    public string? Scheduler { get; init; }
    /// <summary>FLUX: T5 tokens.</summary>
    public int? MaxSequenceLength { get; init; }
    /// <summary>SDXL micro-conditioning: original_size (height, width), crops_coords_top_left (top, left), target_size (height, width).</summary>
    public (int Height, int Width)? OriginalSize { get; init; }
    public (int Top, int Left)? CropCoordinates { get; init; }
    public (int Height, int Width)? TargetSize { get; init; }

    /// <summary>img2img: the encoded init image every prompt starts from; the caller keeps and frees it.</summary>
    public EncodedImage? InitImage { get; init; }
    /// <summary>img2img: diffusers' strength, 0..1.</summary>
    public double? Strength { get; init; }

    /// <summary>The run's LoRA scale, multiplying every LoRA's own.</summary>
    public double? LoraScale { get; init; }
    /// <summary>A1111's &lt;lora:name:scale&gt; tags choose each prompt's LoRAs (the others off); prompts with other tags do not share a batch.</summary>
    public bool ParseLoraTags { get; init; }

    /// <summary>Save each image here (a full path, folder or template: see <see cref="Imaging.OutputPathTemplate"/>); null: images only.</summary>
    public string? OutputPath { get; init; }
    /// <summary>Replace a file that exists; without, such a save is an error for that image and nothing is overwritten.</summary>
    public bool Overwrite { get; init; }
    /// <summary>JPEG and WebP quality (1-100).</summary>
    public int Quality { get; init; } = ImageFileFormats.DefaultQuality;
    /// <summary>The process rank the {rank} placeholder names (0 in a single process).</summary>
    public int Rank { get; init; }
    /// <summary>Told around each save (a parallel run's journal); null: nobody.</summary>
    public IGenerationSaveObserver? SaveObserver { get; init; }
}
