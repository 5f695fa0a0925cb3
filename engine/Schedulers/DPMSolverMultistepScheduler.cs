using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// diffusers' <c>DPMSolverMultistepScheduler</c> (DPM-Solver / DPM-Solver++, https://huggingface.co/papers/2211.01095),
/// the deterministic algorithms: "dpmsolver++" (DPM++ 2M with solver_order 2) and "dpmsolver", orders 1 to 3,
/// midpoint or heun, on the plain, Karras, exponential or Lu lambda sigma spacings.
/// </summary>
public sealed class DPMSolverMultistepScheduler : IScheduler
{
    private readonly float[] _alphasCumprod;
    private readonly float[] _trainingSigmas;
    private readonly string _timestepSpacing;
    private readonly string _algorithmType;
    private readonly string _solverType;
    private float[] _sigmas;
    private readonly Tensor?[] _modelOutputs;
    private int _lowerOrderNums;

    public string Name => "DPMSolverMultistepScheduler";
    public SchedulerConfig Config { get; }
    public float[] Timesteps { get; private set; } = [];
    public float InitNoiseSigma => 1.0f;
    public int Order => 1;

    /// <summary>The sigma of each timestep, then the final sigma (0 or sigma_min).</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    public DPMSolverMultistepScheduler(SchedulerConfig config)
    {
        Config = config;
        // diffusers maps the DEIS / UniPC names onto DPM-Solver++ midpoint when a config from those is loaded.
        _algorithmType = config.AlgorithmType == "deis" ? "dpmsolver++" : config.AlgorithmType;
        _solverType = config.SolverType is "logrho" or "bh1" or "bh2" ? "midpoint" : config.SolverType;
        Validate(config);
        _timestepSpacing = config.TimestepSpacing ?? "linspace";
        _alphasCumprod = BetaSchedule.AlphasCumprod(config, Name, config.RescaleBetasZeroSnr);
        if (config.RescaleBetasZeroSnr) _alphasCumprod[^1] = MathF.Pow(2, -24);
        _trainingSigmas = SigmaSchedules.TrainingSigmas(_alphasCumprod);
        _sigmas = _trainingSigmas;
        _modelOutputs = new Tensor?[config.SolverOrder];
    }

    private void Validate(SchedulerConfig config)
    {
        DiffusionException NotSupported(string key, string what) =>
            new("DpmSolverOptionNotSupported", DiffusionErrorKind.NotSupported, $"DPMSolverMultistepScheduler: {what}", key);
        if (_algorithmType is "sde-dpmsolver" or "sde-dpmsolver++")
            throw NotSupported("algorithm_type", $"the stochastic algorithm_type '{_algorithmType}' is not supported; use 'dpmsolver++' (DPM++ 2M) or 'dpmsolver'.");
        if (_algorithmType is not ("dpmsolver++" or "dpmsolver"))
            throw NotSupported("algorithm_type", $"algorithm_type '{_algorithmType}' is not supported; use 'dpmsolver++' or 'dpmsolver'.");
        if (_solverType is not ("midpoint" or "heun"))
            throw NotSupported("solver_type", $"solver_type '{_solverType}' is not supported; use 'midpoint' or 'heun'.");
        if (config.SolverOrder is < 1 or > 3)
            throw NotSupported("solver_order", $"solver_order {config.SolverOrder} is not supported; use 1, 2 or 3.");
        if (config.PredictionType is not ("epsilon" or "sample" or "v_prediction"))
            throw NotSupported("prediction_type", $"prediction_type '{config.PredictionType}' is not supported; use 'epsilon', 'sample' or 'v_prediction'.");
        if (config.Thresholding)
            throw NotSupported("thresholding", "thresholding=true (dynamic thresholding, for pixel-space models) is not supported; set it to false.");
        if (config.UseBetaSigmas || config.UseFlowSigmas)
            throw NotSupported(config.UseBetaSigmas ? "use_beta_sigmas" : "use_flow_sigmas",
                "use_beta_sigmas and use_flow_sigmas are not supported; use use_karras_sigmas, use_exponential_sigmas or use_lu_lambdas.");
        if (new[] { config.UseKarrasSigmas, config.UseExponentialSigmas }.Count(b => b) > 1)
            throw new DiffusionException("SchedulerSigmaSpacingConflict", DiffusionErrorKind.InvalidArgument,
                "Only one of use_karras_sigmas and use_exponential_sigmas can be set.", "use_karras_sigmas");
        if (config.FinalSigmasType is not ("zero" or "sigma_min"))
            throw NotSupported("final_sigmas_type", $"final_sigmas_type must be 'zero' or 'sigma_min', not '{config.FinalSigmasType}'.");
        if (_algorithmType == "dpmsolver" && config.FinalSigmasType == "zero")
            throw new DiffusionException("DpmSolverFinalSigmasConflict", DiffusionErrorKind.InvalidArgument,
                "final_sigmas_type 'zero' needs algorithm_type 'dpmsolver++'; with 'dpmsolver' set final_sigmas_type to 'sigma_min'.", "final_sigmas_type");
    }

