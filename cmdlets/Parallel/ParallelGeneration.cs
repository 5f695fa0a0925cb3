using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.IO;
using Diffusion.Engine.Imaging;
using Diffusion.Engine.Parallel;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>
/// Invoke-Diffusion -NumProcesses / -Device a,b: splits the prompts between worker processes as accelerate does,
/// each worker loads the model once and generates its prompts one by one with seed Seed + index (Invoke-Diffusion
/// -SeedPerPrompt, i.e. the engine's <see cref="GenerationRunner"/>, on its share; so the images do
/// not depend on the split), saves them under names with the global index, and the results come back in prompt
/// order. The prompts of a worker that fails are re-run on the surviving workers up to -Retry times; what still
/// fails is reported, one error per prompt. What a worker that died had saved is read from the run's journal
/// (<see cref="RunJournal"/>), not from the results that happened to arrive: those images are results, and are not made
/// again. Every prompt ends up once in the output, as a result, or as an error for it.
/// </summary>
internal sealed class ParallelGeneration
{
    /// <summary>
    /// Runs in each worker (with the module imported): loads the model on the first call and keeps it for retries,
    /// then generates the given prompts. DIFFUSION_TEST_EXIT_RANK=r[:n] is a test hook: the worker of rank r exits
    /// with code 86 after n images (0: before the first).
    /// </summary>
    private static readonly string WorkerScript = $$"""
        param([string] $ModelPath, [hashtable] $Load, [hashtable] $Generate, [hashtable[]] $Rows, [hashtable[]] $Loras)
        $ErrorActionPreference = 'Stop'
        if (-not $global:DiffusionParallelPipeline) {
            $pipeline = New-DiffusionPipeline -Path $ModelPath @Load
            foreach ($lora in $Loras) { $null = Add-DiffusionLora -Pipeline $pipeline -Path $lora.Path -Scale $lora.Scale } # -Lora, once
            $global:DiffusionParallelPipeline = $pipeline
        }
        Write-Information -MessageData @{ Device = $global:DiffusionParallelPipeline.Device } -Tags '{{WorkerReports.DeviceTag}}'
        $exitRank, $exitAfter = "$env:DIFFUSION_TEST_EXIT_RANK" -split ':'
        $testExit = $exitRank -ne '' -and [int]$exitRank -eq [int]$env:RANK
        if ($testExit -and -not [int]$exitAfter) { [Environment]::Exit(86) }
        $arguments = @{ Pipeline = $global:DiffusionParallelPipeline; SeedPerPrompt = $true } + $Generate
        # Each step goes to the parent as a report of its own (see WorkerReports); the worker's progress records would repeat it.
        $ProgressPreference = 'SilentlyContinue'
        $done = 0
        $Rows | ForEach-Object { [pscustomobject]$_ } | Invoke-Diffusion @arguments -ErrorAction Continue | ForEach-Object {
            $_
            $done++
            if ($testExit -and $done -ge [int]$exitAfter) { [Environment]::Exit(86) }
        }
        """;

    private readonly InvokeDiffusionCommand _cmd;
    private readonly IReadOnlyList<string> _prompts;
    /// <summary>Each prompt's own values from its row (Import-Csv columns), sent to the worker with it.</summary>
    private readonly IReadOnlyList<PromptRow> _rows;
    /// <summary>
    /// Slot k (0..n-1, this class's own numbering of the prompts it was given) is the prompt with input index
    /// _positions[k]: the index workers, journals, results and errors use. They differ where a $null prompt kept its place.
    /// </summary>
    private readonly IReadOnlyList<int> _positions;
    private readonly Dictionary<int, int> _slotOf;
    private readonly DiffusionResult?[] _results;
    private readonly bool[] _settled;
    /// <summary>The prompts each worker was given, over all rounds: its results are taken whenever they arrive.</summary>
    private readonly Dictionary<WorkerProcess, HashSet<int>> _given = new();
    /// <summary>Targets (image paths) of the workers' errors that arrived, and those that are reported already and must not come twice.</summary>
    private readonly HashSet<string> _errorTargets = new(StringComparer.Ordinal), _reportedTargets = new(StringComparer.Ordinal);
    private int _nextEmit;
    private WorkerPool? _pool;
    private RunJournal? _journal;

