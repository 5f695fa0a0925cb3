using System.Diagnostics;
using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Cmdlets.Parallel;
using Diffusion.Engine;
using Diffusion.Engine.Imaging;
using Diffusion.Engine.IO;
using Diffusion.Engine.Parallel;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>One generated image as Invoke-Diffusion reports it.</summary>
public sealed class DiffusionResult
{
    public int Index { get; init; }
    public string Prompt { get; init; } = "";
    public long Seed { get; init; }
    public string? Path { get; init; }
    /// <summary>The rank of the process that made it (0 in a single process). Not "Rank": $results.Rank would be the array's own Rank.</summary>
    public int ProcessRank { get; init; }
    public string Device { get; init; } = "";
    public double Seconds { get; init; }
    public DiffusionImage? Image { get; init; }
}

/// <summary>
/// All stages in one call: encode, denoise, decode, and (with -OutputPath) save. With -NumProcesses (or several
/// -Device) the prompts are split between worker processes (see <see cref="ParallelGeneration"/>).
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "Diffusion", DefaultParameterSetName = PipelineSet, SupportsShouldProcess = true)]
[OutputType(typeof(DiffusionImage), typeof(DiffusionResult))]
public sealed partial class InvokeDiffusionCommand : DiffusionCmdlet
{
    private const string PipelineSet = "Pipeline";
    private const string PathSet = "Path";

