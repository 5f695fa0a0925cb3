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
    private bool _confirmed;
    private IReadOnlyList<string> _prompts => _input.Prompts;

    /// <summary>-NegativePrompt for the prompts kept (one per kept prompt where one per received item was given).</summary>
    internal string[]? NegativePromptsKept => _input.Negatives(NegativePrompt);
    private ParallelGeneration? _parallel;

    internal bool IsParallel => NumProcesses.HasValue || (Device?.Length ?? 0) > 1;

    protected override void ProcessRecord() => _input.AddFromCommand(this, nameof(Prompt), Prompt, InputObject);

    private EncodedImage? _initImage;
    private IReadOnlyList<GenerationItem> _items = [];

    /// <summary>Each item's entry of a one-for-all or one-per-prompt list (-Prompt2, -NegativePrompt2).</summary>
    private string?[]? PerItem(string[]? values, IReadOnlyList<GenerationItem> items)
    {
        if (values is null) return null;
        if (values.Length != 1 && values.Length != _prompts.Count)
            ThrowTerminatingError(ArgumentError("Prompt2CountMismatch",
                $"-Prompt2 / -NegativePrompt2 has {values.Length} entries for {_prompts.Count} prompts. Give one for all, or one per prompt.", "Prompt2"));
        return items.Select(i => values.Length == 1 ? values[0] : values[IndexOfItem(i)]).ToArray();
    }

    private int IndexOfItem(GenerationItem item)
    {
        for (int k = 0; k < _items.Count; k++) if (ReferenceEquals(_items[k], item)) return k;
        throw new InvalidOperationException("An item that this call did not make.");
    }

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
        var seed = SeedPerPrompt ? Seed ?? RandomSeed.Next() : Seed;
        var items = Items(SeedPerPrompt ? seed : null);
        _items = items;
        RequireDistinctOutputPaths(items);
        bool owned = ParameterSetName == PathSet;
        // -WhatIf / -Confirm: one decision for the whole call, before anything is loaded or generated (as the parallel
        // path does); the saves then need no second confirmation.
        var model = owned ? GetUnresolvedProviderPathFromPSPath(Path) : Pipeline.Path;
        var where = OutputPath is null ? "output the images" : $"save them as '{ResolveTemplatePath(OutputPath)}'";
        if (!ShouldProcess(model, $"Generate {_prompts.Count} image(s) with '{model}' and {where}")) return;
        _confirmed = true;
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
            _initImage = init;
            if (SeedPerPrompt) GenerateEach(pipeline, owned, items);
            else if (BatchPosition is int position) GenerateBatchPosition(pipeline, owned, items, position);
            else GenerateBatches(pipeline, owned, items);
        }
        finally
        {
            if (init is not null && !ReferenceEquals(init, (InitImage as PSObject)?.BaseObject ?? InitImage)) init.Dispose(); // encoded here, not the caller's
            if (owned) pipeline.Dispose();
        }
    }

    /// <summary>
    /// Each kept prompt with the values it is generated with: its row's own (an Import-Csv column, a hashtable key),
    /// else the command line's. <paramref name="perPromptSeed"/> (with -SeedPerPrompt): the seed a prompt without its own gets is this + its index.
    /// </summary>
    private IReadOnlyList<GenerationItem> Items(long? perPromptSeed)
    {
        var indices = PromptIndices();
        var negatives = Run(() => Generation.ExpandNegatives(_prompts.Count, _input.Negatives(NegativePrompt)));
        return _prompts.Select((prompt, k) =>
        {
            var row = _input.Rows[k];
            return new GenerationItem(prompt, indices[k], row.NegativePrompt ?? negatives[k],
                row.Seed ?? (perPromptSeed is long b ? unchecked(b + indices[k]) : Seed),
                row.Steps ?? Steps, row.GuidanceScale ?? GuidanceScale, row.Width ?? Width, row.Height ?? Height, row.OutputPath ?? OutputPath,
                LoraRunKey(prompt));
        }).ToList();
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
    /// diffusers' batch call: the prompts encoded together, denoised in batches from one generator seeded with -Seed.
    /// Consecutive rows with the same values (seed, steps, guidance, size, output path) share a run; a row with values of
    /// its own runs on its own, so its values apply to it alone. A run that fails on its own values (a size that does
    /// not fit the model, say) is an error for its prompts, and the others go on.
    /// </summary>
    private void GenerateBatches(DiffusionPipeline pipeline, bool owned, IReadOnlyList<GenerationItem> items)
    {
        foreach (var group in Runs(items))
        {
            var options = new DenoiseOptions
            {
                Steps = group[0].Steps, GuidanceScale = group[0].GuidanceScale, GuidanceRescale = GuidanceRescale, Seed = group[0].Seed,
                Height = group[0].Height, Width = group[0].Width, Scheduler = owned ? null : Scheduler,
                LoraScale = LoraScale, InitImage = _initImage, Strength = Strength,
                OriginalSize = InvokeDenoiseCommand.Pair(OriginalSize), CropCoordinates = InvokeDenoiseCommand.Pair(CropCoordinates), TargetSize = InvokeDenoiseCommand.Pair(TargetSize),
            };
            ForItems(group, () =>
            {
                options.ActiveLoras = ActiveLoras(group[0]);
                var embeddings = Encode(pipeline, group);
                try
                {
                    InvokeDenoiseCommand.DenoiseBatches(this, pipeline, embeddings, options, BatchSize, latent =>
                    {
                        using (latent) Emit(Decode(pipeline, latent), latent, pipeline.Device, latent.Seconds, group[0].OutputPath);
                    });
                }
                finally
                {
                    foreach (var e in embeddings) e.Dispose();
                }
            });
        }
    }

    /// <summary>Consecutive items that can share one denoise run (the same values but prompt, negative prompt and index).</summary>
    private static List<List<GenerationItem>> Runs(IReadOnlyList<GenerationItem> items)
    {
        var runs = new List<List<GenerationItem>>();
        foreach (var item in items)
        {
            if (runs.Count > 0 && runs[^1][0].SharesRunWith(item)) runs[^1].Add(item);
            else runs.Add([item]);
        }
        return runs;
    }

    /// <summary>-SeedPerPrompt: each prompt encoded, denoised and decoded on its own with its seed (Seed + its index, or its row's).</summary>
    private void GenerateEach(DiffusionPipeline pipeline, bool owned, IReadOnlyList<GenerationItem> items)
    {
        WorkerTestHooks.Arm();
        var progress = new ProgressRecord(1, $"Generating {items.Count} image(s), one seed per prompt", "starting");
        bool inWorker = RunJournal.Worker is not null;
        try
        {
            for (int k = 0; k < items.Count; k++)
            {
                var item = items[k];
                progress.StatusDescription = $"image {k + 1}/{items.Count}";
                progress.PercentComplete = 100 * k / items.Count;
                WriteProgressSnapshot(progress);
                var options = new DenoiseOptions
                {
                    Steps = item.Steps, GuidanceScale = item.GuidanceScale, GuidanceRescale = GuidanceRescale, Seed = item.Seed,
                    Height = item.Height, Width = item.Width, Scheduler = owned ? null : Scheduler,
                    LoraScale = LoraScale, InitImage = _initImage, Strength = Strength,
                    OriginalSize = InvokeDenoiseCommand.Pair(OriginalSize), CropCoordinates = InvokeDenoiseCommand.Pair(CropCoordinates), TargetSize = InvokeDenoiseCommand.Pair(TargetSize),
                };
                int image = k + 1;
                Action<DenoiseStep>? report = inWorker // a parallel run's worker tells the parent each step (see WorkerReports)
                    ? s => WriteInformation(WorkerReports.Step(item.Index, image, items.Count, s.StepsDone, s.StepsAsked, pipeline.Device))
                    : null;
                var clock = Stopwatch.StartNew();
                ForItems([item], () =>
                {
                    options.ActiveLoras = ActiveLoras(item);
                    var embeddings = Encode(pipeline, [item]);
                    try
                    {
                        InvokeDenoiseCommand.DenoiseBatches(this, pipeline, embeddings, options, 1, latent =>
                        {
                            using (latent) Emit(Decode(pipeline, latent), latent, pipeline.Device, clock.Elapsed.TotalSeconds, item.OutputPath);
                        }, parentActivityId: progress.ActivityId, onStep: report);
                    }
                    finally
                    {
                        foreach (var e in embeddings) e.Dispose();
                    }
                });
            }
        }
        finally
        {
            progress.RecordType = ProgressRecordType.Completed;
            WriteProgressSnapshot(progress);
        }
    }

    private IReadOnlyList<DiffusionEmbedding> Encode(DiffusionPipeline pipeline, IReadOnlyList<GenerationItem> items)
    {
        var clock = Stopwatch.StartNew();
        var embeddings = Run(() => Generation.Encode(pipeline, items.Select(i => i.Prompt).ToList(), items.Select(i => i.NegativePrompt).ToList(),
            new EncodeOptions
            {
                MaxSequenceLength = MaxSequenceLength, LoraScale = LoraScale, ActiveLoras = ActiveLoras(items[0]), StripLoraTags = ParseLoraTags, Prompt2 = PerItem(Prompt2, items), NegativePrompt2 = PerItem(NegativePrompt2, items),
            }, Warn, indices: items.Select(i => i.Index).ToList()));
        WriteVerbose($"Encoded {string.Join(", ", items.Select(i => $"#{i.Index}"))} in {VerboseReport.Seconds(clock.Elapsed.TotalSeconds)}.");
        return embeddings;
    }

    private DiffusionImage Decode(DiffusionPipeline pipeline, DiffusionLatent latent)
    {
        var clock = Stopwatch.StartNew();
        var image = Run(() => Generation.Decode(pipeline, [latent]))[0];
        WriteVerbose($"Decoded #{latent.Index} in {VerboseReport.Seconds(clock.Elapsed.TotalSeconds)}.");
        VerboseReport.Memory(this, "after decoding");
        return image;
    }

    /// <summary>Generates some items; an error their own values cause is an error for them alone (see <see cref="DiffusionCmdlet.ForItem"/>).</summary>
    private void ForItems(IReadOnlyList<GenerationItem> items, Action generate) =>
        ForItem(items.Count == 1 ? items[0].Index : items.Select(i => i.Index).ToArray(), generate);

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
    /// Before any model work: refuses an output path that gives two images of this call the same file (e.g. a plain
    /// 'same.png' for two prompts), which would overwrite one with -Force or fail after generating it without. Images
    /// are checked per template (rows may bring their own). Without a seed, {seed} is taken to differ per image.
    /// </summary>
    private void RequireDistinctOutputPaths(IReadOnlyList<GenerationItem> items)
    {
        foreach (var group in items.Where(i => i.OutputPath is not null).GroupBy(i => i.OutputPath!))
        {
            if (group.Count() < 2) continue;
            var images = group.Select(i => new OutputPathTemplate.PlannedImage(i.Index, i.Seed ?? i.Index, i.Prompt)).ToList();
            Run(() => new OutputPathTemplate(ResolveTemplatePath(group.Key)).RequireDistinct(images, ProcessRank()));
        }
    }

    private void Emit(DiffusionImage image, DiffusionLatent latent, string device, double seconds, string? outputPath)
    {
        if (outputPath is null)
        {
            WriteObject(image);
            return;
        }
        int rank = ProcessRank();
        var target = Run(() => new OutputPathTemplate(ResolveTemplatePath(outputPath)).Expand(image.Index, latent.Seed, latent.Prompt, rank));
        if (!_confirmed && !ShouldProcess(target, $"Save image #{image.Index}")) return;
        // In a worker of a parallel run, the run's journal records each save before the worker goes on (see RunJournal).
        var journal = RunJournal.Worker;
        if (journal is not null) Run(() => journal.BeforeSave(image.Index, target, latent.Seed, rank, device, seconds));
        WorkerTestHooks.At(WorkerTestHooks.BeforeSave);
        try { image.Save(target, overwrite: Force, Quality); }
        catch (DiffusionException e)
        {
            if (journal is not null) Run(() => journal.SaveFailed(image.Index, target, latent.Seed, rank, device, e.ErrorId));
            WriteEngineError(e, target);
            return;
        }
        WorkerTestHooks.At(WorkerTestHooks.AfterSave);
        if (journal is not null) Run(() => journal.AfterSave(image.Index, target, latent.Seed, rank, device, seconds));
        WorkerTestHooks.At(WorkerTestHooks.BeforeResult);
        if (PassThru) WriteObject(image);
        else WriteObject(new DiffusionResult
        {
            Index = image.Index, Prompt = latent.Prompt, Seed = latent.Seed, Path = target, ProcessRank = rank, Device = device, Seconds = seconds,
        });
        WorkerTestHooks.At(WorkerTestHooks.AfterResult);
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

/// <summary>One prompt to generate and the values it is generated with (its row's own, else the command line's).</summary>
internal sealed record GenerationItem(string Prompt, int Index, string? NegativePrompt, long? Seed, int? Steps, double? GuidanceScale,
    int? Width, int? Height, string? OutputPath, string? LoraKey = null)
{
    /// <summary>
    /// Whether the two can be denoised in one batch: everything but the prompt, negative prompt and index is the same
    /// (with -ParseLoraTags, the prompts' LoRA tags too: <see cref="LoraKey"/>).
    /// </summary>
    public bool SharesRunWith(GenerationItem other) =>
        Seed == other.Seed && Steps == other.Steps && GuidanceScale == other.GuidanceScale && Width == other.Width && Height == other.Height
        && OutputPath == other.OutputPath && LoraKey == other.LoraKey;
}
