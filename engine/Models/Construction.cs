using static TorchSharp.torch;

namespace Diffusion.Engine.Models;

/// <summary>
/// Where the models' constructors create their parameters: every layer the engine builds names this device and dtype
/// (null: TorchSharp's defaults). It is per thread, unlike torch.set_default_device, which is process-wide in TorchSharp
/// and would send another thread's tensors to the meta device while a model is being built.
/// </summary>
public static class Construction
{
    [ThreadStatic] private static Device? _device;
    [ThreadStatic] private static ScalarType? _dtype;

    public static Device? Device => _device;
    public static ScalarType? DType => _dtype;

    /// <summary>Until disposed, models built on this thread create their tensors on <paramref name="device"/> in <paramref name="dtype"/>.</summary>
    public static IDisposable On(Device? device, ScalarType? dtype = null)
    {
        var restore = new Scope(_device, _dtype);
        _device = device;
        _dtype = dtype;
        return restore;
    }

    private sealed class Scope(Device? device, ScalarType? dtype) : IDisposable
    {
        public void Dispose()
        {
            _device = device;
            _dtype = dtype;
        }
    }

    /// <summary>
    /// Runs a model's constructor with the engine's construction device set to meta (on this thread only): shapes and dtypes, no memory, no random initial weights.
    /// </summary>
    public static T OnMeta<T>(Func<T> construct) where T : nn.Module
    {
        using (On(TorchSharp.torch.META)) return construct();
    }

}