    /// <param name="positions">Each prompt's index in the whole job (its place in the input, or its row's Index).</param>
    public ParallelGeneration(InvokeDiffusionCommand cmdlet, IReadOnlyList<string> prompts, IReadOnlyList<int> positions, IReadOnlyList<PromptRow> rows)
    {
        _cmd = cmdlet;
        _prompts = prompts;
        _rows = rows;
        _positions = positions;
        _slotOf = positions.Select((p, k) => (p, k)).ToDictionary(x => x.p, x => x.k);
        _results = new DiffusionResult?[prompts.Count];
        _settled = new bool[prompts.Count];
    }

    /// <summary>Ctrl+C: kill every worker (and its children) now.</summary>
    public void Stop() => _pool?.KillAll();

    private string? _config;
    /// <summary>-Lora's files (full paths) and scales: every worker adds them to its pipeline once, after loading it.</summary>
    private System.Collections.Hashtable[] _loras = [];

    public void Run()
    {
        // A repo id is resolved (downloaded) once, here: the workers get the local snapshot folder.
        var modelPath = _cmd.RunEngine(() => ModelResolution.Resolve(_cmd, _cmd.Path, _cmd.Revision, _cmd.Variant, null, _cmd.StopToken));
        if (!Directory.Exists(modelPath) && !(File.Exists(modelPath) && _cmd.Config is not null))
            _cmd.ThrowTerminatingError(DiffusionCmdlet.ArgumentError("ModelFolderNotFound",
                $"The model folder '{modelPath}' does not exist. Give the folder that holds model_index.json.", modelPath, ErrorCategory.ObjectNotFound));
        _config = _cmd.RunEngine(() => ModelConfigArgument.Resolve(_cmd, modelPath, _cmd.Config, _cmd.StopToken)); // once here, not an error per worker
        var template = OutputTemplate();
        var negatives = _cmd.NegativePromptsKept is not { } given ? null : _cmd.RunEngine(() => Generation.ExpandNegatives(_prompts.Count, given));
        long seed = _cmd.Seed ?? RandomSeed.Next();
        // {index} keeps the images apart unless its format cuts it: the engine's check of the whole job as the workers'
        // Invoke-Diffusion runs it (rank 0: two prompts may run on one worker), per template: rows may bring their own
        // OutputPath, resolved here.
        var rowTemplates = _rows.Select(r => r.OutputPath is null ? null : _cmd.ResolveTemplatePath(r.OutputPath)).ToList();
        var job = new GenerationRequest
        {
            Prompts = _prompts.Select((prompt, k) => new GenerationPrompt(prompt, _positions[k]) { Seed = _rows[k].Seed, OutputPath = rowTemplates[k] }).ToList(),
            SeedPerPrompt = true, Seed = seed, OutputPath = template.Template,
        };
        _cmd.RunEngine(() => { GenerationRunner.Check(job); return 0; });
        _loras = _cmd.ResolvedLoras().Select(l => new System.Collections.Hashtable { ["Path"] = l.Path, ["Scale"] = l.Scale }).ToArray();
        var launches = ParallelLaunch.Plan(_cmd, _cmd.NumProcesses, _cmd.Device);
        if (!_cmd.ShouldProcess(template.Template, $"Generate {_prompts.Count} image(s) in {launches.Count} worker process(es)")) return;

        var generate = new System.Collections.Hashtable
        {
            ["Seed"] = seed, ["OutputPath"] = template.Template, ["Force"] = _cmd.Force.IsPresent, ["Quality"] = _cmd.Quality,
        };
        if (_cmd.Steps is int steps) generate["Steps"] = steps;
        if (_cmd.GuidanceScale is double guidance) generate["GuidanceScale"] = guidance;
        if (_cmd.GuidanceRescale is double rescale) generate["GuidanceRescale"] = rescale;
        if (_cmd.Height is int height) generate["Height"] = height;
        if (_cmd.Width is int width) generate["Width"] = width;
        if (_cmd.MaxSequenceLength is int length) generate["MaxSequenceLength"] = length;
        if (_cmd.Strength is double strength) generate["Strength"] = strength;
        if (_cmd.LoraScale is double loraScale) generate["LoraScale"] = loraScale;
        if (_cmd.ParseLoraTags) generate["ParseLoraTags"] = true;
        if (_cmd.OriginalSize is { } originalSize) generate["OriginalSize"] = originalSize;
        if (_cmd.CropCoordinates is { } crop) generate["CropCoordinates"] = crop;
        if (_cmd.TargetSize is { } targetSize) generate["TargetSize"] = targetSize;
        if (_cmd.Prompt2 is { Length: > 0 } prompt2) generate["Prompt2"] = OneForAll(prompt2, "Prompt2");
        if (_cmd.NegativePrompt2 is { Length: > 0 } negative2) generate["NegativePrompt2"] = OneForAll(negative2, "NegativePrompt2");
        if (_cmd.InitImage is not null) generate["InitImage"] = InitImageFile(_cmd.InitImage);
        VerboseReport.PassOn(_cmd, generate); // the workers' lines come back marked with their rank

        _journal = _cmd.RunEngine(RunJournal.Create);
        try
        {
            _pool = new WorkerPool(launches.Select(_journal.ForWorker).ToList());
            Generate(progress: new ParallelProgress($"Invoke-Diffusion: {_prompts.Count} prompt(s) in {launches.Count} worker process(es)", _pool.Workers),
                modelPath, generate, Rows(negatives, rowTemplates));
        }
        finally
        {
            _journal.Dispose(); // after the pool: no worker is left to write
        }
    }

