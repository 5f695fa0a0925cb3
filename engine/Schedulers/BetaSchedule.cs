using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// The DDPM noise schedule the discrete-time schedulers share (diffusers repeats it in each scheduler's __init__):
/// betas from the config, then <c>alphas_cumprod = cumprod(1 - betas)</c>, all float32 torch ops as in diffusers.
/// </summary>
internal static class BetaSchedule
{
    /// <summary>diffusers' <c>alphas_cumprod</c> for <paramref name="config"/>.</summary>
    public static float[] AlphasCumprod(SchedulerConfig config, string schedulerName, bool rescaleBetasZeroSnr)
    {
        using var scope = NewDisposeScope();
        var betas = Betas(config, schedulerName);
        if (rescaleBetasZeroSnr) betas = RescaleZeroTerminalSnr(betas);
        var alphas = 1.0 - betas;
        return cumprod(alphas, 0).data<float>().ToArray();
    }

    private static Tensor Betas(SchedulerConfig config, string schedulerName)
    {
        int n = config.NumTrainTimesteps;
        if (config.TrainedBetas is { } trained) return tensor(trained, ScalarType.Float32);
        return config.BetaSchedule switch
        {
            "linear" => linspace(config.BetaStart, config.BetaEnd, n, ScalarType.Float32),
            "scaled_linear" => linspace(Math.Pow(config.BetaStart, 0.5), Math.Pow(config.BetaEnd, 0.5), n, ScalarType.Float32).pow(2),
            "squaredcos_cap_v2" => BetasForAlphaBar(n),
            _ => throw new DiffusionException("SchedulerBetaScheduleNotSupported", DiffusionErrorKind.NotSupported,
                $"beta_schedule '{config.BetaSchedule}' is not supported by {schedulerName}; use 'linear', 'scaled_linear' or 'squaredcos_cap_v2'.",
                "beta_schedule"),
        };
    }

    /// <summary>diffusers' <c>betas_for_alpha_bar</c> with the cosine transform (Python float64, then float32).</summary>
    private static Tensor BetasForAlphaBar(int numDiffusionTimesteps, double maxBeta = 0.999)
    {
        static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        var betas = new float[numDiffusionTimesteps];
        for (int i = 0; i < numDiffusionTimesteps; i++)
        {
            double t1 = (double)i / numDiffusionTimesteps, t2 = (double)(i + 1) / numDiffusionTimesteps;
            betas[i] = (float)Math.Min(1 - AlphaBar(t2) / AlphaBar(t1), maxBeta);
        }
        return tensor(betas);
    }

    /// <summary>diffusers' <c>rescale_zero_terminal_snr</c> (https://huggingface.co/papers/2305.08891, Algorithm 1).</summary>
    private static Tensor RescaleZeroTerminalSnr(Tensor betas)
    {
        var alphas = 1.0 - betas;
        var alphasBarSqrt = cumprod(alphas, 0).sqrt();
        var first = alphasBarSqrt[0].clone();
        var last = alphasBarSqrt[-1].clone();
        alphasBarSqrt = (alphasBarSqrt - last) * (first / (first - last));
        var alphasBar = alphasBarSqrt.pow(2);
        var rescaledAlphas = cat([alphasBar[..1], alphasBar[1..] / alphasBar[..^1]], 0);
        return 1 - rescaledAlphas;
    }
}