    [Parameter(Mandatory = true, ParameterSetName = PipelineSet)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    /// <summary>A model folder: loaded for this call and freed afterwards.</summary>
    [Parameter(Mandatory = true, ParameterSetName = PathSet)]
    [Alias("ModelPath")]
    [ArgumentCompleter(typeof(ModelPathCompleter))]
    public string Path { get; set; } = "";

    /// <summary>With a Hugging Face repo id as -Path: the branch, tag or commit to load (default main).</summary>
    [Parameter(ParameterSetName = PathSet)] [ValidateNotNullOrEmpty] public string? Revision { get; set; }

    /// <summary>One device; several (cuda:0,cuda:1) run one worker process on each.</summary>
    [Parameter(ParameterSetName = PathSet)] [ArgumentCompleter(typeof(DeviceCompleter))] public string[]? Device { get; set; }
    [Parameter(ParameterSetName = PathSet)] [ValidateSet("float32", "float16", "bfloat16")] public string DType { get; set; } = "float32";
    /// <summary>diffusers' variant (fp16, ...) of the model folder's weights.</summary>
    [Parameter(ParameterSetName = PathSet)] [ValidateNotNullOrEmpty] public string? Variant { get; set; }
    /// <summary>For a single-file -Path: the diffusers folder with its configs, tokenizers and scheduler.</summary>
    [Parameter(ParameterSetName = PathSet)] [ValidateNotNullOrEmpty] public string? Config { get; set; }

    /// <summary>The prompts (or pipe them: see <see cref="InputObject"/>).</summary>
    [Parameter(Position = 0)]
    [AllowEmptyString] [AllowNull] [AllowEmptyCollection]
    public string?[]? Prompt { get; set; }

    /// <summary>
    /// Piped input: strings (Get-Content), or rows read by property name (Import-Csv, hashtables, objects, Split-Prompt's
    /// shares): Prompt, and per row NegativePrompt, Seed, Steps, GuidanceScale, Width, Height, OutputPath, Index.
    /// </summary>
    [Parameter(ValueFromPipeline = true)]
    [AllowNull]
    public PSObject? InputObject { get; set; }

    [Parameter] [AllowEmptyString] public string[]? NegativePrompt { get; set; }
    [Parameter] [ValidateRange(1, 1000)] public int? Steps { get; set; }
    [Parameter] [ValidateRange(0.0, 100.0)] public double? GuidanceScale { get; set; }
    /// <summary>diffusers' guidance_rescale (SD): 0 off, 0.7 the paper's value for zero-terminal-SNR models such as SD 2.x.</summary>
    [Parameter] [ValidateRange(0.0, 1.0)] public double? GuidanceRescale { get; set; }
    /// <summary>The run's LoRA scale, multiplying every added LoRA's own -Scale (diffusers' cross_attention_kwargs scale).</summary>
    [Parameter] [ValidateRange(-100.0, 100.0)] public double? LoraScale { get; set; }
    /// <summary>SDXL: the prompts for the second text encoder (diffusers' prompt_2): one for all or one per prompt; default the prompts.</summary>
    [Parameter] [AllowEmptyString] public string[]? Prompt2 { get; set; }
    /// <summary>SDXL: the negative prompts for the second text encoder (negative_prompt_2); default the negative prompts.</summary>
    [Parameter] [AllowEmptyString] public string[]? NegativePrompt2 { get; set; }
    /// <summary>SDXL micro-conditioning (original_size): height, width. Default: the image size.</summary>
    [Parameter] [ValidateCount(2, 2)] public int[]? OriginalSize { get; set; }
    /// <summary>SDXL micro-conditioning (crops_coords_top_left): top, left. Default: 0, 0.</summary>
    [Parameter] [ValidateCount(2, 2)] public int[]? CropCoordinates { get; set; }
    /// <summary>SDXL micro-conditioning (target_size): height, width. Default: the image size.</summary>
    [Parameter] [ValidateCount(2, 2)] public int[]? TargetSize { get; set; }
    /// <summary>img2img: the image to start from (a path, Get-Item output, an image object, or ConvertTo-DiffusionLatent output).</summary>
    [Parameter] public object? InitImage { get; set; }
    /// <summary>img2img: how much of the init image is replaced, 0..1 (default 0.8); the run takes about Steps x Strength steps.</summary>
    [Parameter] [ValidateRange(0.0, 1.0)] public double? Strength { get; set; }
    [Parameter] public long? Seed { get; set; }
    [Parameter] public int? Height { get; set; }
    [Parameter] public int? Width { get; set; }
    [Parameter] [ValidateNotNullOrEmpty] [ArgumentCompleter(typeof(SchedulerCompleter))] public string? Scheduler { get; set; }
    [Parameter] [ValidateRange(1, 512)] public int? MaxSequenceLength { get; set; }
    [Parameter] [ValidateRange(1, int.MaxValue)] public int? BatchSize { get; set; }

    /// <summary>Save each image here (file, folder or template with {index}, {seed}, {prompt}, {rank}) and output result objects.</summary>
    [Parameter] [ValidateNotNullOrEmpty] public string? OutputPath { get; set; }
    [Parameter] public SwitchParameter Force { get; set; }

    /// <summary>With -OutputPath: output the saved images (with their Path) instead of result objects.</summary>
    [Parameter] public SwitchParameter PassThru { get; set; }

    /// <summary>JPEG and WebP quality (1-100) for an -OutputPath ending in .jpg, .jpeg or .webp.</summary>
    [Parameter] [ValidateRange(1, 100)] public int Quality { get; set; } = ImageFileFormats.DefaultQuality;

    /// <summary>With -BatchSize and one prompt: replay the image at this place of a batch (see Get-DiffusionImageInfo).</summary>
    [Parameter] [ValidateRange(0, int.MaxValue)] public int? BatchPosition { get; set; }

    /// <summary>Prompt i gets its own generator seeded with Seed + i, and is generated on its own.</summary>
    [Parameter] public SwitchParameter SeedPerPrompt { get; set; }

    /// <summary>With -SeedPerPrompt: each prompt's index in the whole job (e.g. Split-Prompt's Index), for seeds and file names.</summary>
    [Parameter] [ValidateNotNullOrEmpty] public int[]? PromptIndex { get; set; }

    /// <summary>Worker processes to split the prompts between (data parallel); implies -SeedPerPrompt.</summary>
    [Parameter(ParameterSetName = PathSet)] [ValidateRange(1, 1024)] public int? NumProcesses { get; set; }

    /// <summary>Parallel runs: how many times the prompts of a failed worker are re-run on the surviving workers.</summary>
    [Parameter(ParameterSetName = PathSet)] [ValidateRange(0, 100)] public int Retry { get; set; }

    private readonly PromptInput _input = new();
    private IReadOnlyList<string> _prompts => _input.Prompts;

    /// <summary>-NegativePrompt for the prompts kept (one per kept prompt where one per received item was given).</summary>
    internal string[]? NegativePromptsKept => _input.Negatives(NegativePrompt);
    private ParallelGeneration? _parallel;

    internal bool IsParallel => NumProcesses.HasValue || (Device?.Length ?? 0) > 1;

    protected override void ProcessRecord() => _input.AddFromCommand(this, nameof(Prompt), Prompt, InputObject);

    protected override void EndProcessing()
    {
        CheckModes();
        if (_prompts.Count == 0) return;
        if (IsParallel)
        {
            _parallel = new ParallelGeneration(this, _prompts, PromptIndices(), _input.Rows);
            _parallel.Run();
            return;
        }
        var request = Request();
        Run(() => GenerationRunner.Check(request)); // output paths that collide, counts that do not match: before anything is loaded
        bool owned = ParameterSetName == PathSet;
        // -WhatIf / -Confirm: one decision for the whole call, before anything is loaded or generated (as the parallel
        // path does); the saves then need no second confirmation.
        var model = owned ? GetUnresolvedProviderPathFromPSPath(Path) : Pipeline.Path;
        var where = OutputPath is null ? "output the images" : $"save them as '{ResolveTemplatePath(OutputPath)}'";
        if (!ShouldProcess(model, $"Generate {_prompts.Count} image(s) with '{model}' and {where}")) return;
        var loras = owned ? ResolvedLoras() : [];
        var clock = Stopwatch.StartNew();
        var pipeline = owned
            ? Run(() =>
                {
                    var local = ModelResolution.Resolve(this, Path, Revision, Variant, null, StopToken);
                    return DiffusionPipeline.Load(local, new PipelineLoadOptions
                    {
                        Device = Device?.SingleOrDefault(), DType = DType, Scheduler = Scheduler, Variant = Variant,
                        Config = ModelConfigArgument.Resolve(this, local, Config, StopToken),
                    }, cancel: StopToken);
                })
            : Pipeline;
        if (owned) VerboseReport.Loaded(this, pipeline, clock.Elapsed.TotalSeconds);
        EncodedImage? init = null;
        try
        {
            if (owned) AddLoras(pipeline, loras);
            if (InitImage is not null) init = Run(() => InitImageArgument.Encode(this, pipeline, InitImage, Height, Width));
            else if (Strength is not null)
                WriteWarning("-Strength applies to img2img only; give the init image with -InitImage. It is ignored.");
            // A folder's own pipeline was loaded with -Scheduler; a given one runs with it for this call.
            Generate(pipeline, request with { InitImage = init, Scheduler = owned ? null : Scheduler });
        }
        finally
        {
            if (init is not null && !ReferenceEquals(init, (InitImage as PSObject)?.BaseObject ?? InitImage)) init.Dispose(); // encoded here, not the caller's
            if (owned) pipeline.Dispose();
        }
    }

    /// <summary>
    /// The call as the engine's request: each kept prompt with its row's own values (an Import-Csv column, a hashtable
    /// key), the command line's for the rest. With -SeedPerPrompt the base seed is drawn here, once, so that the
    /// output-path check and the run see the same seeds.
    /// </summary>
    private GenerationRequest Request()
    {
        var indices = PromptIndices();
        return new GenerationRequest
        {
            Prompts = _prompts.Select((prompt, k) =>
            {
                var row = _input.Rows[k];
                return new GenerationPrompt(prompt, indices[k])
                {
                    NegativePrompt = row.NegativePrompt, Seed = row.Seed, Steps = row.Steps, GuidanceScale = row.GuidanceScale,
                    Width = row.Width, Height = row.Height, OutputPath = row.OutputPath is { } own ? ResolveTemplatePath(own) : null,
                };
            }).ToList(),
            NegativePrompts = _input.Negatives(NegativePrompt), Prompt2 = Prompt2, NegativePrompt2 = NegativePrompt2,
            Seed = SeedPerPrompt ? Seed ?? RandomSeed.Next() : Seed, SeedPerPrompt = SeedPerPrompt, BatchSize = BatchSize, BatchPosition = BatchPosition,
            Steps = Steps, GuidanceScale = GuidanceScale, GuidanceRescale = GuidanceRescale, Width = Width, Height = Height, Scheduler = Scheduler,
            MaxSequenceLength = MaxSequenceLength, Strength = Strength, LoraScale = LoraScale, ParseLoraTags = ParseLoraTags,
            OriginalSize = InvokeDenoiseCommand.Pair(OriginalSize), CropCoordinates = InvokeDenoiseCommand.Pair(CropCoordinates), TargetSize = InvokeDenoiseCommand.Pair(TargetSize),
            OutputPath = OutputPath is null ? null : ResolveTemplatePath(OutputPath), Overwrite = Force, Quality = Quality, Rank = ProcessRank(),
            SaveObserver = new WorkerSaveJournal(this, RunJournal.Worker),
        };
    }

    private void CheckModes()
    {
        CheckReplayModes();
        if (IsParallel)
        {
            if (PromptIndex is not null)
                ThrowTerminatingError(ArgumentError("ParallelPromptIndex", "-PromptIndex cannot be combined with -NumProcesses or several -Device: the parallel run numbers the prompts itself (0, 1, 2, ...).", "PromptIndex"));
            if (BatchSize is not null)
                ThrowTerminatingError(ArgumentError("ParallelBatchSize", "-BatchSize cannot be combined with -NumProcesses or several -Device: each worker generates one prompt at a time, seeded Seed + index, so the images do not depend on how the prompts were split.", "BatchSize"));
            return;
        }
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Retry)))
            ThrowTerminatingError(ArgumentError("RetryWithoutParallel", "-Retry applies to parallel runs: add -NumProcesses <n> (or several -Device).", "Retry"));
        if (PromptIndex is not null && !SeedPerPrompt)
            ThrowTerminatingError(ArgumentError("PromptIndexWithoutSeedPerPrompt", "-PromptIndex goes with -SeedPerPrompt: add -SeedPerPrompt, so that each prompt's seed is Seed + its index.", "PromptIndex"));
        if (SeedPerPrompt && BatchSize is not null)
            ThrowTerminatingError(ArgumentError("SeedPerPromptBatch", "-BatchSize cannot be combined with -SeedPerPrompt: with a seed per prompt each prompt is generated on its own.", "BatchSize"));
    }

    /// <summary>
    /// The engine's whole generation (<see cref="GenerationRunner"/>) on the pipeline thread: its progress as progress
    /// records and -Verbose lines, each result written as it comes (an image, a saved file's result, or an error for
    /// its prompts that lets the others go on), Ctrl+C as its cancellation.
    /// </summary>
    private void Generate(DiffusionPipeline pipeline, GenerationRequest request)
    {
        if (request.SeedPerPrompt) WorkerTestHooks.Arm();
        var view = new GenerationProgressView(this, pipeline, request, inWorker: RunJournal.Worker is not null);
        try { Run(() => GenerationRunner.Run(pipeline, request, Emit, view, StopToken, Warn)); }
        finally { view.Complete(); }
    }

    /// <summary>
    /// Each kept prompt's index: its row's own Index (a Split-Prompt share's), else -PromptIndex (one per prompt
    /// received, $null ones included), else its place in the input; checked to be distinct.
    /// </summary>
    private int[] PromptIndices()
    {
        var given = PromptIndex ?? Enumerable.Range(0, _input.Received).ToArray();
        if (given.Length != _input.Received || given.Any(i => i < 0) || given.Distinct().Count() != given.Length)
            ThrowTerminatingError(ArgumentError("PromptIndexInvalid",
                $"-PromptIndex must give one distinct index of 0 or more per prompt: {given.Length} index(es) for {_input.Received} prompt(s).", "PromptIndex"));
        var indices = _input.Positions.Select((p, k) => _input.Rows[k].Index ?? given[p]).ToArray();
        if (indices.GroupBy(i => i).FirstOrDefault(g => g.Count() > 1) is { } twice)
            ThrowTerminatingError(ArgumentError("PromptIndexInvalid",
                $"Two prompts have index {twice.Key} (from their rows' Index): each prompt needs its own index, for its seed and file name.", "Index"));
        return indices;
    }

    /// <summary>
    /// One result of the generation: an error for its prompts (or, for a save that failed, its file) that lets the
    /// others go on; an image; or with -OutputPath the saved image's result (or the image itself with -PassThru).
    /// </summary>
    private void Emit(GenerationResult result)
    {
        if (result.Error is { } error)
        {
            object target = result.Path ?? (result.Indices.Count == 1 ? result.Indices[0] : (object)result.Indices.ToArray());
            WriteEngineError(error, target);
            return;
        }
        if (result.Path is null)
        {
            WriteObject(result.Image);
            return;
        }
        WorkerTestHooks.At(WorkerTestHooks.BeforeResult);
        if (PassThru) WriteObject(result.Image);
        else WriteObject(new DiffusionResult
        {
            Index = result.Index, Prompt = result.Prompt, Seed = result.Seed, Path = result.Path, ProcessRank = ProcessRank(), Device = result.Device,
            Seconds = result.Seconds,
        });
        WorkerTestHooks.At(WorkerTestHooks.AfterResult);
    }

    /// <summary>
    /// Around each save: in a worker of a parallel run, the run's journal records it before the worker goes on (see
    /// <see cref="RunJournal"/>); the parallel tests' kill points sit here too.
    /// </summary>
    private sealed class WorkerSaveJournal(InvokeDiffusionCommand cmdlet, RunJournal? journal) : IGenerationSaveObserver
    {
        private readonly int _rank = ProcessRank();

        public void BeforeSave(GenerationResult image)
        {
            if (journal is not null) cmdlet.Run(() => journal.BeforeSave(image.Index, image.Path!, image.Seed, _rank, image.Device, image.Seconds));
            WorkerTestHooks.At(WorkerTestHooks.BeforeSave);
        }

        public void AfterSave(GenerationResult image)
        {
            WorkerTestHooks.At(WorkerTestHooks.AfterSave);
            if (journal is not null) cmdlet.Run(() => journal.AfterSave(image.Index, image.Path!, image.Seed, _rank, image.Device, image.Seconds));
        }

        public void SaveFailed(GenerationResult image, DiffusionException error)
        {
            if (journal is not null) cmdlet.Run(() => journal.SaveFailed(image.Index, image.Path!, image.Seed, _rank, image.Device, error.ErrorId));
        }
    }

    /// <summary>This process's rank from the launcher's variables; 0 when there are none (or they do not parse).</summary>
    private static int ProcessRank()
    {
        try { return RankEnvironment.FromProcess().ProcessRank; }
        catch (DiffusionException) { return 0; }
    }

    protected override void StopProcessing()
    {
        base.StopProcessing();
        _parallel?.Stop();
    }
}
