using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// diffusers' <c>PNDMScheduler</c> (pseudo numerical methods, https://huggingface.co/papers/2202.09778) on its
/// <c>skip_prk_steps</c> path: linear multistep (PLMS) steps only, as Stable Diffusion 1.x configures it.
/// Keeps diffusers' own step counter and model-output history; <see cref="SetTimesteps"/> resets them.
/// </summary>
public sealed class PNDMScheduler : IScheduler
{
    private readonly float[] _alphasCumprod;
    private readonly float _finalAlphaCumprod;
    private readonly string _timestepSpacing;
    private int _numInferenceSteps;
    private int _counter;
    private readonly List<Tensor> _ets = [];
    private Tensor? _curSample;

    public string Name => "PNDMScheduler";
    public SchedulerConfig Config { get; }
    public float[] Timesteps { get; private set; } = [];
    public float InitNoiseSigma => 1.0f;
    public int Order => 1;

    public PNDMScheduler(SchedulerConfig config)
    {
        Config = config;
        if (!config.SkipPrkSteps)
            throw new DiffusionException("PndmPrkStepsNotSupported", DiffusionErrorKind.NotSupported,
                "PNDMScheduler with skip_prk_steps=false (Runge-Kutta warm-up steps) is not supported. " +
                "Set \"skip_prk_steps\": true in scheduler_config.json (Stable Diffusion's setting) or choose another scheduler.",
                "skip_prk_steps");
        if (config.PredictionType is not ("epsilon" or "v_prediction"))
            throw new DiffusionException("SchedulerPredictionTypeNotSupported", DiffusionErrorKind.NotSupported,
                $"PNDMScheduler supports prediction_type 'epsilon' or 'v_prediction', not '{config.PredictionType}'.", "prediction_type");
        _timestepSpacing = config.TimestepSpacing ?? "leading";
        _alphasCumprod = BetaSchedule.AlphasCumprod(config, Name, rescaleBetasZeroSnr: false);
        _finalAlphaCumprod = config.SetAlphaToOne ?? false ? 1.0f : _alphasCumprod[0];
    }

    public void SetTimesteps(int numInferenceSteps, double? mu = null)
    {
        int trainSteps = Config.NumTrainTimesteps;
        _numInferenceSteps = numInferenceSteps;
        long[] ascending = _timestepSpacing switch
        {
            "linspace" => Numpy.Linspace(0, trainSteps - 1, numInferenceSteps).Select(t => (long)Numpy.Round(t)).ToArray(),
            "leading" => Enumerable.Range(0, numInferenceSteps).Select(i => (long)i * (trainSteps / numInferenceSteps) + Config.StepsOffset).ToArray(),
            "trailing" => Numpy.Arange(trainSteps, 0, -(double)trainSteps / numInferenceSteps).Select(t => (long)Numpy.Round(t) - 1).Reverse().ToArray(),
            _ => throw SchedulerErrors.TimestepSpacingNotSupported(_timestepSpacing, Name),
        };
        // PLMS timesteps: the second-to-last timestep repeats (the first PLMS step needs two evaluations), descending.
        long[] repeated = ascending.Length >= 2 ? [ascending[^2]] : [];
        Timesteps = ascending[..^1].Concat(repeated).Append(ascending[^1]).Reverse().Select(t => (float)t).ToArray();
        ResetHistory();
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
        if (_counter != 1)
        {
            if (_ets.Count > 3) { _ets[0].Dispose(); _ets.RemoveAt(0); }
            _ets.Add(modelOutput.alias().DetachFromDisposeScope());
        }
        else
        {
            prevTimestep = timestep;
            timestep += Config.NumTrainTimesteps / _numInferenceSteps;
        }

        Tensor combined;
        if (_ets.Count == 1 && _counter == 0)
        {
            combined = modelOutput;
            _curSample = sample.alias().DetachFromDisposeScope();
        }
        else if (_ets.Count == 1 && _counter == 1)
        {
            combined = (modelOutput + _ets[^1]) / 2;
            sample = _curSample!;
            _curSample = null;
            sample.MoveToOtherDisposeScope(scope);
        }
        else if (_ets.Count == 2)
            combined = (3 * _ets[^1] - _ets[^2]) / 2;
        else if (_ets.Count == 3)
            combined = (23 * _ets[^1] - 16 * _ets[^2] + 5 * _ets[^3]) / 12;
        else
            combined = (1.0 / 24) * (55 * _ets[^1] - 59 * _ets[^2] + 37 * _ets[^3] - 9 * _ets[^4]);

        var prevSample = PreviousSample(sample, timestep, prevTimestep, combined);
        _counter++;
        return prevSample.MoveToOuterDisposeScope();
    }

    /// <summary>diffusers' <c>_get_prev_sample</c>: formula (9) of the PNDM paper.</summary>
    private Tensor PreviousSample(Tensor sample, long timestep, long prevTimestep, Tensor modelOutput)
    {
        var alphaProdT = tensor(_alphasCumprod[timestep]);
        var alphaProdTPrev = tensor(prevTimestep >= 0 ? _alphasCumprod[prevTimestep] : _finalAlphaCumprod);
        var betaProdT = 1 - alphaProdT;
        var betaProdTPrev = 1 - alphaProdTPrev;
        if (Config.PredictionType == "v_prediction")
            modelOutput = alphaProdT.pow(0.5) * modelOutput + betaProdT.pow(0.5) * sample;
        var sampleCoeff = (alphaProdTPrev / alphaProdT).pow(0.5);
        var modelOutputDenomCoeff = alphaProdT * betaProdTPrev.pow(0.5) + (alphaProdT * betaProdT * alphaProdTPrev).pow(0.5);
        return sampleCoeff * sample - (alphaProdTPrev - alphaProdT) * modelOutput / modelOutputDenomCoeff;
    }

    private void ResetHistory()
    {
        foreach (var e in _ets) e.Dispose();
        _ets.Clear();
        _curSample?.Dispose();
        _curSample = null;
        _counter = 0;
    }
}
