using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// diffusers' <c>FlowMatchEulerDiscreteScheduler</c> (rectified flow, used by FLUX.1): Euler steps of the predicted
/// velocity from sigma = 1 (pure noise) to 0. Timesteps are sigmas * num_train_timesteps.
/// </summary>
public sealed class FlowMatchEulerDiscreteScheduler : IScheduler
{
    private float[] _sigmas = [];

    public string Name => "FlowMatchEulerDiscreteScheduler";
    public SchedulerConfig Config { get; }
    public float[] Timesteps { get; private set; } = [];
    /// <summary>Flow matching starts from unit-variance noise (FluxPipeline does not scale the initial latents).</summary>
    public float InitNoiseSigma => 1.0f;
    public int Order => 1;

    /// <summary>The sigma of each timestep, then 0.</summary>
    public IReadOnlyList<float> Sigmas => _sigmas;

    public FlowMatchEulerDiscreteScheduler(SchedulerConfig config)
    {
        Config = config;
        if (config.TimeShiftType is not ("exponential" or "linear"))
            throw new DiffusionException("SchedulerTimeShiftTypeNotSupported", DiffusionErrorKind.InvalidArgument,
                $"time_shift_type must be 'exponential' or 'linear', not '{config.TimeShiftType}'.", "time_shift_type");
        string? unsupported = config.UseKarrasSigmas ? "use_karras_sigmas"
            : config.UseExponentialSigmas ? "use_exponential_sigmas"
            : config.UseBetaSigmas ? "use_beta_sigmas"
            : config.ShiftTerminal is not null ? "shift_terminal"
            : config.InvertSigmas ? "invert_sigmas"
            : null;
        if (unsupported is not null)
            throw new DiffusionException("FlowMatchOptionNotSupported", DiffusionErrorKind.NotSupported,
                $"FlowMatchEulerDiscreteScheduler: the option '{unsupported}' is not supported (FLUX.1 does not use it); remove it from scheduler_config.json.",
                unsupported);
    }

    /// <summary>
    /// diffusers' <c>calculate_shift</c> (pipeline_flux.py): mu grows linearly with the number of image tokens, from
    /// <paramref name="baseShift"/> at <paramref name="baseSeqLen"/> to <paramref name="maxShift"/> at <paramref name="maxSeqLen"/>.
    /// Computed in double like Python, so that <c>exp(mu)</c> rounds as diffusers' does.
    /// </summary>
    public static double CalculateShift(int imageSeqLen, int baseSeqLen = 256, int maxSeqLen = 4096, double baseShift = 0.5, double maxShift = 1.15)
    {
        double m = (maxShift - baseShift) / (maxSeqLen - baseSeqLen);
        double b = baseShift - m * baseSeqLen;
        return imageSeqLen * m + b;
    }

    /// <summary>
    /// The FLUX schedule: FluxPipeline passes <c>sigmas = np.linspace(1.0, 1 / n, n)</c>, which are then shifted
    /// (by <paramref name="mu"/> when use_dynamic_shifting, else by the config's shift).
    /// </summary>
    public void SetTimesteps(int numInferenceSteps, double? mu = null) =>
        SetSigmas(Numpy.Linspace(1.0, 1.0 / numInferenceSteps, numInferenceSteps), mu);

    /// <summary>diffusers' <c>set_timesteps(sigmas=..., mu=...)</c>: shift the given descending sigmas and append 0.</summary>
    public void SetSigmas(IReadOnlyList<double> sigmas, double? mu = null)
    {
        if (Config.UseDynamicShifting && mu is null)
            throw new DiffusionException("FlowMatchMuRequired", DiffusionErrorKind.InvalidArgument,
                "This scheduler uses dynamic shifting (use_dynamic_shifting=true), so SetTimesteps needs mu; compute it with CalculateShift from the image's token count.",
                "mu");
        // numpy float32 arithmetic throughout (Python float operands are cast to float32, NEP 50).
        var shifted = sigmas.Select(s => (float)s).Select(t => Config.UseDynamicShifting ? TimeShift(mu!.Value, t) : ShiftBy(Config.Shift, t)).ToArray();
        Timesteps = shifted.Select(s => s * Config.NumTrainTimesteps).ToArray();
        _sigmas = [.. shifted, 0f];
    }

    /// <summary><c>shift * sigmas / (1 + (shift - 1) * sigmas)</c>; <c>shift - 1</c> is a Python float difference.</summary>
    private static float ShiftBy(double shift, float sigma) => (float)shift * sigma / (1 + (float)(shift - 1) * sigma);

    /// <summary>diffusers' <c>time_shift(mu, 1.0, t)</c>: exponential <c>e^mu / (e^mu + (1/t - 1))</c> or linear <c>mu / (mu + (1/t - 1))</c>.</summary>
    private float TimeShift(double mu, float t)
    {
        float scale = Config.TimeShiftType == "exponential" ? (float)Math.Exp(mu) : (float)mu;
        return scale / (scale + (1 / t - 1));
    }

    public Tensor ScaleModelInput(Tensor sample, int stepIndex) => sample.alias();

    /// <summary>diffusers' <c>scale_noise</c> with a begin index: sigma noise + (1 - sigma) x at sigmas[begin_index].</summary>
    public Tensor AddNoise(Tensor original, Tensor noise, int stepIndex)
    {
        if (_sigmas.Length == 0) throw SchedulerErrors.StepBeforeSetTimesteps(Name);
        using var scope = NewDisposeScope();
        var sigma = tensor(_sigmas[stepIndex]).to(original.dtype, original.device);
        return scope.MoveToOuter(sigma * noise + (1.0 - sigma) * original);
    }

    public Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Generator? generator = null)
    {
        if (_sigmas.Length == 0) throw SchedulerErrors.StepBeforeSetTimesteps(Name);
        using var scope = NewDisposeScope();
        sample = sample.to(ScalarType.Float32);
        var sigma = tensor(_sigmas[stepIndex]);
        var sigmaNext = tensor(_sigmas[stepIndex + 1]);
        Tensor prevSample;
        if (Config.StochasticSampling)
        {
            var x0 = sample - sigma * modelOutput;
            var noise = RandomTensors.Randn(sample.shape, sample.dtype, sample.device, generator);
            prevSample = (1.0 - sigmaNext) * x0 + sigmaNext * noise;
        }
        else
            prevSample = sample + (sigmaNext - sigma) * modelOutput;
        return prevSample.to(modelOutput.dtype).MoveToOuterDisposeScope();
    }
}
