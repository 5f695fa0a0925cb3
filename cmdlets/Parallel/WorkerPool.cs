using System.Collections.Concurrent;
using Diffusion.Engine.Parallel;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>
/// The worker processes of one parallel run. Workers start together; their events queue up here and are taken on the
/// cmdlet's thread (only it may write to the pipeline). <see cref="KillAll"/> (Ctrl+C) and <see cref="Dispose"/> leave
/// no process behind.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    private readonly BlockingCollection<WorkerEvent> _events = new();
    private volatile bool _killed;

    public IReadOnlyList<WorkerProcess> Workers { get; }

    /// <summary>Prepares the workers; nothing starts before <see cref="Open"/>.</summary>
    public WorkerPool(IReadOnlyList<WorkerLaunch> launches)
    {
        Workers = launches.Select(l => new WorkerProcess(l, Post)).ToList();
    }

    private void Post(WorkerEvent e)
    {
        try { _events.Add(e); }
        catch (InvalidOperationException) { } // the run is over (disposed): late news from a killed worker
    }

    /// <summary>
    /// Starts every worker at once, imports the module in each and sets its location to <paramref name="location"/>
    /// (the caller's, as Start-Job does); workers that fail to start have <see cref="WorkerProcess.Death"/> set.
    /// </summary>
    public void Open(string modulePath, string? location) =>
        System.Threading.Tasks.Parallel.ForEach(Workers, new ParallelOptions { MaxDegreeOfParallelism = Workers.Count },
            w => { if (!_killed) w.Open(modulePath, location); });

    /// <summary>The next event, or null after <paramref name="milliseconds"/> without one.</summary>
    public WorkerEvent? Next(int milliseconds) => _events.TryTake(out var e, milliseconds) ? e : null;

    /// <summary>Kills every worker and its children now (from any thread).</summary>
    public void KillAll()
    {
        _killed = true;
        foreach (var w in Workers) w.Kill();
    }

    public void Dispose()
    {
        System.Threading.Tasks.Parallel.ForEach(Workers, w => w.Dispose());
        _events.CompleteAdding();
    }
}
