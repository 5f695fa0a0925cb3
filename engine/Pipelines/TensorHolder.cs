using Diffusion.Engine.Devices;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// Base of the objects that carry tensors through the PowerShell pipeline (embeddings, latents). Their memory is
/// counted in <see cref="MemoryLedger"/> and freed on Dispose, or by Clear-DiffusionMemory once nothing refers to them.
/// </summary>
public abstract class TensorHolder : IDisposable
{
    private readonly List<(string Device, long Bytes)> _counted = new();
    private bool _disposed;

    protected Tensor Track(Tensor t)
    {
        t = t.detach().DetachFromDisposeScope();
        var bytes = t.numel() * t.element_size();
        var device = DeviceCatalog.Name(t.device);
        MemoryLedger.Add(device, bytes);
        _counted.Add((device, bytes));
        return t;
    }

    protected abstract IEnumerable<Tensor?> OwnedTensors();

    public bool IsDisposed => _disposed;

    protected void ThrowIfDisposed()
    {
        if (_disposed)
            throw new DiffusionException("ObjectDisposed", DiffusionErrorKind.InvalidOperation,
                $"This {GetType().Name} was freed (Remove-DiffusionPipeline / Clear-DiffusionMemory / Dispose()). Produce it again.", GetType().Name);
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    private void Dispose(bool disposing)
    {
        if (_disposed) return;
        _disposed = true;
        if (disposing)
            foreach (var t in OwnedTensors()) t?.Dispose();
        foreach (var (device, bytes) in _counted) MemoryLedger.Remove(device, bytes);
    }

    ~TensorHolder() => Dispose(false);
}