    /// <summary>
    /// Each prompt as the worker gets it: a row with its prompt, its index and the values of its own (its row's, and
    /// its -NegativePrompt entry); the worker pipes the rows into Invoke-Diffusion, which reads them by property name.
    /// </summary>
    private List<System.Collections.Hashtable> Rows(IReadOnlyList<string?>? negatives, IReadOnlyList<string?> templates) =>
        _prompts.Select((prompt, k) =>
        {
            var r = _rows[k];
            var row = new System.Collections.Hashtable { ["Prompt"] = prompt, ["Index"] = _positions[k] };
            if ((r.NegativePrompt ?? negatives?[k]) is { Length: > 0 } negative) row["NegativePrompt"] = negative;
            if (r.Seed is long seed) row["Seed"] = seed;
            if (r.Steps is int steps) row["Steps"] = steps;
            if (r.GuidanceScale is double guidance) row["GuidanceScale"] = guidance;
            if (r.Width is int width) row["Width"] = width;
            if (r.Height is int height) row["Height"] = height;
            if (templates[k] is { } path) row["OutputPath"] = path;
            return row;
        }).ToList();

    private void Generate(ParallelProgress progress, string modelPath, System.Collections.Hashtable generate, IReadOnlyList<System.Collections.Hashtable> rows)
    {
        try
        {
            _cmd.WriteProgress(progress.Overall("starting workers and loading the model", 0));
            _pool!.Open(ParallelLaunch.ModulePath, _cmd.SessionState.Path.CurrentFileSystemLocation.ProviderPath);
            _cmd.StopIfAsked();
            foreach (var w in _pool.Workers.Where(w => w.Death is not null))
                _cmd.WriteError(WorkerForwarding.WorkerFailed(w.Death!, "Its prompts go to the other workers."));
            var pending = Enumerable.Range(0, _prompts.Count).ToList();
            for (int attempt = 0; pending.Count > 0; attempt++)
            {
                var survivors = _pool.Workers.Where(w => w.IsAlive).ToList();
                if (survivors.Count == 0)
                {
                    FailForGood(pending.Select(i => (i, (WorkerFailure?)null)).ToList(), attempt);
                    break;
                }
                var failed = RunRound(pending, survivors, progress, LoadArguments, modelPath, generate, rows);
                pending = failed.Select(f => f.Index).ToList();
                if (pending.Count == 0) break;
                if (attempt < _cmd.Retry && _pool.Workers.Any(w => w.IsAlive))
                {
                    _cmd.WriteWarning($"Retrying {pending.Count} prompt(s) of failed workers on rank(s) {string.Join(", ", _pool.Workers.Where(w => w.IsAlive).Select(w => w.Rank))} " +
                                      $"(retry {attempt + 1} of {_cmd.Retry}).");
                    continue;
                }
                FailForGood(failed.Select(f => (f.Index, (WorkerFailure?)f.Failure)).ToList(), attempt);
                break;
            }
            foreach (var i in Enumerable.Range(0, _prompts.Count).Where(i => !_settled[i])) // not expected: each round settles or fails what it ran
                FailPrompt(i, "no worker reported a result or an error for it.");
            Flush(progress);
        }
        finally
        {
            _pool!.Dispose();
            if (!_cmd.Stopping) foreach (var bar in progress.Completed()) _cmd.WriteProgress(bar); // writing throws once Ctrl+C was pressed
        }
    }

