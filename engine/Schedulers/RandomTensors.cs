using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>diffusers' <c>randn_tensor</c> for one generator: draw on the generator's device (CPU generators stay on the CPU) and move.</summary>
internal static class RandomTensors
{
    public static Tensor Randn(long[] shape, ScalarType dtype, Device device, Generator? generator)
    {
        var drawDevice = generator?.device ?? device;
        return randn(shape, dtype, drawDevice, generator: generator).to(device);
    }
}
