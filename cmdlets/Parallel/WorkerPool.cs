using System.Collections;
using System.Collections.Concurrent;
using System.Globalization;
using Diffusion.Engine;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>
/// The worker processes of one parallel run. Workers start together; their events queue up here and are taken on the
/// cmdlet's thread (only it may write to the pipeline). <see cref="KillAll"/> (Ctrl+C) and <see cref="Dispose"/> leave
/// no process behind.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    private readonly BlockingCollection<WorkerEvent> _events = new();
    private volatile bool _killed;

    public IReadOnlyList<WorkerProcess> Workers { get; }

    /// <summary>Prepares the workers; nothing starts before <see cref="Open"/>.</summary>
    public WorkerPool(IReadOnlyList<WorkerLaunch> launches)
    {
        Workers = launches.Select(l => new WorkerProcess(l, Post)).ToList();
    }

    private void Post(WorkerEvent e)
    {
        try { _events.Add(e); }
        catch (InvalidOperationException) { } // the run is over (disposed): late news from a killed worker
    }

    /// <summary>
    /// Starts every worker at once, imports the module in each and sets its location to <paramref name="location"/>
    /// (the caller's, as Start-Job does); workers that fail to start have <see cref="WorkerProcess.Death"/> set.
    /// </summary>
    public void Open(string modulePath, string? location) =>
        System.Threading.Tasks.Parallel.ForEach(Workers, new ParallelOptions { MaxDegreeOfParallelism = Workers.Count },
            w => { if (!_killed) w.Open(modulePath, location); });

    /// <summary>The next event, or null after <paramref name="milliseconds"/> without one.</summary>
    public WorkerEvent? Next(int milliseconds) => _events.TryTake(out var e, milliseconds) ? e : null;

    /// <summary>Kills every worker and its children now (from any thread).</summary>
    public void KillAll()
    {
        _killed = true;
        foreach (var w in Workers) w.Kill();
    }

    public void Dispose()
    {
        System.Threading.Tasks.Parallel.ForEach(Workers, w => w.Dispose());
        _events.CompleteAdding();
    }
}

/// <summary>Which workers to start and with what environment, from -NumProcesses and -Device.</summary>
internal static class LaunchPlan
{
    /// <summary>
    /// One launch per process. With devices, process i gets devices[i mod count] (so -Device cuda:0,cuda:1 alone means
    /// two processes); a CUDA device is the only one the process sees (CUDA_VISIBLE_DEVICES, mapped through this
    /// process's own CUDA_VISIBLE_DEVICES), and a cpu process sees no GPU. Without devices each process takes
    /// cuda:LOCAL_RANK when there are GPUs, else the CPU. OMP_NUM_THREADS (when not set here) shares the cores out.
    /// </summary>
    public static IReadOnlyList<WorkerLaunch> Create(int? numProcesses, IReadOnlyList<string>? devices, IDictionary environment,
        int processorCount, string? libTorchPath)
    {
        var parsed = (devices ?? []).Select(Normalize).ToList();
        int n = numProcesses ?? (parsed.Count > 0 ? parsed.Count
            : throw new DiffusionException("ParallelProcessCountMissing", DiffusionErrorKind.InvalidArgument,
                "Say how many worker processes to start: -NumProcesses <n>, or -Device with one device per process (e.g. cuda:0,cuda:1).", "NumProcesses"));
        if (n < 1)
            throw new DiffusionException("ParallelProcessCountInvalid", DiffusionErrorKind.InvalidArgument, $"-NumProcesses {n}: at least 1 process is needed.", "NumProcesses");
        string? Get(string name) => environment.Contains(name) ? environment[name]?.ToString() : null;
        var visible = Get("CUDA_VISIBLE_DEVICES") is { Length: > 0 } v ? v.Split(',', StringSplitOptions.TrimEntries) : null;
        var launches = new List<WorkerLaunch>();
        for (int rank = 0; rank < n; rank++)
        {
            var env = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["RANK"] = Text(rank), ["WORLD_SIZE"] = Text(n), ["LOCAL_RANK"] = Text(rank), ["LOCAL_WORLD_SIZE"] = Text(n),
            };
            string? device = parsed.Count > 0 ? parsed[rank % parsed.Count] : null;
            if (device == "cpu") env["CUDA_VISIBLE_DEVICES"] = "";
            else if (device is not null)
            {
                int index = int.Parse(device.AsSpan(5), CultureInfo.InvariantCulture);
                if (visible is not null && index >= visible.Length)
                    throw new DiffusionException("ParallelDeviceNotVisible", DiffusionErrorKind.InvalidArgument,
                        $"-Device {device}: this session sees only {visible.Length} GPU(s) (CUDA_VISIBLE_DEVICES={Get("CUDA_VISIBLE_DEVICES")}).", "Device");
                env["CUDA_VISIBLE_DEVICES"] = visible is null ? Text(index) : visible[index];
            }
            if (string.IsNullOrEmpty(Get("OMP_NUM_THREADS"))) env["OMP_NUM_THREADS"] = Text(Math.Max(1, processorCount / n));
            if (libTorchPath is not null && string.IsNullOrEmpty(Get(TorchBackend.LibTorchEnvironmentVariable)))
                env[TorchBackend.LibTorchEnvironmentVariable] = libTorchPath;
            launches.Add(new WorkerLaunch(rank, n, device, env));
        }
        return launches;
    }

    /// <summary>cpu, or cuda:N (cuda alone is cuda:0).</summary>
    public static string Normalize(string device)
    {
        var text = device.Trim().ToLowerInvariant();
        if (text == "cpu") return "cpu";
        if (text == "cuda") return "cuda:0";
        if (text.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(text.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var i))
            return $"cuda:{i}";
        throw new DiffusionException("ParallelDeviceInvalid", DiffusionErrorKind.InvalidArgument,
            $"-Device '{device}' is not a device for a worker process: give cpu, or CUDA devices such as cuda:0,cuda:1.", "Device");
    }

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);
}
