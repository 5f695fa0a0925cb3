using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Devices;

/// <summary>One compute device as the user sees it.</summary>
public sealed record DeviceInfo(string Name, string Type, int Index, long? TotalMemory, long? FreeMemory,
    long AllocatedByEngine, long PeakByEngine, string Backend, string LibTorchPath)
{
    /// <summary>
    /// The process's real memory on this device: for cpu its resident size (VmRSS on Linux), which also holds the
    /// loaded libraries, the .NET heap and allocator caches the engine's ledger does not count; null for a GPU (the
    /// CUDA runtime reports per device, not per process: see <see cref="UsedMemory"/>).
    /// </summary>
    public long? ProcessMemory { get; init; }
    /// <summary>For cpu: the process's peak resident size since it started (VmHWM on Linux).</summary>
    public long? ProcessPeakMemory { get; init; }
    /// <summary>Memory in use on the device by every process (total - free), as the OS or CUDA runtime reports it.</summary>
    public long? UsedMemory => TotalMemory - FreeMemory;

    public double? TotalGB => TotalMemory is long t ? Math.Round(t / 1073741824.0, 1) : null;
    public double? FreeGB => FreeMemory is long f ? Math.Round(f / 1073741824.0, 1) : null;
    /// <summary>The tensors the engine holds now (its ledger), MiB.</summary>
    public double EngineMB => Math.Round(AllocatedByEngine / 1048576.0, 1);
    /// <summary>The engine ledger's peak since the last Clear-DiffusionMemory, MiB.</summary>
    public double PeakMB => Math.Round(PeakByEngine / 1048576.0, 1);
    public double? ProcessMB => ProcessMemory is long p ? Math.Round(p / 1048576.0, 1) : null;
    public double? ProcessPeakMB => ProcessPeakMemory is long p ? Math.Round(p / 1048576.0, 1) : null;
}

/// <summary>Lists devices and parses device names the user types (cpu, cuda, cuda:1).</summary>
public static class DeviceCatalog
{
    public static IReadOnlyList<DeviceInfo> List()
    {
        var info = TorchBackend.EnsureLoaded();
        var list = new List<DeviceInfo>();
        var (total, free) = HostMemory();
        list.Add(new DeviceInfo("cpu", "cpu", -1, total, free, MemoryLedger.Allocated("cpu"), MemoryLedger.Peak("cpu"), info.Source, info.LibTorchPath)
        {
            ProcessMemory = ProcessMemory.Resident(), ProcessPeakMemory = ProcessMemory.Peak(),
        });
        for (int i = 0; i < info.CudaDeviceCount; i++)
        {
            var (t, f) = CudaRuntime.MemoryInfo(i, info.LibTorchPath);
            var name = $"cuda:{i}";
            list.Add(new DeviceInfo(name, "cuda", i, t, f, MemoryLedger.Allocated(name), MemoryLedger.Peak(name), info.Source, info.LibTorchPath));
        }
        return list;
    }

    /// <summary>Names offered for tab completion: cpu, cuda, cuda:N for the devices present (cuda:0..7 before the backend loads).</summary>
    public static IEnumerable<string> CompletionNames()
    {
        yield return "cpu";
        int n = TorchBackend.Info?.CudaDeviceCount ?? 0;
        if (n > 0) yield return "cuda";
        for (int i = 0; i < n; i++) yield return $"cuda:{i}";
    }

    /// <summary>Parses and validates a device name against what is present.</summary>
    public static Device Parse(string? name, string parameterName = "Device")
    {
        var info = TorchBackend.EnsureLoaded();
        var text = (name ?? DefaultDevice(info)).Trim().ToLowerInvariant();
        if (text == "cpu") return torch.CPU;
        if (text == "cuda" || text.StartsWith("cuda:", StringComparison.Ordinal))
        {
            int index = 0;
            if (text.Length > 4 && !int.TryParse(text.AsSpan(5), out index))
                throw Unknown(name!, parameterName, info);
            if (info.CudaDeviceCount == 0)
                throw new DiffusionException("CudaNotAvailable", DiffusionErrorKind.ResourceUnavailable,
                    $"-{parameterName} '{name}' asks for CUDA, but the loaded backend ({info.Source}: {info.LibTorchPath}) has no usable GPU. " +
                    $"Start pwsh with ${TorchBackend.LibTorchEnvironmentVariable} pointing at a CUDA build of libtorch (a PyTorch install's torch/lib), or use -{parameterName} cpu.",
                    parameterName);
            if (index < 0 || index >= info.CudaDeviceCount)
                throw new DiffusionException("CudaDeviceNotFound", DiffusionErrorKind.InvalidArgument,
                    $"-{parameterName} '{name}': there are {info.CudaDeviceCount} CUDA device(s), cuda:0..cuda:{info.CudaDeviceCount - 1}. See Get-DiffusionDevice.", parameterName);
            return torch.CUDA.type == DeviceType.CUDA ? new Device(DeviceType.CUDA, index) : throw Unknown(name!, parameterName, info);
        }
        throw Unknown(name!, parameterName, info);
    }