    public void SetTimesteps(int numInferenceSteps, double? mu = null)
    {
        int trainSteps = Config.NumTrainTimesteps;
        int lastTimestep = trainSteps - ClippedIndex();
        double[] timesteps = _timestepSpacing switch
        {
            "linspace" => Numpy.Linspace(0, lastTimestep - 1, numInferenceSteps + 1).Select(Numpy.Round).Reverse().SkipLast(1).ToArray(),
            "leading" => Enumerable.Range(0, numInferenceSteps + 1).Select(i => (double)i * (lastTimestep / (numInferenceSteps + 1)))
                .Reverse().SkipLast(1).Select(t => t + Config.StepsOffset).ToArray(),
            "trailing" => Numpy.Arange(lastTimestep, 0, -(double)trainSteps / numInferenceSteps).Select(t => Numpy.Round(t) - 1).ToArray(),
            _ => throw SchedulerErrors.TimestepSpacingNotSupported(_timestepSpacing, Name),
        };

        var logSigmas = SigmaSchedules.Log(_trainingSigmas);
        var descending = Enumerable.Reverse(_trainingSigmas).ToArray();
        bool roundTimesteps = Config.BetaSchedule != "squaredcos_cap_v2";
        double[] sigmas;
        if (Config.UseKarrasSigmas)
        {
            sigmas = SigmaSchedules.Karras(descending[^1], descending[0], numInferenceSteps);
            timesteps = sigmas.Select(s => SigmaSchedules.SigmaToT(s, logSigmas)).Select(t => roundTimesteps ? Numpy.Round(t) : t).ToArray();
        }
        else if (Config.UseLuLambdas)
        {
            // Lu et al.: uniform in log-sigma between the largest and smallest training sigma (rho = 1).
            var lambdas = Enumerable.Reverse(logSigmas).ToArray();
            double lambdaMin = lambdas[^1], lambdaMax = lambdas[0];
            sigmas = Numpy.Linspace(0, 1, numInferenceSteps).Select(r => Math.Exp(lambdaMax + r * (lambdaMin - lambdaMax))).ToArray();
            timesteps = sigmas.Select(s => SigmaSchedules.SigmaToT(s, logSigmas)).Select(t => roundTimesteps ? Numpy.Round(t) : t).ToArray();
        }
        else if (Config.UseExponentialSigmas)
        {
            sigmas = SigmaSchedules.Exponential(descending[^1], descending[0], numInferenceSteps);
            timesteps = sigmas.Select(s => SigmaSchedules.SigmaToT(s, logSigmas)).ToArray();
        }
        else
            sigmas = timesteps.Select(t => Numpy.Interp(t, _trainingSigmas)).ToArray();

        float sigmaLast = Config.FinalSigmasType == "sigma_min" ? _trainingSigmas[0] : 0f;
        _sigmas = [.. sigmas.Select(s => (float)s), sigmaLast];
        // torch's float -> int64 conversion truncates toward zero.
        Timesteps = timesteps.Select(t => (float)(long)t).ToArray();
        ResetHistory();
    }

