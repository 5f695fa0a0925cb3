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
public sealed class InvokeDiffusionCommand : DiffusionCmdlet
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

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [AllowEmptyString] [AllowNull] [AllowEmptyCollection]
    public string?[] Prompt { get; set; } = [];

    [Parameter] [AllowEmptyString] public string[]? NegativePrompt { get; set; }
    [Parameter] [ValidateRange(1, 1000)] public int? Steps { get; set; }
    [Parameter] [ValidateRange(0.0, 100.0)] public double? GuidanceScale { get; set; }
    /// <summary>diffusers' guidance_rescale (SD): 0 off, 0.7 the paper's value for zero-terminal-SNR models such as SD 2.x.</summary>
    [Parameter] [ValidateRange(0.0, 1.0)] public double? GuidanceRescale { get; set; }
    [Parameter] public long? Seed { get; set; }
    [Parameter] public int? Height { get; set; }
    [Parameter] public int? Width { get; set; }
    [Parameter] [ValidateNotNullOrEmpty] [ArgumentCompleter(typeof(SchedulerCompleter))] public string? Scheduler { get; set; }
    [Parameter] [ValidateRange(1, 512)] public int? MaxSequenceLength { get; set; }
    [Parameter] [ValidateRange(1, int.MaxValue)] public int? BatchSize { get; set; }

    /// <summary>Save each image here (file, folder or template with {index}, {seed}, {prompt}, {rank}) and output result objects.</summary>
    [Parameter] [ValidateNotNullOrEmpty] public string? OutputPath { get; set; }
    [Parameter] public SwitchParameter Force { get; set; }

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

    protected override void ProcessRecord() => _input.Add(this, Prompt);

    protected override void EndProcessing()
    {
        CheckModes();
        if (_prompts.Count == 0) return;
        if (IsParallel)
        {
            _parallel = new ParallelGeneration(this, _prompts, _input.Positions);
            _parallel.Run();
            return;
        }
        var seed = SeedPerPrompt ? Seed ?? NewSeed() : Seed;
        RequireDistinctOutputPaths(seed);
        bool owned = ParameterSetName == PathSet;
        // -WhatIf / -Confirm: one decision for the whole call, before anything is loaded or generated (as the parallel
        // path does); the saves then need no second confirmation.
        var model = owned ? GetUnresolvedProviderPathFromPSPath(Path) : Pipeline.Path;
        var where = OutputPath is null ? "output the images" : $"save them as '{ResolveTemplatePath(OutputPath)}'";
        if (!ShouldProcess(model, $"Generate {_prompts.Count} image(s) with '{model}' and {where}")) return;
        _confirmed = true;
        var pipeline = owned
            ? Run(() => DiffusionPipeline.Load(ModelResolution.Resolve(this, Path, Revision, variant: null, null, StopToken), new PipelineLoadOptions { Device = Device?.SingleOrDefault(), DType = DType, Scheduler = Scheduler }, cancel: StopToken))
            : Pipeline;
        try
        {
            if (SeedPerPrompt) GenerateEach(pipeline, owned, seed!.Value);
            else GenerateBatches(pipeline, owned);
        }
        finally
        {
            if (owned) pipeline.Dispose();
        }
    }

    private void CheckModes()
    {
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

    /// <summary>diffusers' batch call: all prompts encoded together, denoised in batches from one generator seeded with -Seed.</summary>
    private void GenerateBatches(DiffusionPipeline pipeline, bool owned)
    {
        var embeddings = Run(() => Generation.Encode(pipeline, _prompts, _input.Negatives(NegativePrompt), new EncodeOptions { MaxSequenceLength = MaxSequenceLength }, Warn, indices: _input.Positions));
        var options = new DenoiseOptions { Steps = Steps, GuidanceScale = GuidanceScale, GuidanceRescale = GuidanceRescale, Seed = Seed, Height = Height, Width = Width, Scheduler = owned ? null : Scheduler };
        try
        {
            InvokeDenoiseCommand.DenoiseBatches(this, pipeline, embeddings, options, BatchSize, latent =>
            {
                using (latent)
                {
                    var image = Run(() => Generation.Decode(pipeline, [latent]))[0];
                    Emit(image, latent, pipeline.Device, latent.Seconds);
                }
            });
        }
        finally
        {
            foreach (var e in embeddings) e.Dispose();
        }
    }

    /// <summary>-SeedPerPrompt: each prompt encoded, denoised and decoded on its own with seed Seed + its index.</summary>
    private void GenerateEach(DiffusionPipeline pipeline, bool owned, long seed)
    {
        WorkerTestHooks.Arm();
        var indices = PromptIndices();
        var negatives = Run(() => Generation.ExpandNegatives(_prompts.Count, _input.Negatives(NegativePrompt)));
        var options = new DenoiseOptions
        {
            Steps = Steps, GuidanceScale = GuidanceScale, GuidanceRescale = GuidanceRescale, Seed = seed, SeedPerPrompt = true, Height = Height, Width = Width, Scheduler = owned ? null : Scheduler,
        };
        var progress = new ProgressRecord(1, $"Generating {_prompts.Count} image(s), one seed per prompt", "starting");
        try
        {
            for (int k = 0; k < _prompts.Count; k++)
            {
                progress.StatusDescription = $"image {k + 1}/{_prompts.Count}";
                progress.PercentComplete = 100 * k / _prompts.Count;
                WriteProgress(progress);
                var clock = Stopwatch.StartNew();
                var embeddings = Run(() => Generation.Encode(pipeline, [_prompts[k]], [negatives[k]], new EncodeOptions { MaxSequenceLength = MaxSequenceLength }, Warn, indices[k]));
                try
                {
                    InvokeDenoiseCommand.DenoiseBatches(this, pipeline, embeddings, options, 1, latent =>
                    {
                        using (latent)
                        {
                            var image = Run(() => Generation.Decode(pipeline, [latent]))[0];
                            Emit(image, latent, pipeline.Device, clock.Elapsed.TotalSeconds);
                        }
                    }, parentActivityId: progress.ActivityId);
                }
                finally
                {
                    foreach (var e in embeddings) e.Dispose();
                }
            }
        }
        finally
        {
            progress.RecordType = ProgressRecordType.Completed;
            WriteProgress(progress);
        }
    }

    /// <summary>Each prompt's index (-PromptIndex, else 0, 1, 2, ...), checked to be distinct.</summary>
    /// <summary>Each kept prompt's index: -PromptIndex gives one per prompt received ($null ones included), else its place in the input.</summary>
    private int[] PromptIndices()
    {
        var given = PromptIndex ?? Enumerable.Range(0, _input.Received).ToArray();
        if (given.Length != _input.Received || given.Any(i => i < 0) || given.Distinct().Count() != given.Length)
            ThrowTerminatingError(ArgumentError("PromptIndexInvalid",
                $"-PromptIndex must give one distinct index of 0 or more per prompt: {given.Length} index(es) for {_input.Received} prompt(s).", "PromptIndex"));
        return _input.Positions.Select(p => given[p]).ToArray();
    }

    /// <summary>
    /// Before any model work: refuses an -OutputPath that gives two images of this call the same file (e.g. a plain
    /// 'same.png' for two prompts), which would overwrite one with -Force or fail after generating it without.
    /// In a batch call every image has the run's seed (-Seed); without -Seed, {seed} is taken to differ per image.
    /// </summary>
    private void RequireDistinctOutputPaths(long? seed)
    {
        if (OutputPath is null || _prompts.Count < 2) return;
        var indices = SeedPerPrompt ? PromptIndices() : _input.Positions.ToArray();
        var images = _prompts.Select((p, k) => new OutputPathTemplate.PlannedImage(indices[k], SeedPerPrompt ? unchecked(seed!.Value + indices[k]) : seed ?? indices[k], p)).ToList();
        Run(() => new OutputPathTemplate(ResolveTemplatePath(OutputPath)).RequireDistinct(images, ProcessRank()));
    }

    internal static long NewSeed() => Random.Shared.NextInt64(0, uint.MaxValue);

    private void Emit(DiffusionImage image, DiffusionLatent latent, string device, double seconds)
    {
        if (OutputPath is null)
        {
            WriteObject(image);
            return;
        }
        int rank = ProcessRank();
        var target = Run(() => new OutputPathTemplate(ResolveTemplatePath(OutputPath)).Expand(image.Index, latent.Seed, latent.Prompt, rank));
        if (!_confirmed && !ShouldProcess(target, $"Save image #{image.Index}")) return;
        // In a worker of a parallel run, the run's journal records each save before the worker goes on (see RunJournal).
        var journal = RunJournal.Worker;
        if (journal is not null) Run(() => journal.BeforeSave(image.Index, target, latent.Seed, rank, device, seconds));
        WorkerTestHooks.At(WorkerTestHooks.BeforeSave);
        try { image.SavePng(target, overwrite: Force); }
        catch (DiffusionException e)
        {
            if (journal is not null) Run(() => journal.SaveFailed(image.Index, target, latent.Seed, rank, device, e.ErrorId));
            WriteEngineError(e, target);
            return;
        }
        WorkerTestHooks.At(WorkerTestHooks.AfterSave);
        if (journal is not null) Run(() => journal.AfterSave(image.Index, target, latent.Seed, rank, device, seconds));
        WorkerTestHooks.At(WorkerTestHooks.BeforeResult);
        WriteObject(new DiffusionResult
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
