using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.Imaging;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>Encodes prompts with the pipeline's text encoders into embedding objects (one per prompt).</summary>
[Cmdlet(VerbsData.ConvertTo, "DiffusionEmbedding")]
[OutputType(typeof(DiffusionEmbedding))]
public sealed class ConvertToDiffusionEmbeddingCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    /// <summary>The prompts (or pipe them: see <see cref="InputObject"/>).</summary>
    [Parameter(Position = 0)]
    [AllowEmptyString] [AllowNull] [AllowEmptyCollection]
    public string?[]? Prompt { get; set; }

    /// <summary>Piped input: strings, or rows read by property name (Prompt, NegativePrompt, Index; Split-Prompt's shares bring their Index).</summary>
    [Parameter(ValueFromPipeline = true)]
    [AllowNull]
    public PSObject? InputObject { get; set; }

    /// <summary>One negative prompt for all prompts, or one per prompt (SD).</summary>
    [Parameter]
    [AllowEmptyString]
    public string[]? NegativePrompt { get; set; }

    /// <summary>FLUX: T5 tokens (default 512 dev, 256 schnell).</summary>
    [Parameter]
    [ValidateRange(1, 512)]
    public int? MaxSequenceLength { get; set; }

    /// <summary>SDXL: the prompts for the second text encoder (diffusers' prompt_2): one for all or one per prompt; default the prompts.</summary>
    [Parameter]
    [AllowEmptyString]
    public string[]? Prompt2 { get; set; }

    /// <summary>SDXL: the negative prompts for the second text encoder (negative_prompt_2); default the negative prompts.</summary>
    [Parameter]
    [AllowEmptyString]
    public string[]? NegativePrompt2 { get; set; }

    /// <summary>The run's LoRA scale in the text encoders (diffusers' lora_scale), multiplying every added LoRA's own -Scale.</summary>
    [Parameter]
    [ValidateRange(-100.0, 100.0)]
    public double? LoraScale { get; set; }

    private readonly PromptInput _input = new();

    protected override void ProcessRecord() => _input.AddFromCommand(this, nameof(Prompt), Prompt, InputObject);

    /// <summary>A row's Index (a Split-Prompt share's) and NegativePrompt apply to its embedding; its other values are for Invoke-Denoise and Invoke-Diffusion.</summary>
    protected override void EndProcessing()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var negatives = Run(() => Generation.ExpandNegatives(_input.Prompts.Count, _input.Negatives(NegativePrompt)));
        var rows = _input.Rows;
        var embeddings = Run(() => Generation.Encode(Pipeline, _input.Prompts, negatives.Select((n, k) => rows[k].NegativePrompt ?? n).ToList(),
            new EncodeOptions { MaxSequenceLength = MaxSequenceLength, LoraScale = LoraScale, Prompt2 = Prompt2, NegativePrompt2 = NegativePrompt2 }, Warn, indices: _input.Positions.Select((p, k) => rows[k].Index ?? p).ToList()));
        WriteVerbose($"Encoded {embeddings.Count} prompt(s) on {Pipeline.Device} ({Pipeline.DType}) in {VerboseReport.Seconds(clock.Elapsed.TotalSeconds)}.");
        VerboseReport.Memory(this, "after encoding");
        WriteObject(embeddings, enumerateCollection: true);
    }
}

