using Diffusion.Bench;
using TorchSharp;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>The real-architecture benchmark's code path, run on the tiny fixture configs on CPU (no timing asserted).</summary>
public class ArchitectureBenchmarkTests
{
    [Fact]
    public void RunsEveryRowOnTheTinyConfigs()
    {
        var profile = ArchitectureProfile.FromFolders(Fixtures.PathOf("sd-tiny"), Fixtures.PathOf("flux-tiny"));
        var rows = ArchitectureBenchmark.Run(profile, torch.CPU, repeat: 1).ToList();
        Assert.Equal(
            ["UNet step", "CLIP encode", "VAE decode (SD)", "whole image (SD)", "transformer step", "T5 encode", "VAE decode (FLUX)", "whole image (FLUX)"],
            rows.Select(r => r.Row));
        Assert.All(rows, r => Assert.True(r.Milliseconds > 0, r.Row));
        Assert.All(rows, r => Assert.Null(r.ReferenceMilliseconds)); // references are H100 numbers: CUDA and real configs only
    }

    [Fact]
    public void RealProfileHasTheReleasedArchitectures()
    {
        var p = ArchitectureProfile.Real();
        Assert.Equal(768, p.Clip.HiddenSize);
        Assert.Equal(4096, p.T5.DModel);
        Assert.Equal(19, p.Flux.NumLayers);
        Assert.Equal(38, p.Flux.NumSingleLayers);
        Assert.Equal(16, p.FluxVae.LatentChannels);
        Assert.Equal(4096, (p.FluxSize / 16) * (p.FluxSize / 16)); // 1024x1024 -> 4096 image tokens
    }
}