    /// <summary>
    /// The device used when none is given: cuda:LOCAL_RANK under a launcher (torchrun, srun, mpirun,
    /// Start-DiffusionParallel) when there are CUDA devices, else the backend's default. Launcher variables that
    /// do not parse leave the backend's default (Get-DiffusionRank reports them).
    /// </summary>
    public static string DefaultDevice(BackendInfo info)
    {
        if (info.CudaDeviceCount == 0) return info.DefaultDevice;
        try { return Parallel.RankEnvironment.FromProcess().DefaultDevice(info.CudaDeviceCount); }
        catch (DiffusionException) { return info.DefaultDevice; }
    }

    /// <summary>Checks a device name against what is present (as <see cref="Parse"/>) and returns its canonical name (cuda:N, cpu).</summary>
    public static string Validate(string? name, string parameterName = "Device") => Name(Parse(name, parameterName));

    public static string Name(Device d) => d.type == DeviceType.CUDA ? $"cuda:{Math.Max(0, d.index)}" : d.type.ToString().ToLowerInvariant();

    private static DiffusionException Unknown(string name, string parameterName, BackendInfo info) =>
        new("UnknownDevice", DiffusionErrorKind.InvalidArgument,
            $"-{parameterName} '{name}' is not a device name. Use one of: {string.Join(", ", CompletionNames())} (see Get-DiffusionDevice).", parameterName);

    /// <summary>(total, free) bytes of one device: MemAvailable for the CPU, cudaMemGetInfo for a GPU; nulls when unknown.</summary>
    public static (long? Total, long? Free) Memory(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            var info = TorchBackend.EnsureLoaded();
            return CudaRuntime.MemoryInfo(Math.Max(0, device.index), info.LibTorchPath);
        }
        return HostMemory();
    }

    private static (long? Total, long? Free) HostMemory()
    {
        try
        {
            if (File.Exists("/proc/meminfo"))
            {
                long? Read(string key)
                {
                    var line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith(key + ":", StringComparison.Ordinal));
                    if (line is null) return null;
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    return long.Parse(parts[1]) * 1024;
                }
                return (Read("MemTotal"), Read("MemAvailable"));
            }
        }
        catch (IOException) { }
        var gc = GC.GetGCMemoryInfo();
        return (gc.TotalAvailableMemoryBytes, null);
    }
}

/// <summary>cudaMemGetInfo through the CUDA runtime that ships with the loaded libtorch (best effort).</summary>
internal static class CudaRuntime
{
    private static IntPtr _cudart = IntPtr.Zero;
    private static bool _searched;

    public static unsafe (long? Total, long? Free) MemoryInfo(int device, string libTorchPath)
    {
        var lib = Find(libTorchPath);
        if (lib == IntPtr.Zero
            || !NativeLibrary.TryGetExport(lib, "cudaSetDevice", out var setDevice)
            || !NativeLibrary.TryGetExport(lib, "cudaGetDevice", out var getDevice)
            || !NativeLibrary.TryGetExport(lib, "cudaMemGetInfo", out var memGetInfo))
            return (null, null);
        int previous = 0;
        ((delegate* unmanaged<int*, int>)getDevice)(&previous);
        ((delegate* unmanaged<int, int>)setDevice)(device);
        nuint free = 0, total = 0;
        int rc = ((delegate* unmanaged<nuint*, nuint*, int>)memGetInfo)(&free, &total);
        ((delegate* unmanaged<int, int>)setDevice)(previous);
        return rc == 0 ? ((long)total, (long)free) : (null, null);
    }

    private static IntPtr Find(string libTorchPath)
    {
        if (_searched) return _cudart;
        _searched = true;
        var candidates = new List<string>();
        foreach (var dir in new[] { libTorchPath, Path.Combine(libTorchPath, "..", "..", "nvidia", "cuda_runtime", "lib") })
            if (Directory.Exists(dir))
                candidates.AddRange(Directory.GetFiles(dir, "libcudart.so*").OrderByDescending(f => f.Length));
        foreach (var c in candidates)
            if (NativeLibrary.TryLoad(c, out _cudart)) return _cudart;
        foreach (var name in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so", "cudart64_12.dll" })
            if (NativeLibrary.TryLoad(name, out _cudart)) return _cudart;
        return IntPtr.Zero;
    }
}