    /// <summary>-OutputPath, resolved; it must name every image apart, so it needs {index} (a folder gets the default name, which has it).</summary>
    private OutputPathTemplate OutputTemplate()
    {
        if (_cmd.OutputPath is null)
            _cmd.ThrowTerminatingError(DiffusionCmdlet.ArgumentError("ParallelOutputPathMissing",
                "A parallel run saves the images in the worker processes: give -OutputPath, a folder or a template with {index} (e.g. 'out/{index:0000}.png').", "OutputPath"));
        var template = _cmd.RunEngine(() => new OutputPathTemplate(_cmd.ResolveTemplatePath(_cmd.OutputPath!)));
        if (!template.Uses("index"))
            _cmd.ThrowTerminatingError(DiffusionCmdlet.ArgumentError("ParallelOutputPathNeedsIndex",
                $"-OutputPath '{_cmd.OutputPath}' has no {{index}}: the processes' images would collide. Add {{index}} (e.g. 'out/{{index:0000}}-{{seed}}.png') or give a folder.", "OutputPath"));
        return template;
    }

    /// <summary>New-DiffusionPipeline's arguments in a worker: its device as it sees it (a CUDA worker sees only its own GPU, as cuda:0).</summary>
    private System.Collections.Hashtable LoadArguments(WorkerProcess worker)
    {
        var load = new System.Collections.Hashtable { ["DType"] = _cmd.DType };
        if (worker.Device is not null) load["Device"] = worker.Device == "cpu" ? "cpu" : "cuda:0";
        if (_cmd.Scheduler is not null) load["Scheduler"] = _cmd.Scheduler;
        if (_cmd.Variant is not null) load["Variant"] = _cmd.Variant;
        if (_config is not null) load["Config"] = _config;
        VerboseReport.PassOn(_cmd, load);
        return load;
    }

