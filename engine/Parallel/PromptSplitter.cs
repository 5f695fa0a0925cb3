namespace Diffusion.Engine.Parallel;

/// <summary>One item of a process's share: where it sits in the whole input, and whether it only pads the share.</summary>
/// <param name="Index">Its position in the whole input (0-based). A padding item repeats the input's last item, so its index is N-1.</param>
/// <param name="IsPadding">True for the copies that make every share the same length: drop them when gathering results.</param>
public readonly record struct ShareItem(int Index, bool IsPadding);

/// <summary>The part of N items one process takes: a contiguous slice, plus padding copies of the last item.</summary>
public sealed record ProcessShare(int ProcessIndex, int NumProcesses, int TotalCount, int Start, int Count, int PaddingCount)
{
    /// <summary>The slice's items in order, then the padding items.</summary>
    public IReadOnlyList<ShareItem> Items => Enumerable.Range(Start, Count).Select(i => new ShareItem(i, false))
        .Concat(Enumerable.Repeat(new ShareItem(TotalCount - 1, true), PaddingCount)).ToList();
}

/// <summary>
/// accelerate's <c>PartialState.split_between_processes</c> (accelerate/state.py): with N items and P processes,
/// <c>q, r = divmod(N, P)</c>; process p takes the contiguous slice starting at <c>p*q + min(p, r)</c>, of
/// <c>q + 1</c> items for the first r processes and q for the others. With padding, a process with fewer than
/// <c>q + (r &gt; 0 ? 1 : 0)</c> items is filled up with copies of the input's last item (<c>inputs[-1]</c>), so
/// every process has the same count (a process past the end of a short input gets one copy). Unlike accelerate, each
/// item says whether it is padding, so gathering never returns duplicates. An empty input gives every process nothing.
/// </summary>
public static class PromptSplitter
{
    /// <summary>The share of process <paramref name="processIndex"/> of <paramref name="numProcesses"/> for <paramref name="count"/> items.</summary>
    public static ProcessShare Share(int count, int processIndex, int numProcesses, bool applyPadding)
    {
        CheckProcess(processIndex, numProcesses);
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "The number of items cannot be negative.");
        int perProcess = Math.DivRem(count, numProcesses, out int extras);
        int start = processIndex * perProcess + Math.Min(processIndex, extras);
        int taken = perProcess + (processIndex < extras ? 1 : 0);
        int target = perProcess + (extras > 0 ? 1 : 0);
        int padding = applyPadding && count > 0 ? target - taken : 0;
        return new ProcessShare(processIndex, numProcesses, count, start, taken, padding);
    }

    /// <summary>Every process's share, in process order.</summary>
    public static IReadOnlyList<ProcessShare> AllShares(int count, int numProcesses, bool applyPadding)
    {
        CheckProcess(0, numProcesses);
        return Enumerable.Range(0, numProcesses).Select(p => Share(count, p, numProcesses, applyPadding)).ToList();
    }

    /// <summary>
    /// The common length of a dictionary's lists (accelerate splits every value of a dict with the same indices);
    /// an error naming the keys when the lengths differ.
    /// </summary>
    public static int CommonLength(IReadOnlyList<KeyValuePair<string, int>> lengths)
    {
        if (lengths.Count == 0) return 0;
        var first = lengths[0];
        var odd = lengths.FirstOrDefault(l => l.Value != first.Value);
        if (odd.Key is not null)
            throw new DiffusionException("SplitLengthMismatch", DiffusionErrorKind.InvalidArgument,
                $"Every list of the hashtable must have the same number of items to be split alike: '{first.Key}' has {first.Value}, '{odd.Key}' has {odd.Value}. " +
                "Give lists of equal length (a single value counts as a list of one).", odd.Key);
        return first.Value;
    }

    private static void CheckProcess(int processIndex, int numProcesses)
    {
        if (numProcesses < 1)
            throw new DiffusionException("SplitProcessCountInvalid", DiffusionErrorKind.InvalidArgument,
                $"-NumProcesses {numProcesses}: there must be at least 1 process.", "NumProcesses");
        if (processIndex < 0 || processIndex >= numProcesses)
            throw new DiffusionException("SplitProcessIndexInvalid", DiffusionErrorKind.InvalidArgument,
                $"-ProcessIndex {processIndex} is outside 0..{numProcesses - 1} for {numProcesses} process(es).", "ProcessIndex");
    }
}
