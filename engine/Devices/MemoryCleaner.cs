namespace Diffusion.Engine.Devices;

/// <summary>
/// The guide's flush(): collect garbage so unreferenced tensors free their native memory, return the freed heap to the
/// OS (glibc's malloc_trim on Linux), reset peaks. What stays resident afterwards: the loaded native libraries
/// (libtorch's code and data), the .NET runtime and heap, and on CUDA the blocks libtorch's caching allocator keeps.
/// On CUDA, libtorch's caching allocator keeps freed blocks reserved; TorchSharp exposes no empty_cache and c10's
/// emptyCache is an inline header function (no exported symbol), so returning that reserve needs a native shim: not done yet.
/// </summary>
public static class MemoryCleaner
{
    public static void Flush()
    {
        // Twice: tensors held by finalizable objects are only released on the second pass.
        for (int i = 0; i < 2; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }
        ProcessMemory.TrimNativeHeap(); // glibc keeps freed tensor memory in its arenas otherwise
        MemoryLedger.ResetPeaks();
    }
}
