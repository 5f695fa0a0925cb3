using System.Runtime.InteropServices;

namespace Diffusion.Engine;

/// <summary>
/// libtorch's errors (TorchSharp raises them as <see cref="ExternalException"/> with c10's message and C++ stack) and
/// allocation failures as <see cref="DiffusionException"/>s a user can act on: a stable id (OutOfMemory, NativeError),
/// the stage, the first line of the native message, and no C++ frames.
/// </summary>
public static class NativeFailure
{
    public static bool IsNative(Exception e) => e is ExternalException or OutOfMemoryException or InsufficientExecutionStackException;

    public static DiffusionException From(Exception e, string stage)
    {
        var line = FirstLine(e.Message);
        if (IsOutOfMemory(e, line))
            return new DiffusionException("OutOfMemory", DiffusionErrorKind.ResourceUnavailable,
                $"{stage} ran out of memory: {line} Use a smaller -Height/-Width or -BatchSize, a smaller -DType (float16, bfloat16), " +
                "or spread the model with -DeviceMap or -Offload.", stage, e);
        return new DiffusionException("NativeError", DiffusionErrorKind.InvalidOperation,
            $"{stage} failed in libtorch: {line} This usually means the inputs do not fit the model (an embedding or latent " +
            "made by another model, or a damaged model file).", stage, e);
    }

    /// <summary>Runs <paramref name="action"/>, turning native failures into <see cref="From"/>'s errors.</summary>
    public static T Guard<T>(string stage, Func<T> action)
    {
        try { return action(); }
        catch (Exception e) when (IsNative(e)) { throw From(e, stage); }
    }

    /// <summary>Enumerates <paramref name="items"/>, turning native failures during each step into <see cref="From"/>'s errors.</summary>
    public static IEnumerable<T> Guard<T>(string stage, IEnumerable<T> items)
    {
        using var enumerator = items.GetEnumerator();
        while (true)
        {
            bool more;
            try { more = enumerator.MoveNext(); }
            catch (Exception e) when (IsNative(e)) { throw From(e, stage); }
            if (!more) yield break;
            yield return enumerator.Current;
        }
    }

    private static bool IsOutOfMemory(Exception e, string line) =>
        e is OutOfMemoryException
        || line.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
        || line.Contains("can't allocate memory", StringComparison.OrdinalIgnoreCase)
        || line.Contains("Cannot allocate memory", StringComparison.OrdinalIgnoreCase);

    /// <summary>c10's message up to its "Exception raised from" / stack part, on one line, ending with a full stop.</summary>
    private static string FirstLine(string message)
    {
        var first = message.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? "unknown error";
        int raised = first.IndexOf("Exception raised from", StringComparison.Ordinal);
        if (raised > 0) first = first[..raised].Trim();
        return first.EndsWith('.') ? first : first + ".";
    }
}
