using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// diffusers' <c>EulerAncestralDiscreteScheduler</c>: an Euler step down to sigma_down, then fresh noise of
/// standard deviation sigma_up drawn from the run's generator (k-diffusion's <c>sample_euler_ancestral</c>).
/// </summary>
public sealed class EulerAncestralDiscreteScheduler : IScheduler
{
    private readonly float[] _trainingSigmas;
    private readonly string _timestepSpacing;
    private float[] _sigmas;

    public string Name => "EulerAncestralDiscreteScheduler";
    public SchedulerConfig Config { get; }
    public float[] Timesteps { get; private set; } = [];
    public int Order => 1;

    /// <summary>The sigma of each timestep, then 0.</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    public EulerAncestralDiscreteScheduler(SchedulerConfig config)
    {
        Config = config;
        if (config.PredictionType is not ("epsilon" or "v_prediction"))
            throw new DiffusionException("SchedulerPredictionTypeNotSupported", DiffusionErrorKind.NotSupported,
                $"EulerAncestralDiscreteScheduler supports prediction_type 'epsilon' or 'v_prediction', not '{config.PredictionType}'.", "prediction_type");
        _timestepSpacing = config.TimestepSpacing ?? "linspace";
        var alphasCumprod = BetaSchedule.AlphasCumprod(config, Name, config.RescaleBetasZeroSnr);
        if (config.RescaleBetasZeroSnr) alphasCumprod[^1] = MathF.Pow(2, -24);
        _trainingSigmas = SigmaSchedules.TrainingSigmas(alphasCumprod);
        _sigmas = [.. Enumerable.Reverse(_trainingSigmas), 0f];
    }

    public float InitNoiseSigma => SigmaSchedules.InitNoiseSigma(_sigmas, _timestepSpacing);

    public void SetTimesteps(int numInferenceSteps, double? mu = null)
    {
        int trainSteps = Config.NumTrainTimesteps;
        float[] timesteps = SigmaSchedules.SpacedTimesteps(_timestepSpacing, trainSteps, numInferenceSteps, Config.StepsOffset, Name);
        _sigmas = [.. timesteps.Select(t => (float)Numpy.Interp(t, _trainingSigmas)), 0f];
        Timesteps = timesteps;
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
        var sigma = tensor(_sigmas[stepIndex]);
        sample = sample.to(ScalarType.Float32);
        var predOriginalSample = Config.PredictionType == "epsilon"
            ? sample - sigma * modelOutput
            : modelOutput * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + sample / (sigma.pow(2) + 1);

        var sigmaFrom = tensor(_sigmas[stepIndex]);
        var sigmaTo = tensor(_sigmas[stepIndex + 1]);
        var sigmaUp = (sigmaTo.pow(2) * (sigmaFrom.pow(2) - sigmaTo.pow(2)) / sigmaFrom.pow(2)).pow(0.5);
        var sigmaDown = (sigmaTo.pow(2) - sigmaUp.pow(2)).pow(0.5);

        var derivative = (sample - predOriginalSample) / sigma;
        var dt = sigmaDown - sigma;
        var prevSample = sample + derivative * dt;
        var noise = RandomTensors.Randn(modelOutput.shape, modelOutput.dtype, modelOutput.device, generator);
        prevSample = prevSample + noise * sigmaUp;
        return prevSample.to(modelOutput.dtype).MoveToOuterDisposeScope();
    }
}
