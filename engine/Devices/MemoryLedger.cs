using System.Collections.Concurrent;

namespace Diffusion.Engine.Devices;

/// <summary>
/// The engine's own accounting of the tensor memory it holds per device (model weights, embeddings, latents):
/// what is allocated now and the peak since the last reset. libtorch's CPU allocator keeps no statistics that
/// TorchSharp exposes, so the engine counts what it owns.
/// </summary>
public static class MemoryLedger
{
    private static readonly ConcurrentDictionary<string, long> Current = new();
    private static readonly ConcurrentDictionary<string, long> Peaks = new();

    public static void Add(string device, long bytes)
    {
        var now = Current.AddOrUpdate(device, bytes, (_, v) => v + bytes);
        Peaks.AddOrUpdate(device, now, (_, p) => Math.Max(p, now));
    }

    public static void Remove(string device, long bytes) => Current.AddOrUpdate(device, 0, (_, v) => Math.Max(0, v - bytes));

    public static long Allocated(string device) => Current.TryGetValue(device, out var v) ? v : 0;

    public static long Peak(string device) => Peaks.TryGetValue(device, out var v) ? v : 0;

    public static void ResetPeaks()
    {
        foreach (var k in Peaks.Keys) Peaks[k] = Allocated(k);
    }
}
