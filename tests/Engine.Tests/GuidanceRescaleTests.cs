using Diffusion.Engine.Pipelines;
using TorchSharp;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// diffusers' rescale_noise_cfg, checked by its definition (per-image unbiased standard deviations) in float64; the
/// whole run against diffusers' reference is in StableDiffusion.Tests.ps1 (guidance-rescale-refs.json).
/// </summary>
public sealed class GuidanceRescaleTests
{
    [Fact]
    public void MixesTheGuidedPredictionRescaledToTheTextPredictionsSpread()
    {
        var generator = new torch.Generator(7, torch.CPU);
        using var text = torch.randn([2, 4, 8, 8], generator: generator);
        using var guided = torch.randn([2, 4, 8, 8], generator: generator) * 3 + 0.5;

        using var off = Diffusion.Engine.Families.StableDiffusionFamily.RescaleNoiseCfg(guided, text, 0);
        Fixtures.AssertClose(guided, off, 0, 0, "rescale 0");

        for (int image = 0; image < 2; image++)
        {
            var g = guided[image].to(torch.ScalarType.Float64).flatten().data<double>().ToArray();
            var t = text[image].to(torch.ScalarType.Float64).flatten().data<double>().ToArray();
            double factor = Std(t) / Std(g);
            using var full = Diffusion.Engine.Families.StableDiffusionFamily.RescaleNoiseCfg(guided, text, 1);
            using var mixed = Diffusion.Engine.Families.StableDiffusionFamily.RescaleNoiseCfg(guided, text, 0.7);
            var f = full[image].flatten().data<float>().ToArray();
            var m = mixed[image].flatten().data<float>().ToArray();
            for (int i = 0; i < g.Length; i++)
            {
                Assert.Equal(g[i] * factor, f[i], 1e-5);
                Assert.Equal(0.7 * g[i] * factor + 0.3 * g[i], m[i], 1e-5);
            }
            Assert.Equal(Std(t), Std(f.Select(x => (double)x).ToArray()), 1e-5);
        }
    }

    private static double Std(double[] x)
    {
        double mean = x.Average();
        return Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / (x.Length - 1));
    }
}
