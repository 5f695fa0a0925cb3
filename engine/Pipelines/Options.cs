namespace Diffusion.Engine.Pipelines;

public sealed class PipelineLoadOptions
{
    /// <summary>cpu, cuda, cuda:N; default: the backend's default device.</summary>
    public string? Device { get; set; }
    /// <summary>float32, float16, bfloat16.</summary>
    public string DType { get; set; } = "float32";
    /// <summary>Only these components (e.g. text_encoder, text_encoder_2); all when null. Tokenizers and the scheduler come along with the models that need them.</summary>
    public string[]? Components { get; set; }
    /// <summary>A scheduler to use instead of the folder's (class name or alias).</summary>
    public string? Scheduler { get; set; }
    /// <summary>diffusers' variant: load the <c>*.{Variant}.safetensors</c> files (e.g. fp16) of each component that has them.</summary>
    public string? Variant { get; set; }
    /// <summary>
    /// For a single-file checkpoint: the diffusers folder whose model_index.json, configs, tokenizers and scheduler go with it
    /// (diffusers' <c>from_single_file(config=...)</c>).
    /// </summary>
    public string? Config { get; set; }
    /// <summary>
    /// Where the weights go: a strategy (auto, balanced, balanced_low_0, sequential) or a map (IDictionary): module path ->
    /// device for one component, component -> device (or -> a module map) for several. Null: everything on <see cref="Device"/>.
    /// </summary>
    public object? DeviceMap { get; set; }
    /// <summary>Device -> bytes or size string (accelerate's max_memory): 0, 1, 'cuda:0', 'cpu', 'disk'. Null: each device's free memory.</summary>
    public System.Collections.IDictionary? MaxMemory { get; set; }
    /// <summary>model or sequential: the guide's CPU offload, running on <see cref="Device"/>.</summary>
    public string? Offload { get; set; }
    /// <summary>The image size a device map keeps activation head-room for (default: the model's default size).</summary>
    public int? Height { get; set; }
    public int? Width { get; set; }
    /// <summary>What a device map keeps free besides weights (default: activations at the requested size).</summary>
    public Sharding.HeadroomPolicy HeadroomPolicy { get; set; } = Sharding.HeadroomPolicy.Activations;
}

public sealed class EncodeOptions
{
    /// <summary>FLUX: T5 sequence length (512 dev, 256 schnell by default).</summary>
    public int? MaxSequenceLength { get; set; }
    /// <summary>SDXL: the prompts for the second text encoder (diffusers' prompt_2): none (the prompts), one for all, or one per prompt.</summary>
    public IReadOnlyList<string?>? Prompt2 { get; set; }
    /// <summary>SDXL: the negative prompts for the second text encoder (negative_prompt_2): none (the negative prompts), one for all, or one per prompt.</summary>
    public IReadOnlyList<string?>? NegativePrompt2 { get; set; }
    /// <summary>The run's LoRA scale, multiplying each adapter's (diffusers' <c>lora_scale</c> in encode_prompt); 1 when null.</summary>
    public double? LoraScale { get; set; }
    /// <summary>The LoRAs active in this run, by name, with their own scales for it; the others are off. Null: every LoRA at its own scale.</summary>
    public IReadOnlyDictionary<string, double>? ActiveLoras { get; set; }
    /// <summary>
    /// A1111's <c>&lt;lora:name:scale&gt;</c> tags are taken out of the prompts before they are encoded (see
    /// <see cref="Lora.LoraTags"/>); the embeddings keep the prompts as written, as A1111's parameters record them.
    /// Which LoRAs run is <see cref="ActiveLoras"/>'s to say.
    /// </summary>
    public bool StripLoraTags { get; set; }
}

public sealed class DenoiseOptions
{
    public int? Steps { get; set; }
    public double? GuidanceScale { get; set; }
    /// <summary>
    /// diffusers' <c>guidance_rescale</c> (SD only): rescales the guided noise prediction toward the text prediction's
    /// standard deviation ("Common Diffusion Noise Schedules and Sample Steps are Flawed", 3.4); 0 (default) to 1.
    /// </summary>
    public double? GuidanceRescale { get; set; }
    /// <summary>SDXL micro-conditioning (diffusers' original_size): (height, width); default the image size.</summary>
    public (int Height, int Width)? OriginalSize { get; set; }
    /// <summary>SDXL micro-conditioning (crops_coords_top_left): (top, left); default (0, 0).</summary>
    public (int Top, int Left)? CropCoordinates { get; set; }
    /// <summary>SDXL micro-conditioning (target_size): (height, width); default the image size.</summary>
    public (int Height, int Width)? TargetSize { get; set; }
    /// <summary>img2img: the encoded init image the run starts from (noised to the level <see cref="Strength"/> picks); null for text-to-image.</summary>
    public EncodedImage? InitImage { get; set; }
    /// <summary>img2img: how much of the init image is replaced, 0..1 (diffusers' <c>strength</c>, default 0.8): the run takes about Steps x Strength steps.</summary>
    public double? Strength { get; set; }
    /// <summary>The run's LoRA scale, multiplying each adapter's (diffusers' <c>cross_attention_kwargs={"scale": s}</c>); 1 when null.</summary>
    public double? LoraScale { get; set; }
    /// <summary>The LoRAs active in this run, by name, with their own scales for it; the others are off. Null: every LoRA at its own scale.</summary>
    public IReadOnlyDictionary<string, double>? ActiveLoras { get; set; }
    /// <summary>Seed of the CPU generator that draws the initial noise (and a stochastic scheduler's noise); random when null.</summary>
    public long? Seed { get; set; }
    /// <summary>
    /// Each prompt gets its own generator seeded with Seed + its index (diffusers: one call per prompt with
    /// <c>torch.Generator().manual_seed(seed + i)</c>), so an image does not depend on which prompts ran with it or on
    /// how the prompts were split between processes. Runs take one prompt each.
    /// </summary>
    public bool SeedPerPrompt { get; set; }
    public int? Height { get; set; }
    public int? Width { get; set; }
    /// <summary>Overrides the pipeline's scheduler for this run.</summary>
    public string? Scheduler { get; set; }
    /// <summary>Also hand out every step's latents (for previews and step-by-step checks).</summary>
    public bool CaptureSteps { get; set; }
    /// <summary>
    /// diffusers' <c>latents=</c>: start from these latents (one per embedding, in order) instead of drawing noise.
    /// SD: [1,C,h,w], scaled by the scheduler's init_noise_sigma as diffusers does; FLUX: packed [1,L,64].
    /// </summary>
    public IReadOnlyList<DiffusionLatent>? InitialLatents { get; set; }
}

/// <summary>
/// One finished model evaluation (<see cref="Index"/> of <see cref="Total"/>, the scheduler's timesteps), for progress; with
/// CaptureSteps, the latents of every image after it.
/// </summary>
public sealed record DenoiseStep(int Index, int Total, float Timestep, TimeSpan Elapsed, IReadOnlyList<DiffusionLatent>? Latents = null)
{
    /// <summary>The steps asked for (-Steps): what diffusers' progress bar counts to, whatever the number of timesteps.</summary>
    public int StepsAsked { get; init; }
    /// <summary>Steps done as diffusers' progress bar counts them: PNDM's warm-up evaluation (its repeated timestep) does not count.</summary>
    public int StepsDone { get; init; }
}

/// <summary>A warning the cmdlets pass on (WriteWarning), e.g. a size rounded or a prompt truncated.</summary>
public sealed record PipelineWarning(string Message);
