using System.Diagnostics;
using System.Globalization;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>
/// Test hooks for the parallel tests, read from the environment as DIFFUSION_TEST_EXIT_RANK is by the worker script.
/// <para>DIFFUSION_TEST_KILL=r:point[:n] (read in the workers): the worker process of rank r kills itself (SIGKILL) the
/// n-th time (default 1) it reaches the point: before-save, after-save (the PNG is in place, nothing else done yet),
/// before-result (the image is saved and recorded, its result not yet written), after-result.
/// DIFFUSION_TEST_KILL=r:random:ms kills it ms milliseconds after its first Invoke-Diffusion started.</para>
/// <para>DIFFUSION_TEST_LATE_OUTPUT=r (read in the parent): the output and errors of worker r are handed on only after
/// its end has been, as from a slow connection.</para>
/// </summary>
internal static class WorkerTestHooks
{
    public const string KillVariable = "DIFFUSION_TEST_KILL";
    public const string LateOutputVariable = "DIFFUSION_TEST_LATE_OUTPUT";
    public const string BeforeSave = "before-save", AfterSave = "after-save", BeforeResult = "before-result", AfterResult = "after-result";
    private static readonly Dictionary<string, int> Reached = new(StringComparer.Ordinal);
    private static Timer? _timer;

    private static (string Point, int Count)? KillRequest()
    {
        var text = Environment.GetEnvironmentVariable(KillVariable);
        if (string.IsNullOrEmpty(text)) return null;
        var parts = text.Split(':', StringSplitOptions.TrimEntries);
        if (parts.Length < 2 || parts[0] != Environment.GetEnvironmentVariable("RANK")) return null;
        int count = parts.Length > 2 && int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 1;
        return (parts[1], count);
    }

    /// <summary>A point of the worker's work: kills the process when the hook names it (and this is its n-th time).</summary>
    public static void At(string point)
    {
        if (KillRequest() is not { } kill || kill.Point != point) return;
        lock (Reached)
        {
            Reached[point] = Reached.GetValueOrDefault(point) + 1;
            if (Reached[point] != kill.Count) return;
        }
        Die();
    }

    /// <summary>Starts the random-moment kill (once per process).</summary>
    public static void Arm()
    {
        if (KillRequest() is not { Point: "random", Count: var milliseconds }) return;
        lock (Reached) _timer ??= new Timer(_ => Die(), null, milliseconds, Timeout.Infinite);
    }

    private static void Die()
    {
        using var self = Process.GetCurrentProcess();
        self.Kill();
    }

    /// <summary>True when the parent is to hand on this worker's output and errors only after its end.</summary>
    public static bool HoldsOutput(int rank) =>
        Environment.GetEnvironmentVariable(LateOutputVariable) == rank.ToString(CultureInfo.InvariantCulture);
}
