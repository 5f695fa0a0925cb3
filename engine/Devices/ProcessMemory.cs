using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Diffusion.Engine.Devices;

/// <summary>
/// This process's real memory, beside the engine's own ledger of tensor bytes (<see cref="MemoryLedger"/>): resident
/// size and its peak, from /proc/self/status (VmRSS, VmHWM) on Linux, else the OS's working set. The ledger counts
/// only the tensors the engine holds; the process also holds loaded native libraries (libtorch is several hundred MB
/// of code and data), the .NET heap, and memory the C allocator keeps after tensors are freed.
/// </summary>
public static class ProcessMemory
{
    /// <summary>Resident bytes now.</summary>
    public static long Resident() => OperatingSystem.IsLinux() && TryStatus("VmRSS") is long rss ? rss : Process.GetCurrentProcess().WorkingSet64;

    /// <summary>The highest resident bytes since the process started (Linux: VmHWM).</summary>
    public static long Peak() => OperatingSystem.IsLinux() && TryStatus("VmHWM") is long hwm ? hwm : Process.GetCurrentProcess().PeakWorkingSet64;

    private static long? TryStatus(string key)
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(key + ":", StringComparison.Ordinal));
            return line is null ? null : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException) { return null; }
    }

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>
    /// Linux glibc: hands the heap memory the C allocator keeps after frees (libtorch's CPU tensors are malloc'd) back to
    /// the OS with malloc_trim(0). Elsewhere, or with another C library, does nothing. True when it ran.
    /// </summary>
    public static bool TrimNativeHeap()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { MallocTrim(0); return true; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }
}