/// <summary>Runs the denoising loop on a batch of embeddings and outputs one latent object per image.</summary>
[Cmdlet(VerbsLifecycle.Invoke, "Denoise")]
[OutputType(typeof(DiffusionLatent))]
public sealed class InvokeDenoiseCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    public DiffusionEmbedding[] Embedding { get; set; } = [];

    [Parameter] [ValidateRange(1, 1000)] public int? Steps { get; set; }
    [Parameter] [ValidateRange(0.0, 100.0)] public double? GuidanceScale { get; set; }
    /// <summary>diffusers' guidance_rescale (SD): 0 off, 0.7 the paper's value for zero-terminal-SNR models such as SD 2.x.</summary>
    [Parameter] [ValidateRange(0.0, 1.0)] public double? GuidanceRescale { get; set; }
    /// <summary>The run's LoRA scale, multiplying every added LoRA's own -Scale (diffusers' cross_attention_kwargs scale).</summary>
    [Parameter] [ValidateRange(-100.0, 100.0)] public double? LoraScale { get; set; }
    [Parameter] public long? Seed { get; set; }
    [Parameter] public int? Height { get; set; }
    [Parameter] public int? Width { get; set; }
    [Parameter] [ValidateNotNullOrEmpty] [ArgumentCompleter(typeof(SchedulerCompleter))] public string? Scheduler { get; set; }

    /// <summary>Images denoised together; the same seed gives diffusers' images for the same batch. Default: all.</summary>
    [Parameter] [ValidateRange(1, int.MaxValue)] public int? BatchSize { get; set; }

    /// <summary>Also output the latents after every step (Step &lt; Steps), e.g. to preview progress; the final latents come last.</summary>
    [Parameter] public SwitchParameter IncludeSteps { get; set; }

    /// <summary>diffusers' latents=: start from these latents (one per embedding) instead of seeded noise.</summary>
    [Parameter] public DiffusionLatent[]? InitialLatent { get; set; }

    /// <summary>Each embedding gets its own generator seeded with Seed + its Index, and is denoised on its own.</summary>
    [Parameter] public SwitchParameter SeedPerPrompt { get; set; }

    /// <summary>SDXL micro-conditioning (diffusers' original_size): height, width. Default: the image size.</summary>
    [Parameter] [ValidateCount(2, 2)] public int[]? OriginalSize { get; set; }
    /// <summary>SDXL micro-conditioning (crops_coords_top_left): top, left. Default: 0, 0.</summary>
    [Parameter] [ValidateCount(2, 2)] public int[]? CropCoordinates { get; set; }
    /// <summary>SDXL micro-conditioning (target_size): height, width. Default: the image size.</summary>
    [Parameter] [ValidateCount(2, 2)] public int[]? TargetSize { get; set; }

    /// <summary>img2img: the init image from ConvertTo-DiffusionLatent -Image; the run starts from it, noised to -Strength's level.</summary>
    [Parameter] public EncodedImage? InitImage { get; set; }

    /// <summary>img2img: how much of the init image is replaced, 0..1 (default 0.8); the run takes about Steps x Strength steps.</summary>
    [Parameter] [ValidateRange(0.0, 1.0)] public double? Strength { get; set; }

    private readonly List<DiffusionEmbedding> _embeddings = new();

    internal static (int, int)? Pair(int[]? values) => values is { Length: 2 } ? (values[0], values[1]) : null;

    protected override void ProcessRecord() => _embeddings.AddRange(Embedding);

    protected override void EndProcessing()
    {
        if (SeedPerPrompt && BatchSize is not null)
            ThrowTerminatingError(ArgumentError("SeedPerPromptBatch", "-BatchSize cannot be combined with -SeedPerPrompt: with a seed per prompt each embedding is denoised on its own.", "BatchSize"));
        var options = new DenoiseOptions
        {
            Steps = Steps, GuidanceScale = GuidanceScale, GuidanceRescale = GuidanceRescale, LoraScale = LoraScale, Seed = SeedPerPrompt ? Seed ?? RandomSeed.Next() : Seed, SeedPerPrompt = SeedPerPrompt,
            Height = Height, Width = Width, Scheduler = Scheduler, CaptureSteps = IncludeSteps, InitialLatents = InitialLatent,
            InitImage = InitImage, Strength = Strength,
            OriginalSize = Pair(OriginalSize), CropCoordinates = Pair(CropCoordinates), TargetSize = Pair(TargetSize),
        };
        if (Strength is not null && InitImage is null)
            WriteWarning("-Strength applies to img2img only; give the init image with -InitImage (from ConvertTo-DiffusionLatent -Image). It is ignored.");
        DenoiseBatches(_embeddings, options, SeedPerPrompt ? 1 : BatchSize, WriteObject);
    }

    /// <summary>
    /// Runs each batch with a progress bar and hands each latent to <paramref name="emit"/> on the pipeline thread;
    /// Ctrl+C stops after the current step and frees the batch. The bar counts the steps asked for as diffusers'
    /// progress bar does (PNDM's extra warm-up evaluation is not a step). -Verbose says the scheduler, the settings,
    /// the seed and the time of each batch (Invoke-Diffusion shows its batches the same way: <see cref="GenerationProgressView"/>).
    /// </summary>
    private void DenoiseBatches(IReadOnlyList<DiffusionEmbedding> embeddings, DenoiseOptions options, int? batchSize, Action<DiffusionLatent> emit)
    {
        int size = batchSize ?? Math.Max(1, embeddings.Count);
        for (int start = 0; start < embeddings.Count; start += size)
        {
            var batch = embeddings.Skip(start).Take(size).ToList();
            var run = Run(() => Generation.Denoise(Pipeline, batch, options, Warn));
            var progress = DenoiseProgressText.Bar(batch.Select(e => e.Prompt).ToList(), -1);
            try
            {
                using var steps = run.Steps.GetEnumerator();
                var timesteps = new List<float>();
                while (Run(steps.MoveNext))
                {
                    var s = steps.Current;
                    timesteps.Add(s.Timestep);
                    if (s.Index == 0) WriteVerbose(DenoiseProgressText.Run(Pipeline, batch.Select(e => e.Index), options.Scheduler, s));
                    DenoiseProgressText.Show(progress, s);
                    WriteProgressSnapshot(progress);
                    if (s.Latents is not null && s.Index + 1 < s.Total)
                        foreach (var l in s.Latents) emit(l);
                    StopIfAsked();
                }
                WriteDebug(DenoiseProgressText.Timesteps(timesteps));
            }
            catch
            {
                foreach (var l in run.Results) l.Dispose();
                Diffusion.Engine.Devices.MemoryCleaner.Flush();
                throw;
            }
            finally
            {
                progress.RecordType = ProgressRecordType.Completed;
                WriteProgressSnapshot(progress);
            }
            if (run.Results.Count > 0) WriteVerbose(DenoiseProgressText.Result(run.Results));
            VerboseReport.Memory(this, "after denoising");
            foreach (var latent in run.Results) emit(latent);
        }
    }
}

