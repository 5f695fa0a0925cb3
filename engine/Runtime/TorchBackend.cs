using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine;

/// <summary>
/// Loads libtorch and TorchSharp's native shim deliberately, once per process, with a clear error.
/// TorchSharp's own probing poisons the process on failure (its static constructor), so every native library is
/// checked and loaded by absolute path here before the first TorchSharp call. The libtorch folder is, in order:
/// an explicit path, $env:DIFFUSION_LIBTORCH (e.g. a PyTorch install's torch/lib, which also gives CUDA on Linux),
/// else the libtorch-cpu natives shipped beside TorchSharp.dll.
/// </summary>
public static class TorchBackend
{
    private static readonly object Gate = new();
    private static readonly Dictionary<string, IntPtr> Loaded = new(StringComparer.Ordinal);
    private static BackendInfo? _info;
    private static DiffusionException? _failure;

    public const string LibTorchEnvironmentVariable = "DIFFUSION_LIBTORCH";

    /// <summary>What loaded and from where; null until <see cref="EnsureLoaded"/> succeeds.</summary>
    public static BackendInfo? Info => _info;

    public static bool IsLoaded => _info is not null;

    /// <summary>Loads the backend if needed. A second call with a different folder is an error (natives can't be unloaded).</summary>
    public static BackendInfo EnsureLoaded(string? libTorchPath = null)
    {
        lock (Gate)
        {
            var requested = ResolveFolder(libTorchPath);
            if (_info is not null)
            {
                if (libTorchPath is not null && !SamePath(_info.LibTorchPath, requested.Path))
                    throw new DiffusionException("BackendAlreadyLoaded", DiffusionErrorKind.InvalidOperation,
                        $"The torch backend is already loaded from '{_info.LibTorchPath}' in this process; native libraries cannot be swapped. " +
                        $"Start a new pwsh with ${LibTorchEnvironmentVariable}='{requested.Path}' (or call Initialize-DiffusionBackend first in a fresh session).",
                        requested.Path);
                return _info;
            }
            if (_failure is not null) throw _failure;
            try
            {
                _info = Load(requested.Path, requested.Source);
                return _info;
            }
            catch (DiffusionException e)
            {
                _failure = e;
                throw;
            }
        }
    }

    private static (string Path, string Source) ResolveFolder(string? explicitPath)
    {
        if (!string.IsNullOrWhiteSpace(explicitPath)) return (Path.GetFullPath(explicitPath), "parameter");
        var env = Environment.GetEnvironmentVariable(LibTorchEnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(env)) return (Path.GetFullPath(env), $"${LibTorchEnvironmentVariable}");
        return (ShimFolder(), "bundled libtorch-cpu");
    }

    private static string ShimFolder() => Path.GetDirectoryName(typeof(torch).Assembly.Location)!;