    /// <summary>
    /// Splits <paramref name="pending"/> between the workers, runs them, and returns the prompts of workers that failed
    /// and that their journal does not show saved.
    /// </summary>
    private List<(int Index, WorkerFailure Failure)> RunRound(List<int> pending, List<WorkerProcess> workers, ParallelProgress progress,
        Func<WorkerProcess, System.Collections.Hashtable> load, string modelPath, System.Collections.Hashtable generate, IReadOnlyList<System.Collections.Hashtable> rows)
    {
        var shares = PromptSplitter.AllShares(pending.Count, workers.Count, applyPadding: false);
        var round = new Dictionary<WorkerProcess, List<int>>();
        var running = new HashSet<WorkerProcess>();
        for (int k = 0; k < workers.Count; k++)
        {
            var w = workers[k];
            var indices = shares[k].Items.Select(i => pending[i.Index]).ToList();
            round[w] = indices;
            if (indices.Count == 0)
            {
                _cmd.WriteProgress(progress.Rank(w, "idle", 100));
                continue;
            }
            if (!_given.TryGetValue(w, out var given)) _given[w] = given = new HashSet<int>();
            given.UnionWith(indices);
            _cmd.WriteProgress(progress.Rank(w, $"0/{indices.Count} images"));
            running.Add(w);
            w.BeginInvoke(WorkerScript, new Dictionary<string, object?>
            {
                ["ModelPath"] = modelPath, ["Load"] = load(w), ["Generate"] = generate, ["Rows"] = indices.Select(i => rows[i]).ToArray(), ["Loras"] = _loras,
            });
        }
        string Done(WorkerProcess w) => $"{round[w].Count(i => _results[i] is not null)}/{round[w].Count} images";
        var failed = new List<(int, WorkerFailure)>();
        while (running.Count > 0)
        {
            _cmd.StopIfAsked();
            var e = _pool!.Next(200);
            if (e is WorkerError { Record.TargetObject: { } target } && target.ToString() is { } path)
            {
                if (_reportedTargets.Contains(path)) continue; // late, and reported for its prompt already
                _errorTargets.Add(path);
            }
            if (e is WorkerMessage { Record: InformationRecord info } && WorkerReports.IsReport(info))
            {
                if (WorkerReports.TryReadStep(info, out var step) && running.Contains(e.Worker))
                {
                    int doneByRank = round[e.Worker].Count(i => _results[i] is not null);
                    _cmd.WriteProgress(progress.Step(e.Worker, step, doneByRank, round[e.Worker].Count));
                    _cmd.WriteProgress(OverallRecord(progress));
                }
                else if (WorkerReports.ReadDevice(info) is { } device) _cmd.WriteProgress(progress.SetDevice(e.Worker, device));
                continue;
            }
            if (e is null || WorkerForwarding.TryForward(_cmd, e)) continue;
            var w = e.Worker;
            switch (e)
            {
                // From this round or, late, from a worker that ended before: taken if its prompt has no result or error yet.
                case WorkerOutput o when Result(o.Value, w) is { } result && !_settled[_slotOf[result.Index]]:
                    Settle(_slotOf[result.Index], result);
                    if (running.Contains(w))
                        _cmd.WriteProgress(progress.Rank(w, Done(w), 100 * round[w].Count(i => _results[i] is not null) / round[w].Count));
                    Flush(progress);
                    break;
                case WorkerProgress p when running.Contains(w):
                    _cmd.WriteProgress(progress.FromWorker(w, p.Record, Done(w)));
                    break;
                case WorkerFinished f when running.Remove(w):
                    var record = _journal!.Read();
                    foreach (var i in round[w].Where(i => !_settled[i]))
                    {
                        if (record.Written(_positions[i]) is { } entry) Settle(i, FromJournal(entry, w));
                        else if (record.SaveFailed(_positions[i]) is { } refused) // not made again: the same save would fail the same way
                        {
                            if (_errorTargets.Contains(refused.Path)) Settle(i, null); // the worker's error for it arrived (forwarded above)
                            else
                            {
                                _reportedTargets.Add(refused.Path); // should the worker's own error still come, it is not shown twice
                                FailPrompt(i, $"worker rank {refused.Rank} could not save '{refused.Path}' ({refused.ErrorId}), and its error did not reach this session.");
                            }
                        }
                        // The worker's error for the prompt itself (its own values, a LoRA tag naming nothing) arrived: that is its outcome.
                        else if (_errorTargets.Contains(_positions[i].ToString(System.Globalization.CultureInfo.InvariantCulture))) Settle(i, null);
                    }
                    var missing = round[w].Where(i => !_settled[i]).ToList();
                    if (f.Failure is { } failure)
                    {
                        var consequence = missing.Count == 0 ? "All its images were saved." : $"{missing.Count} of its prompts {(missing.Count == 1 ? "was" : "were")} not generated: #{string.Join(", #", missing.Select(i => _positions[i]))}.";
                        _cmd.WriteError(WorkerForwarding.WorkerFailed(failure, consequence));
                        failed.AddRange(missing.Select(i => (i, failure)));
                        _cmd.WriteProgress(progress.Rank(w, "failed"));
                    }
                    else
                    {
                        foreach (var i in missing) FailPrompt(i, $"worker rank {w.Rank} ended without a result or an error for it.");
                        _cmd.WriteProgress(progress.Rank(w, $"done: {Done(w)}", 100));
                    }
                    Flush(progress);
                    break;
            }
        }
        return failed;
    }

