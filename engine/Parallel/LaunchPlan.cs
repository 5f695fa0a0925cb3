using System.Collections;
using System.Globalization;

namespace Diffusion.Engine.Parallel;

/// <summary>What one worker process is started with.</summary>
/// <param name="Device">The device as the user named it (cpu, cuda:1), or null when the worker picks its own (cuda:LOCAL_RANK or cpu).</param>
/// <param name="Environment">Variables set on the started process (RANK, WORLD_SIZE, LOCAL_RANK, CUDA_VISIBLE_DEVICES, ...).</param>
public sealed record WorkerLaunch(int Rank, int WorldSize, string? Device, IReadOnlyDictionary<string, string> Environment);

/// <summary>Which workers to start and with what environment, from -NumProcesses and -Device.</summary>
public static class LaunchPlan
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