    private static bool SamePath(string a, string b) =>
        string.Equals(Path.GetFullPath(a).TrimEnd('/', '\\'), Path.GetFullPath(b).TrimEnd('/', '\\'),
            OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

    private static string LibName(string stem) =>
        OperatingSystem.IsWindows() ? stem + ".dll" : OperatingSystem.IsMacOS() ? "lib" + stem + ".dylib" : "lib" + stem + ".so";

    private static BackendInfo Load(string folder, string source)
    {
        if (!Directory.Exists(folder))
            throw new DiffusionException("LibTorchFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The libtorch folder '{folder}' (from {source}) does not exist. Point {LibTorchEnvironmentVariable} or -LibTorchPath at a folder " +
                "holding libtorch's libraries, e.g. the 'torch/lib' folder of a PyTorch install (python -c \"import torch,os;print(os.path.dirname(torch.__file__)+'/lib')\").",
                folder);
        bool cuda = File.Exists(Path.Combine(folder, LibName("torch_cuda")));
        string[] order = cuda
            ? ["c10", "torch_cpu", "c10_cuda", "torch_cuda", "torch"]
            : ["c10", "torch_cpu", "torch"];
        var loadedFrom = new List<string>();
        foreach (var stem in order)
        {
            var file = Path.Combine(folder, LibName(stem));
            if (!File.Exists(file))
            {
                if (stem == "torch") continue; // libtorch.so is a thin forwarder some builds omit
                throw new DiffusionException("LibTorchIncomplete", DiffusionErrorKind.ObjectNotFound,
                    $"'{folder}' (from {source}) has no {LibName(stem)}; it is not a libtorch folder. Point {LibTorchEnvironmentVariable} at PyTorch's torch/lib or unset it to use the bundled CPU libtorch.",
                    folder);
            }
            Loaded[stem] = LoadFile(file, folder);
            loadedFrom.Add(file);
        }
        var shimFolder = ShimFolder();
        var shim = Path.Combine(shimFolder, LibName("LibTorchSharp"));
        if (!File.Exists(shim))
            shim = Path.Combine(shimFolder, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", LibName("LibTorchSharp"));
        if (!File.Exists(shim))
            throw new DiffusionException("LibTorchSharpNotFound", DiffusionErrorKind.ObjectNotFound,
                $"TorchSharp's native shim {LibName("LibTorchSharp")} is not beside TorchSharp.dll in '{shimFolder}'. Rebuild the module with ./build.ps1.", shimFolder);
        Loaded["LibTorchSharp"] = LoadFile(shim, folder);
        loadedFrom.Add(shim);
        NativeLibrary.SetDllImportResolver(typeof(torch).Assembly, Resolve);

        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
            if (cuda && !torch.TryInitializeDeviceType(DeviceType.CUDA))
                cuda = false; // CUDA libraries are there but no usable GPU/driver: CPU still works.
        }
        catch (Exception e)
        {
            throw new DiffusionException("BackendInitFailed", DiffusionErrorKind.ResourceUnavailable,
                $"libtorch from '{folder}' loaded but TorchSharp could not initialise it: {e.Message}. TorchSharp {typeof(torch).Assembly.GetName().Version} is built for libtorch 2.10; use a matching PyTorch (2.10/2.11).", folder, e);
        }
        int cudaDevices = cuda && torch.cuda.is_available() ? torch.cuda.device_count() : 0;
        return new BackendInfo(folder, source, cudaDevices > 0 ? "cuda" : "cpu", cudaDevices,
            typeof(torch).Assembly.GetName().Version?.ToString() ?? "?", loadedFrom.ToArray());
    }

    private static IntPtr LoadFile(string file, string folder)
    {
        try { return NativeLibrary.Load(file); }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            var hint = e.Message.Contains("GLIBCXX", StringComparison.Ordinal)
                ? " The system libstdc++ is too old (TorchSharp needs GLIBCXX_3.4.32, GCC 13+); on Debian 12 run build/ensure-native-deps.sh."
                : "";
            throw new DiffusionException("NativeLoadFailed", DiffusionErrorKind.ResourceUnavailable,
                $"Could not load '{file}': {e.Message}.{hint}", folder, e);
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) => LoadedHandle(libraryName);

    /// <summary>
    /// The handle of a native library this backend loaded (by name: "torch_cpu", "libtorch_cpu.so", "LibTorchSharp"), or
    /// zero. The module's AssemblyLoadContext asks this first, so TorchSharp's own by-name loads get the libtorch chosen
    /// here rather than a second copy (two libtorch copies in one process abort on duplicate operator registration).
    /// </summary>
    public static IntPtr LoadedHandle(string libraryName)
    {
        var stem = Path.GetFileName(libraryName);
        foreach (var ext in new[] { ".so", ".dll", ".dylib" })
            if (stem.EndsWith(ext, StringComparison.Ordinal)) stem = stem[..^ext.Length];
        if (stem.StartsWith("lib", StringComparison.Ordinal) && !Loaded.ContainsKey(stem)) stem = stem[3..];
        lock (Gate) return Loaded.TryGetValue(stem, out var handle) ? handle : IntPtr.Zero;
    }
}

public sealed record BackendInfo(string LibTorchPath, string Source, string DefaultDevice, int CudaDeviceCount,
    string TorchSharpVersion, string[] LoadedLibraries);
