using TorchSharp;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>libtorch failures become DiffusionExceptions with a stable id, the stage and c10's first line only.</summary>
public sealed class NativeFailureTests
{
    [Fact]
    public void AnAllocationLibtorchCannotMakeIsOutOfMemory()
    {
        var error = Assert.Throws<DiffusionException>(() => NativeFailure.Guard("Decoding latents", () => torch.empty(1L << 50, torch.ScalarType.Float32)));
        Assert.Equal("OutOfMemory", error.ErrorId);
        Assert.Equal(DiffusionErrorKind.ResourceUnavailable, error.Kind);
        Assert.StartsWith("Decoding latents ran out of memory: ", error.Message);
        Assert.DoesNotContain("frame #", error.Message);
        Assert.DoesNotContain("\n", error.Message);
    }

    [Fact]
    public void OtherLibtorchErrorsAreNativeErrorsOfTheStage()
    {
        using var a = torch.zeros(2, 3);
        using var b = torch.zeros(4, 5);
        var error = Assert.Throws<DiffusionException>(() => NativeFailure.Guard("Denoising", () => torch.cat([a, b], 0)));
        Assert.Equal("NativeError", error.ErrorId);
        Assert.Matches("^Denoising failed in libtorch: Sizes of tensors must match", error.Message);
        Assert.DoesNotContain("Exception raised from", error.Message);
    }

    [Fact]
    public void FailuresWhileEnumeratingStepsAreTranslatedToo()
    {
        static IEnumerable<int> Steps()
        {
            yield return 1;
            using var bad = torch.cat([torch.zeros(2, 3), torch.zeros(4, 5)], 0);
            yield return 2;
        }
        var seen = new List<int>();
        var error = Assert.Throws<DiffusionException>(() => { foreach (var s in NativeFailure.Guard("Denoising", Steps())) seen.Add(s); });
        Assert.Equal([1], seen);
        Assert.Equal("NativeError", error.ErrorId);
    }
}
