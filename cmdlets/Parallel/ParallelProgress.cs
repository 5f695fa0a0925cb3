using System.Management.Automation;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>
/// One Write-Progress view for a parallel run: an overall bar, and under it one bar per rank (ParentActivityId the
/// overall one), labelled with the rank's device. Invoke-Diffusion's workers report each step (<see cref="Step"/>):
/// the bar shows the step first (so a narrow view does not cut it off) and the rank's images done; other scripts'
/// workers show what their own progress records say (<see cref="FromWorker"/>). Every call returns a new record:
/// a host or a caller that keeps records (PowerShell.Streams.Progress) sees each state as it was.
/// </summary>
internal sealed class ParallelProgress
{
    private const int OverallId = 7100;
    private readonly string _activity;
    private string _overallStatus = "starting workers";
    private int _overallPercent;
    private readonly Dictionary<int, RankBar> _bars = new();

    private sealed class RankBar(string? device)
    {
        public string? Device = device;
        public string Status = "starting";
        public int Percent = -1;
        /// <summary>How far the image in progress is (0 to 1), for the overall bar.</summary>
        public double InFlight;
        public readonly SortedDictionary<int, ProgressRecord> Active = new();
    }

    public ParallelProgress(string activity, IEnumerable<WorkerProcess> workers)
    {
        _activity = activity;
        foreach (var w in workers) _bars[w.Rank] = new RankBar(w.Device);
    }

    /// <summary>The fraction of an image the ranks have in progress, summed (images done are counted by the caller).</summary>
    public double InFlight => _bars.Values.Sum(b => b.InFlight);

    public ProgressRecord Overall(string status, int percent)
    {
        _overallStatus = status;
        _overallPercent = Math.Clamp(percent, 0, 100);
        return OverallRecord();
    }

    /// <summary>The rank's bar after one of its worker's progress records.</summary>
    public ProgressRecord FromWorker(WorkerProcess worker, ProgressRecord record, string? prefix = null)
    {
        var bar = _bars[worker.Rank];
        if (record.RecordType == ProgressRecordType.Completed) bar.Active.Remove(record.ActivityId);
        else bar.Active[record.ActivityId] = record;
        var parts = bar.Active.Values.Select(r => string.IsNullOrEmpty(r.StatusDescription) ? r.Activity : $"{r.Activity}: {r.StatusDescription}");
        bar.Status = Join(prefix, string.Join(" · ", parts), "running");
        // The outermost activity with a percentage; between activities the bar keeps where it was.
        bar.Percent = bar.Active.Values.Select(r => r.PercentComplete).FirstOrDefault(p => p >= 0, bar.Percent);
        return RankRecord(worker.Rank);
    }

    /// <summary>
    /// The rank's bar after its worker finished a denoising step: step i/N (the steps asked for), the rank's images
    /// done of its share, its percentage counting the image in progress; the device as the worker resolved it.
    /// </summary>
    public ProgressRecord Step(WorkerProcess worker, WorkerStepReport step, int imagesDone, int images)
    {
        var bar = _bars[worker.Rank];
        bar.Active.Clear();
        if (step.Device.Length > 0) SetDevice(worker, step.Device);
        bar.InFlight = step.Steps > 0 ? Math.Clamp((double)step.Step / step.Steps, 0, 1) : 0;
        bar.Status = $"step {step.Step}/{step.Steps} · {imagesDone}/{images} images";
        bar.Percent = images > 0 ? (int)Math.Clamp(100 * (imagesDone + bar.InFlight) / images, 0, 100) : -1;
        return RankRecord(worker.Rank);
    }

    /// <summary>
    /// The device a worker resolved (cpu, cuda:0) labels its bar, unless the user named the rank's device (-Device
    /// cuda:1: the worker sees that GPU as cuda:0). Also kept on the worker, for its errors.
    /// </summary>
    public ProgressRecord SetDevice(WorkerProcess worker, string device)
    {
        worker.ResolvedDevice ??= device;
        _bars[worker.Rank].Device ??= device;
        return RankRecord(worker.Rank);
    }

    /// <summary>The rank's bar with a status of the run's own (starting, done, failed).</summary>
    public ProgressRecord Rank(WorkerProcess worker, string status, int percent = -1)
    {
        var bar = _bars[worker.Rank];
        bar.Active.Clear();
        bar.InFlight = 0;
        bar.Status = status;
        bar.Percent = percent;
        return RankRecord(worker.Rank);
    }

    /// <summary>Every bar marked completed, the ranks' first.</summary>
    public IEnumerable<ProgressRecord> Completed()
    {
        foreach (var rank in _bars.Keys)
        {
            var bar = RankRecord(rank);
            bar.RecordType = ProgressRecordType.Completed;
            yield return bar;
        }
        var overall = OverallRecord();
        overall.RecordType = ProgressRecordType.Completed;
        yield return overall;
    }

    private ProgressRecord OverallRecord() => new(OverallId, _activity, _overallStatus) { PercentComplete = _overallPercent };

    private ProgressRecord RankRecord(int rank)
    {
        var bar = _bars[rank];
        var label = bar.Device is null ? $"Rank {rank}" : $"Rank {rank} ({bar.Device})";
        return new ProgressRecord(OverallId + 1 + rank, label, bar.Status) { ParentActivityId = OverallId, PercentComplete = bar.Percent };
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
