using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// The sigma-space helpers the Euler and DPM-Solver schedulers share (diffusers copies them into each):
/// training sigmas from <c>alphas_cumprod</c>, sigma to fractional timestep, Karras and exponential spacings.
/// </summary>
internal static class SigmaSchedules
{
    /// <summary><c>((1 - alphas_cumprod) / alphas_cumprod) ** 0.5</c> in float32 torch ops, index = training timestep.</summary>
    public static float[] TrainingSigmas(float[] alphasCumprod)
    {
        using var scope = NewDisposeScope();
        var ac = tensor(alphasCumprod);
        return ((1 - ac) / ac).pow(0.5).data<float>().ToArray();
    }

    /// <summary><c>np.log</c> of a float32 array (float32 result).</summary>
    public static float[] Log(float[] values) => values.Select(v => MathF.Log(v)).ToArray();

    /// <summary>
    /// diffusers' <c>_sigma_to_t</c>: the fractional training timestep whose log-sigma is <paramref name="sigma"/>'s,
    /// interpolating linearly in log space between the neighbouring entries of <paramref name="logSigmas"/>.
    /// </summary>
    public static double SigmaToT(double sigma, float[] logSigmas)
    {
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        // low_idx = cumsum(dists >= 0).argmax().clip(max=len - 2): the first index where the running count peaks.
        int lowIdx = 0, count = 0, best = -1;
        for (int i = 0; i < logSigmas.Length; i++)
        {
            if (logSigma - logSigmas[i] >= 0) count++;
            if (count > best) { best = count; lowIdx = i; }
        }
        lowIdx = Math.Min(lowIdx, logSigmas.Length - 2);
        int highIdx = lowIdx + 1;
        float low = logSigmas[lowIdx], high = logSigmas[highIdx];
        double w = (low - logSigma) / (double)(low - high); // low - high is a float32 difference, as in numpy
        w = Math.Clamp(w, 0, 1);
        return (1 - w) * lowIdx + w * highIdx;
    }

    /// <summary>diffusers' <c>_convert_to_karras</c> (Karras et al. 2022, rho = 7), from sigma_max down to sigma_min.</summary>
    public static double[] Karras(double sigmaMin, double sigmaMax, int numInferenceSteps)
    {
        const double rho = 7.0;
        var ramp = Numpy.Linspace(0, 1, numInferenceSteps);
        double minInvRho = Math.Pow(sigmaMin, 1 / rho), maxInvRho = Math.Pow(sigmaMax, 1 / rho);
        return ramp.Select(r => Math.Pow(maxInvRho + r * (minInvRho - maxInvRho), rho)).ToArray();
    }

    /// <summary>diffusers' <c>_convert_to_exponential</c>: sigmas evenly spaced in log space.</summary>
    public static double[] Exponential(double sigmaMin, double sigmaMax, int numInferenceSteps) =>
        Numpy.Linspace(Math.Log(sigmaMax), Math.Log(sigmaMin), numInferenceSteps).Select(Math.Exp).ToArray();

    /// <summary>
    /// The discrete timesteps of Euler-type schedulers for <paramref name="spacing"/> ("linspace", "leading", "trailing"),
    /// as diffusers' EulerDiscrete/EulerAncestralDiscrete set_timesteps compute them (numpy float64, then float32), descending.
    /// </summary>
    public static float[] SpacedTimesteps(string spacing, int trainSteps, int numInferenceSteps, int stepsOffset, string scheduler) => spacing switch
    {
        "linspace" => Numpy.Linspace(0, trainSteps - 1, numInferenceSteps).Select(t => (float)t).Reverse().ToArray(),
        "leading" => Enumerable.Range(0, numInferenceSteps).Select(i => (float)(i * (trainSteps / numInferenceSteps)) + stepsOffset).Reverse().ToArray(),
        "trailing" => Numpy.Arange(trainSteps, 0, -(double)trainSteps / numInferenceSteps).Select(t => (float)Numpy.Round(t) - 1).ToArray(),
        _ => throw SchedulerErrors.TimestepSpacingNotSupported(spacing, scheduler),
    };

    /// <summary>init_noise_sigma of sigma-based schedulers: the largest sigma, or sqrt(max^2 + 1) for "leading" spacing.</summary>
    public static float InitNoiseSigma(IEnumerable<float> sigmas, string spacing)
    {
        float maxSigma = sigmas.Max();
        return spacing is "linspace" or "trailing" ? maxSigma : MathF.Sqrt(maxSigma * maxSigma + 1);
    }
}
