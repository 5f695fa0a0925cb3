namespace Diffusion.Engine.Devices;

/// <summary>The guide's flush(): collect garbage so unreferenced tensors free their native memory, reset peaks.</summary>
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
        CudaCache.EmptyCache();
        MemoryLedger.ResetPeaks();
    }
}
