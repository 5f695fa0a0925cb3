using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// diffusers' <c>EulerDiscreteScheduler</c> (Karras et al. 2022, Algorithm 2) with s_churn = 0 (no noise added):
/// the deterministic Euler method in sigma space, optionally on Karras or exponential sigma spacings.
/// </summary>
public sealed class EulerDiscreteScheduler : IScheduler
{
    private readonly float[] _alphasCumprod;
    private readonly float[] _trainingSigmas;
    private readonly string _timestepSpacing;
    private float[] _sigmas;

    public string Name => "EulerDiscreteScheduler";
    public SchedulerConfig Config { get; }
    public float[] Timesteps { get; private set; } = [];
    public int Order => 1;

    /// <summary>The sigma of each timestep, plus the final one (0 or sigma_min).</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    public EulerDiscreteScheduler(SchedulerConfig config)
    {
        Config = config;
        if (config.PredictionType is not ("epsilon" or "v_prediction" or "sample" or "original_sample"))
            throw new DiffusionException("SchedulerPredictionTypeNotSupported", DiffusionErrorKind.NotSupported,
                $"EulerDiscreteScheduler supports prediction_type 'epsilon', 'v_prediction' or 'sample', not '{config.PredictionType}'.", "prediction_type");
        if (config.UseBetaSigmas)
            throw new DiffusionException("SchedulerBetaSigmasNotSupported", DiffusionErrorKind.NotSupported,
                "use_beta_sigmas (scipy's beta distribution spacing) is not supported; use use_karras_sigmas or use_exponential_sigmas.", "use_beta_sigmas");
        if (config.UseKarrasSigmas && config.UseExponentialSigmas)
            throw new DiffusionException("SchedulerSigmaSpacingConflict", DiffusionErrorKind.InvalidArgument,
                "Only one of use_karras_sigmas and use_exponential_sigmas can be set.", "use_karras_sigmas");
        if (config.TimestepType is not "discrete")
            throw new DiffusionException("SchedulerTimestepTypeNotSupported", DiffusionErrorKind.NotSupported,
                $"EulerDiscreteScheduler supports timestep_type 'discrete', not '{config.TimestepType}'.", "timestep_type");
        if (config.InterpolationType is not ("linear" or "log_linear"))
            throw new DiffusionException("SchedulerInterpolationNotSupported", DiffusionErrorKind.NotSupported,
                $"interpolation_type '{config.InterpolationType}' is not supported; use 'linear' or 'log_linear'.", "interpolation_type");
        if (config.FinalSigmasType is not ("zero" or "sigma_min"))
            throw new DiffusionException("SchedulerFinalSigmasTypeNotSupported", DiffusionErrorKind.NotSupported,
                $"final_sigmas_type must be 'zero' or 'sigma_min', not '{config.FinalSigmasType}'.", "final_sigmas_type");
        _timestepSpacing = config.TimestepSpacing ?? "linspace";
        _alphasCumprod = BetaSchedule.AlphasCumprod(config, Name, config.RescaleBetasZeroSnr);
        if (config.RescaleBetasZeroSnr) _alphasCumprod[^1] = MathF.Pow(2, -24);
        _trainingSigmas = SigmaSchedules.TrainingSigmas(_alphasCumprod);
        // Before SetTimesteps: all training sigmas, descending, then 0 (this fixes InitNoiseSigma like diffusers' __init__).
        _sigmas = [.. Enumerable.Reverse(_trainingSigmas), 0f];
    }

    public float InitNoiseSigma => SigmaSchedules.InitNoiseSigma(_sigmas, _timestepSpacing);

    public void SetTimesteps(int numInferenceSteps, double? mu = null)
    {
        int trainSteps = Config.NumTrainTimesteps;
        float[] timesteps = SigmaSchedules.SpacedTimesteps(_timestepSpacing, trainSteps, numInferenceSteps, Config.StepsOffset, Name);

        double[] sigmas = Config.InterpolationType == "linear"
            ? timesteps.Select(t => Numpy.Interp(t, _trainingSigmas)).ToArray()
            : LogLinearSigmas(numInferenceSteps);
        double[]? spaced = Config.UseKarrasSigmas
            ? SigmaSchedules.Karras(Config.SigmaMin ?? sigmas[^1], Config.SigmaMax ?? sigmas[0], numInferenceSteps)
            : Config.UseExponentialSigmas
                ? SigmaSchedules.Exponential(Config.SigmaMin ?? sigmas[^1], Config.SigmaMax ?? sigmas[0], numInferenceSteps)
                : null;
        if (spaced is not null)
        {
            var logSigmas = SigmaSchedules.Log(_trainingSigmas);
            sigmas = spaced;
            timesteps = spaced.Select(s => (float)SigmaSchedules.SigmaToT(s, logSigmas)).ToArray();
        }

        float sigmaLast = Config.FinalSigmasType == "sigma_min" ? _trainingSigmas[0] : 0f;
        _sigmas = [.. sigmas.Select(s => (float)s), sigmaLast];
        Timesteps = timesteps;
    }

    /// <summary>interpolation_type "log_linear": <c>torch.linspace(np.log(sigmas[-1]), np.log(sigmas[0]), n + 1).exp()</c> (n + 1 sigmas, as diffusers).</summary>
    private double[] LogLinearSigmas(int numInferenceSteps)
    {
        using var scope = NewDisposeScope();
        var logSigmas = linspace(MathF.Log(_trainingSigmas[^1]), MathF.Log(_trainingSigmas[0]), numInferenceSteps + 1).exp();
        return logSigmas.data<float>().ToArray().Select(s => (double)s).ToArray();
    }

    public Tensor ScaleModelInput(Tensor sample, int stepIndex)
    {
        using var scope = NewDisposeScope();
        var sigma = tensor(_sigmas[stepIndex]);
        return (sample / (sigma.pow(2) + 1).pow(0.5)).MoveToOuterDisposeScope();
    }

    /// <summary>diffusers' <c>add_noise</c> with a begin index: x + noise * sigmas[begin_index].</summary>
    public Tensor AddNoise(Tensor original, Tensor noise, int stepIndex)
    {
        if (Timesteps.Length == 0) throw SchedulerErrors.StepBeforeSetTimesteps(Name);
        return NoiseAddition.WithSigma(_sigmas[stepIndex], original, noise);
    }

    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        sample = sample.to(ScalarType.Float32);
        // s_churn = 0, so gamma = 0 and sigma_hat = sigma * (gamma + 1) = sigma.
        var sigma = tensor(_sigmas[stepIndex]);
        var sigmaHat = sigma * 1.0;
        var predOriginalSample = Config.PredictionType switch
        {
            "epsilon" => sample - sigmaHat * modelOutput,
            "v_prediction" => modelOutput * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + sample / (sigma.pow(2) + 1),
            _ => modelOutput, // "sample" / "original_sample"
        };
        var derivative = (sample - predOriginalSample) / sigmaHat;
        var dt = tensor(_sigmas[stepIndex + 1]) - sigmaHat;
        var prevSample = sample + derivative * dt;
        return prevSample.to(modelOutput.dtype).MoveToOuterDisposeScope();
    }
}