    /// <summary>How many of the smallest log-SNRs fall below lambda_min_clipped (diffusers' searchsorted on flipped lambda_t).</summary>
    private int ClippedIndex()
    {
        using var scope = NewDisposeScope();
        var alphasCumprod = tensor(_alphasCumprod);
        var lambdaT = sqrt(alphasCumprod).log() - sqrt(1 - alphasCumprod).log();
        return (int)searchsorted(lambdaT.flip(0), Config.LambdaMinClipped).item<long>();
    }

    public Tensor ScaleModelInput(Tensor sample, int stepIndex) => sample.alias();

    /// <summary>diffusers' <c>add_noise</c> with a begin index: alpha_t x + sigma_t noise at sigmas[begin_index].</summary>
    public Tensor AddNoise(Tensor original, Tensor noise, int stepIndex)
    {
        if (Timesteps.Length == 0) throw SchedulerErrors.StepBeforeSetTimesteps(Name);
        using var scope = NewDisposeScope();
        var (alphaT, sigmaT, _) = AlphaSigmaLambda(stepIndex);
        return scope.MoveToOuter(alphaT.to(original.dtype, original.device) * original + sigmaT.to(original.dtype, original.device) * noise);
    }

    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Generator? generator = null)
    {
        if (Timesteps.Length == 0) throw SchedulerErrors.StepBeforeSetTimesteps(Name);
        using var scope = NewDisposeScope();
        int steps = Timesteps.Length;
        bool lowerOrderFinal = stepIndex == steps - 1
            && (Config.EulerAtFinal || (Config.LowerOrderFinal && steps < 15) || Config.FinalSigmasType == "zero");
        bool lowerOrderSecond = stepIndex == steps - 2 && Config.LowerOrderFinal && steps < 15;

        var converted = ConvertModelOutput(modelOutput, stepIndex, sample);
        _modelOutputs[0]?.Dispose();
        for (int i = 0; i < _modelOutputs.Length - 1; i++) _modelOutputs[i] = _modelOutputs[i + 1];
        _modelOutputs[^1] = converted.DetachFromDisposeScope();

        sample = sample.to(ScalarType.Float32);
        int order = Config.SolverOrder;
        Tensor prevSample;
        if (order == 1 || _lowerOrderNums < 1 || lowerOrderFinal)
            prevSample = FirstOrderUpdate(converted, stepIndex, sample);
        else if (order == 2 || _lowerOrderNums < 2 || lowerOrderSecond)
            prevSample = SecondOrderUpdate(stepIndex, sample);
        else
            prevSample = ThirdOrderUpdate(stepIndex, sample);
        if (_lowerOrderNums < order) _lowerOrderNums++;
        return prevSample.to(converted.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>alpha_t, sigma_t and lambda_t = log(alpha_t) - log(sigma_t) of sigmas[index], as 0-dim float32 tensors.</summary>
    private (Tensor Alpha, Tensor Sigma, Tensor Lambda) AlphaSigmaLambda(int index)
    {
        var sigma = tensor(_sigmas[index]);
        var alpha = (sigma.pow(2) + 1).pow(0.5).reciprocal();
        var sigmaT = sigma * alpha;
        return (alpha, sigmaT, alpha.log() - sigmaT.log());
    }

    /// <summary>diffusers' <c>convert_model_output</c>: the data prediction x0 (dpmsolver++) or the noise (dpmsolver).</summary>
    private Tensor ConvertModelOutput(Tensor modelOutput, int stepIndex, Tensor sample)
    {
        bool learnedVariance = Config.VarianceType is "learned" or "learned_range";
        var (alphaT, sigmaT, _) = AlphaSigmaLambda(stepIndex);
        if (_algorithmType == "dpmsolver++")
            return Config.PredictionType switch
            {
                "epsilon" => (sample - sigmaT * (learnedVariance ? modelOutput[.., ..3] : modelOutput)) / alphaT,
                "sample" => modelOutput.alias(),
                _ => alphaT * sample - sigmaT * modelOutput, // v_prediction
            };
        return Config.PredictionType switch
        {
            "epsilon" => learnedVariance ? modelOutput[.., ..3] : modelOutput.alias(),
            "sample" => (sample - alphaT * modelOutput) / sigmaT,
            _ => alphaT * modelOutput + sigmaT * sample, // v_prediction
        };
    }

    private Tensor FirstOrderUpdate(Tensor modelOutput, int stepIndex, Tensor sample)
    {
        var (alphaT, sigmaT, lambdaT) = AlphaSigmaLambda(stepIndex + 1);
        var (alphaS, sigmaS, lambdaS) = AlphaSigmaLambda(stepIndex);
        var h = lambdaT - lambdaS;
        return _algorithmType == "dpmsolver++"
            ? (sigmaT / sigmaS) * sample - (alphaT * ((-h).exp() - 1.0)) * modelOutput
            : (alphaT / alphaS) * sample - (sigmaT * (h.exp() - 1.0)) * modelOutput;
    }

    private Tensor SecondOrderUpdate(int stepIndex, Tensor sample)
    {
        var (alphaT, sigmaT, lambdaT) = AlphaSigmaLambda(stepIndex + 1);
        var (alphaS0, sigmaS0, lambdaS0) = AlphaSigmaLambda(stepIndex);
        var (_, _, lambdaS1) = AlphaSigmaLambda(stepIndex - 1);
        Tensor m0 = _modelOutputs[^1]!, m1 = _modelOutputs[^2]!;
        Tensor h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1;
        var r0 = h0 / h;
        Tensor d0 = m0, d1 = r0.reciprocal() * 1.0 * (m0 - m1);
        if (_algorithmType == "dpmsolver++")
        {
            var expm1 = (-h).exp() - 1.0;
            return _solverType == "midpoint"
                ? (sigmaT / sigmaS0) * sample - (alphaT * expm1) * d0 - 0.5 * (alphaT * expm1) * d1
                : (sigmaT / sigmaS0) * sample - (alphaT * expm1) * d0 + (alphaT * (expm1 / h + 1.0)) * d1;
        }
        var expm1H = h.exp() - 1.0;
        return _solverType == "midpoint"
            ? (alphaT / alphaS0) * sample - (sigmaT * expm1H) * d0 - 0.5 * (sigmaT * expm1H) * d1
            : (alphaT / alphaS0) * sample - (sigmaT * expm1H) * d0 - (sigmaT * (expm1H / h - 1.0)) * d1;
    }

    private Tensor ThirdOrderUpdate(int stepIndex, Tensor sample)
    {
        var (alphaT, sigmaT, lambdaT) = AlphaSigmaLambda(stepIndex + 1);
        var (alphaS0, sigmaS0, lambdaS0) = AlphaSigmaLambda(stepIndex);
        var (_, _, lambdaS1) = AlphaSigmaLambda(stepIndex - 1);
        var (_, _, lambdaS2) = AlphaSigmaLambda(stepIndex - 2);
        Tensor m0 = _modelOutputs[^1]!, m1 = _modelOutputs[^2]!, m2 = _modelOutputs[^3]!;
        Tensor h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1, h1 = lambdaS1 - lambdaS2;
        Tensor r0 = h0 / h, r1 = h1 / h;
        var d0 = m0;
        Tensor d1_0 = r0.reciprocal() * 1.0 * (m0 - m1), d1_1 = r1.reciprocal() * 1.0 * (m1 - m2);
        var d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1);
        var d2 = (r0 + r1).reciprocal() * 1.0 * (d1_0 - d1_1);
        if (_algorithmType == "dpmsolver++")
        {
            var expm1 = (-h).exp() - 1.0;
            return (sigmaT / sigmaS0) * sample
                - (alphaT * expm1) * d0
                + (alphaT * (expm1 / h + 1.0)) * d1
                - (alphaT * (((-h).exp() - 1.0 + h) / h.pow(2) - 0.5)) * d2;
        }
        var expm1H = h.exp() - 1.0;
        return (alphaT / alphaS0) * sample
            - (sigmaT * expm1H) * d0
            - (sigmaT * (expm1H / h - 1.0)) * d1
            - (sigmaT * ((h.exp() - 1.0 - h) / h.pow(2) - 0.5)) * d2;
    }

    private void ResetHistory()
    {
        for (int i = 0; i < _modelOutputs.Length; i++)
        {
            _modelOutputs[i]?.Dispose();
            _modelOutputs[i] = null;
        }
        _lowerOrderNums = 0;
    }
}