    /// <summary>A worker's output as a result, or null when it is not one of the prompts the worker was given.</summary>
    private DiffusionResult? Result(PSObject? value, WorkerProcess worker)
    {
        object? Get(string name) => value?.Properties[name]?.Value;
        if (Get("Index") is not { } indexValue || !int.TryParse(indexValue.ToString(), out var index)
            || !_slotOf.TryGetValue(index, out var slot) || !_given.TryGetValue(worker, out var given) || !given.Contains(slot)) return null;
        return new DiffusionResult
        {
            Index = index,
            Prompt = _prompts[slot],
            Seed = Convert.ToInt64(Get("Seed"), System.Globalization.CultureInfo.InvariantCulture),
            Path = Get("Path")?.ToString(),
            ProcessRank = worker.Rank,
            Device = worker.Device ?? Get("Device")?.ToString() ?? "",
            Seconds = Convert.ToDouble(Get("Seconds"), System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    /// <summary>The result for an image the journal shows saved, as the worker would have sent it.</summary>
    private DiffusionResult FromJournal(RunJournal.Entry entry, WorkerProcess worker) => new()
    {
        Index = entry.Index,
        Prompt = _prompts[_slotOf[entry.Index]],
        Seed = entry.Seed,
        Path = entry.Path,
        ProcessRank = entry.Rank,
        Device = worker.Device ?? entry.Device,
        Seconds = entry.Seconds,
    };

    private void Settle(int index, DiffusionResult? result)
    {
        _results[index] = result;
        _settled[index] = true;
    }

    /// <summary>Writes the results that are next in prompt order.</summary>
    private void Flush(ParallelProgress progress)
    {
        for (; _nextEmit < _prompts.Count && _settled[_nextEmit]; _nextEmit++)
            if (_results[_nextEmit] is { } r) _cmd.WriteObject(r);
        _cmd.WriteProgress(OverallRecord(progress));
    }

    /// <summary>The overall bar: images done of all, its percentage counting the images the ranks have in progress.</summary>
    private ProgressRecord OverallRecord(ParallelProgress progress)
    {
        int done = _results.Count(r => r is not null);
        return progress.Overall($"{done}/{_prompts.Count} images", (int)(100 * (done + progress.InFlight) / _prompts.Count));
    }

    /// <summary>One error per prompt that no worker could generate, with the failed worker's error.</summary>
    private void FailForGood(List<(int Index, WorkerFailure? Failure)> failed, int retries)
    {
        var advice = _cmd.Retry > 0 ? $" It was retried {retries} time(s)." : " Use -Retry <k> to re-run the prompts of a failed worker on the others.";
        foreach (var (index, failure) in failed.Where(f => !_settled[f.Index]).OrderBy(f => f.Index))
            FailPrompt(index, (failure is null ? "no worker process is left to run it" : $"worker {failure}") + "." + advice);
        for (; _nextEmit < _prompts.Count && _settled[_nextEmit]; _nextEmit++)
            if (_results[_nextEmit] is { } r) _cmd.WriteObject(r);
    }

    /// <summary>The error that settles a prompt no worker made: ParallelPromptFailed, its target the prompt's index.</summary>
    private void FailPrompt(int index, string why)
    {
        var message = $"Prompt #{_positions[index]} '{_prompts[index]}' was not generated: {why}";
        _cmd.WriteError(new ErrorRecord(new InvalidOperationException(message), "ParallelPromptFailed", ErrorCategory.OperationStopped, _positions[index])
        {
            ErrorDetails = new ErrorDetails(message),
        });
        Settle(index, null);
    }

    /// <summary>A parallel run's workers each get a share of the prompts: a -Prompt2/-NegativePrompt2 must be one for all.</summary>
    private string OneForAll(string[] values, string parameter)
    {
        if (values.Length != 1)
            _cmd.ThrowTerminatingError(DiffusionCmdlet.ArgumentError("ParallelPrompt2PerPrompt",
                $"A parallel run takes one -{parameter} for all prompts (its workers each get a share of the prompts); got {values.Length}. Give one, or run without -NumProcesses.", parameter));
        return values[0];
    }

    /// <summary>Workers read the init image themselves: it goes to them as a file path.</summary>
    private string InitImageFile(object value)
    {
        var item = value is System.Management.Automation.PSObject ps ? ps.BaseObject : value;
        return item switch
        {
            FileInfo file => file.FullName,
            string path when path.Length > 0 => _cmd.GetUnresolvedProviderPathFromPSPath(path),
            _ => throw new System.Management.Automation.PSArgumentException(
                "A parallel run reads -InitImage in every worker: give it as a file path (or Get-Item output), not as an image object. Save the image first (Save-DiffusionImage).", "InitImage"),
        };
    }
}
