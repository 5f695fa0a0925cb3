using System.Management.Automation;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>
/// One Write-Progress view for a parallel run: an overall bar, and under it one bar per rank that shows what the
/// worker's own progress records say (its outermost activity's percentage, the status of every active one).
/// </summary>
internal sealed class ParallelProgress
{
    private const int OverallId = 7100;
    private readonly ProgressRecord _overall;
    private readonly Dictionary<int, ProgressRecord> _bars = new();
    private readonly Dictionary<int, SortedDictionary<int, ProgressRecord>> _active = new();

    public ParallelProgress(string activity, IEnumerable<WorkerProcess> workers)
    {
        _overall = new ProgressRecord(OverallId, activity, "starting workers");
        foreach (var w in workers)
        {
            _bars[w.Rank] = new ProgressRecord(OverallId + 1 + w.Rank, $"Rank {w.Rank} ({w.DeviceLabel})", "starting") { ParentActivityId = OverallId };
            _active[w.Rank] = new SortedDictionary<int, ProgressRecord>();
        }
    }

    public ProgressRecord Overall(string status, int percent)
    {
        _overall.StatusDescription = status;
        _overall.PercentComplete = Math.Clamp(percent, 0, 100);
        return _overall;
    }

    /// <summary>The rank's bar after one of its worker's progress records.</summary>
    public ProgressRecord FromWorker(WorkerProcess worker, ProgressRecord record, string? prefix = null)
    {
        var active = _active[worker.Rank];
        if (record.RecordType == ProgressRecordType.Completed) active.Remove(record.ActivityId);
        else active[record.ActivityId] = record;
        var bar = _bars[worker.Rank];
        var parts = active.Values.Select(r => string.IsNullOrEmpty(r.StatusDescription) ? r.Activity : $"{r.Activity}: {r.StatusDescription}");
        bar.StatusDescription = Join(prefix, string.Join(" · ", parts), "running");
        // The outermost activity with a percentage; between activities the bar keeps where it was.
        bar.PercentComplete = active.Values.Select(r => r.PercentComplete).FirstOrDefault(p => p >= 0, bar.PercentComplete);
        return bar;
    }

    /// <summary>The rank's bar with a status of the run's own (starting, done, failed).</summary>
    public ProgressRecord Rank(WorkerProcess worker, string status, int percent = -1)
    {
        _active[worker.Rank].Clear();
        var bar = _bars[worker.Rank];
        bar.StatusDescription = status;
        bar.PercentComplete = percent;
        return bar;
    }

    /// <summary>Every bar marked completed, the ranks' first.</summary>
    public IEnumerable<ProgressRecord> Completed()
    {
        foreach (var bar in _bars.Values.Append(_overall))
        {
            bar.RecordType = ProgressRecordType.Completed;
            yield return bar;
        }
    }

    private static string Join(string? prefix, string text, string empty) =>
        (prefix, text.Length) switch
        {
            (null, 0) => empty,
            (null, _) => text,
            (_, 0) => prefix,
            _ => $"{prefix} · {text}",
        };
}