/// <summary>Decodes latents with the pipeline's VAE into image objects (one per image).</summary>
[Cmdlet(VerbsData.ConvertFrom, "DiffusionLatent")]
[OutputType(typeof(DiffusionImage))]
public sealed class ConvertFromDiffusionLatentCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    public DiffusionLatent[] Latent { get; set; } = [];

    private readonly List<DiffusionLatent> _latents = new();

    protected override void ProcessRecord() => _latents.AddRange(Latent);

    protected override void EndProcessing()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var images = Run(() => Generation.Decode(Pipeline, _latents));
        WriteVerbose($"Decoded {images.Count} latent(s) on {Pipeline.Device} ({Pipeline.DType}) in {VerboseReport.Seconds(clock.Elapsed.TotalSeconds)}.");
        VerboseReport.Memory(this, "after decoding");
        WriteObject(images, enumerateCollection: true);
    }
}

/// <summary>
/// The img2img pipelines' first stage: an init image (a file or an image object) through the VAE's encoder, as the
/// latent distribution the denoise stage samples with its seed (Invoke-Denoise -InitImage).
/// </summary>
[Cmdlet(VerbsData.ConvertTo, "DiffusionLatent")]
[OutputType(typeof(EncodedImage))]
public sealed class ConvertToDiffusionLatentCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    /// <summary>Image files (paths, Get-Item output) or image objects (Invoke-Diffusion / ConvertFrom-DiffusionLatent output).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [Alias("FullName", "InitImage")]
    public object[] Image { get; set; } = [];

    /// <summary>Resize the image to this height first (Lanczos); default: its own, rounded down to what the VAE takes.</summary>
    [Parameter] [ValidateRange(16, 16384)] public int? Height { get; set; }

    /// <summary>Resize the image to this width first (Lanczos); default: its own, rounded down to what the VAE takes.</summary>
    [Parameter] [ValidateRange(16, 16384)] public int? Width { get; set; }

    protected override void ProcessRecord()
    {
        EnsureBackendOrThrow();
        foreach (var item in Image)
        {
            try { WriteObject(InitImageArgument.Encode(this, Pipeline, item, Height, Width)); }
            catch (DiffusionException e) { WriteEngineError(e, item); }
        }
    }
}
