namespace Diffusion.Engine.IO;

/// <summary>
/// The cancellation of the load running on this thread (Ctrl+C in New-DiffusionPipeline), checked between tensors:
/// a stopped load ends after the tensor it is reading, and the loader frees everything built so far. Per thread, as
/// <see cref="Models.Construction"/> is, so loads on other threads are not affected.
/// </summary>
public static class LoadCancellation
{
    [ThreadStatic] private static CancellationToken _token;

    /// <summary>Until disposed, loads on this thread stop when <paramref name="token"/> is cancelled.</summary>
    public static IDisposable On(CancellationToken token)
    {
        var restore = new Scope(_token);
        _token = token;
        return restore;
    }

    /// <summary>Throws OperationCanceledException when this thread's load was stopped.</summary>
    public static void ThrowIfStopped() => _token.ThrowIfCancellationRequested();

    private sealed class Scope(CancellationToken previous) : IDisposable
    {
        public void Dispose() => _token = previous;
    }
}
