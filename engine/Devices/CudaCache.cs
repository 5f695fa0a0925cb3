using System.Runtime.InteropServices;

namespace Diffusion.Engine.Devices;

/// <summary>
/// torch.cuda.empty_cache() for TorchSharp, which does not expose it: calls c10's CUDA caching allocator in the
/// libc10_cuda the backend loaded. A no-op on CPU-only backends.
/// </summary>
internal static class CudaCache
{
    // c10::cuda::CUDACachingAllocator::emptyCache() across libtorch versions (older: no argument; 2.6+: a mempool id).
    private static readonly string[] EmptyCacheSymbols =
    [
        "_ZN3c104cuda20CUDACachingAllocator10emptyCacheESt4pairIyyE",
        "_ZN3c104cuda20CUDACachingAllocator10emptyCacheEv",
    ];

    public static unsafe bool EmptyCache()
    {
        var info = TorchBackend.Info;
        if (info is null || info.CudaDeviceCount == 0) return false;
        var lib = Path.Combine(info.LibTorchPath, OperatingSystem.IsWindows() ? "c10_cuda.dll" : "libc10_cuda.so");
        if (!NativeLibrary.TryLoad(lib, out var handle)) return false;
        if (NativeLibrary.TryGetExport(handle, EmptyCacheSymbols[0], out var withPool))
        {
            // std::pair<unsigned long long, unsigned long long>{0, 0}: the default pool, passed in two registers.
            ((delegate* unmanaged<ulong, ulong, void>)withPool)(0, 0);
            return true;
        }
        if (NativeLibrary.TryGetExport(handle, EmptyCacheSymbols[1], out var plain))
        {
            ((delegate* unmanaged<void>)plain)();
            return true;
        }
        return false;
    }
}
