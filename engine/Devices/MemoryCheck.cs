using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Devices;

/// <summary>
/// Refuses up front what cannot fit, instead of growing until the OS kills the process: a model whose weights, or a
/// run whose latents and activations (ActivationEstimator's figures), need more than the device has. On the CPU the
/// bound is the memory the OS says is available (MemAvailable); on a GPU it is the device's total memory, because
/// cudaMemGetInfo's free figure leaves out what libtorch's caching allocator holds for reuse.
/// </summary>
public static class MemoryCheck
{
    public static void RequireRoom(Device device, long bytes, string what, string fix)
    {
        var (total, free) = DeviceCatalog.Memory(device);
        long? room = device.type == DeviceType.CUDA ? total : free;
        if (room is not long available || bytes <= available) return;
        var name = DeviceCatalog.Name(device);
        throw new DiffusionException("InsufficientMemory", DiffusionErrorKind.ResourceUnavailable,
            $"{what} needs about {MemorySize.Format(bytes)} on {name}, which has {MemorySize.Format(available)} " +
            $"{(device.type == DeviceType.CUDA ? "in all" : "available")}. {fix}", name);
    }
}
