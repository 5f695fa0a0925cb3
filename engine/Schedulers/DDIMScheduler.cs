using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// diffusers' <c>DDIMScheduler</c> (https://huggingface.co/papers/2010.02502) with eta = 0, the deterministic sampler
/// diffusers' pipelines run by default.
/// </summary>
public sealed class DDIMScheduler : IScheduler
{
    private readonly float[] _alphasCumprod;
    private readonly float _finalAlphaCumprod;
    private readonly string _timestepSpacing;
    private int _numInferenceSteps;

    public string Name => "DDIMScheduler";
    public SchedulerConfig Config { get; }
    public float[] Timesteps { get; private set; } = [];
    public float InitNoiseSigma => 1.0f;
    public int Order => 1;

    public DDIMScheduler(SchedulerConfig config)
    {
        Config = config;
        if (config.PredictionType is not ("epsilon" or "sample" or "v_prediction"))
            throw new DiffusionException("SchedulerPredictionTypeNotSupported", DiffusionErrorKind.NotSupported,
                $"DDIMScheduler supports prediction_type 'epsilon', 'sample' or 'v_prediction', not '{config.PredictionType}'.", "prediction_type");
        if (config.Thresholding)
            throw new DiffusionException("SchedulerThresholdingNotSupported", DiffusionErrorKind.NotSupported,
                "DDIMScheduler with thresholding=true (dynamic thresholding, for pixel-space models) is not supported; set it to false.", "thresholding");
        _timestepSpacing = config.TimestepSpacing ?? "leading";
        _alphasCumprod = BetaSchedule.AlphasCumprod(config, Name, config.RescaleBetasZeroSnr);
        _finalAlphaCumprod = config.SetAlphaToOne ?? true ? 1.0f : _alphasCumprod[0];
    }

    public void SetTimesteps(int numInferenceSteps, double? mu = null)
    {
        int trainSteps = Config.NumTrainTimesteps;
        if (numInferenceSteps > trainSteps)
            throw new DiffusionException("SchedulerTooManySteps", DiffusionErrorKind.InvalidArgument,
                $"{numInferenceSteps} inference steps is more than the {trainSteps} timesteps the model was trained with; use at most {trainSteps}.",
                "numInferenceSteps");
        _numInferenceSteps = numInferenceSteps;
        long[] timesteps = _timestepSpacing switch
        {
            "linspace" => Numpy.Linspace(0, trainSteps - 1, numInferenceSteps).Select(t => (long)Numpy.Round(t)).Reverse().ToArray(),
            "leading" => Enumerable.Range(0, numInferenceSteps).Select(i => (long)i * (trainSteps / numInferenceSteps) + Config.StepsOffset).Reverse().ToArray(),
            "trailing" => Numpy.Arange(trainSteps, 0, -(double)trainSteps / numInferenceSteps).Select(t => (long)Numpy.Round(t) - 1).ToArray(),
            _ => throw SchedulerErrors.TimestepSpacingNotSupported(_timestepSpacing, Name),
        };
        Timesteps = timesteps.Select(t => (float)t).ToArray();
    }

    public Tensor ScaleModelInput(Tensor sample, int stepIndex) => sample.alias();

    /// <summary>diffusers' <c>add_noise</c>: sqrt(alpha_cumprod[t]) x + sqrt(1 - alpha_cumprod[t]) noise, in float32 like its tensors.</summary>
    public Tensor AddNoise(Tensor original, Tensor noise, int stepIndex)
    {
        if (Timesteps.Length == 0) throw SchedulerErrors.StepBeforeSetTimesteps(Name);
        return NoiseAddition.WithAlphaCumprod(_alphasCumprod[(long)Timesteps[stepIndex]], original, noise);
    }

    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Generator? generator = null)
    {
        if (_numInferenceSteps == 0) throw SchedulerErrors.StepBeforeSetTimesteps(Name);
        using var scope = NewDisposeScope();
        long timestep = (long)Timesteps[stepIndex];
        long prevTimestep = timestep - Config.NumTrainTimesteps / _numInferenceSteps;

        var alphaProdT = tensor(_alphasCumprod[timestep]);
        var alphaProdTPrev = tensor(prevTimestep >= 0 ? _alphasCumprod[prevTimestep] : _finalAlphaCumprod);
        var betaProdT = 1 - alphaProdT;

        Tensor predOriginalSample, predEpsilon;
        switch (Config.PredictionType)
        {
            case "epsilon":
                predOriginalSample = (sample - betaProdT.pow(0.5) * modelOutput) / alphaProdT.pow(0.5);
                predEpsilon = modelOutput;
                break;
            case "sample":
                predOriginalSample = modelOutput;
                predEpsilon = (sample - alphaProdT.pow(0.5) * predOriginalSample) / betaProdT.pow(0.5);
                break;
            default: // v_prediction
                predOriginalSample = alphaProdT.pow(0.5) * sample - betaProdT.pow(0.5) * modelOutput;
                predEpsilon = alphaProdT.pow(0.5) * modelOutput + betaProdT.pow(0.5) * sample;
                break;
        }
        if (Config.ClipSample)
            predOriginalSample = predOriginalSample.clamp(-Config.ClipSampleRange, Config.ClipSampleRange);

        // With eta = 0 the noise term std_dev_t is exactly 0, so the direction is sqrt(1 - alpha_prod_t_prev) * eps.
        var predSampleDirection = (1 - alphaProdTPrev).pow(0.5) * predEpsilon;
        var prevSample = alphaProdTPrev.pow(0.5) * predOriginalSample + predSampleDirection;
        return prevSample.MoveToOuterDisposeScope();
    }
}
