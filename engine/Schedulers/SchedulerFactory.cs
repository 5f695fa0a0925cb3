namespace Diffusion.Engine.Schedulers;

/// <summary>
/// Builds the scheduler a model's <c>scheduler_config.json</c> names, or another one chosen by name. Like diffusers'
/// <c>NewScheduler.from_config(old.config)</c>, an override keeps the config's values (betas, timestep spacing, ...)
/// that the new class reads; the others take the new class's defaults.
/// </summary>
public static class SchedulerFactory
{
    private sealed record Choice(string ClassName, Action<SchedulerConfig>? Adjust = null);

    /// <summary>
    /// Accepted names (case-insensitive). The aliases pin what they name: "pndm" is PNDM's PLMS variant (skip_prk_steps),
    /// "dpm++2m" / "dpm++2m-karras" are DPM-Solver++ of order 2 without / with Karras sigmas.
    /// </summary>
    private static readonly Dictionary<string, Choice> Choices = new(StringComparer.OrdinalIgnoreCase)
    {
        ["PNDMScheduler"] = new("PNDMScheduler"),
        ["DDIMScheduler"] = new("DDIMScheduler"),
        ["EulerDiscreteScheduler"] = new("EulerDiscreteScheduler"),
        ["EulerAncestralDiscreteScheduler"] = new("EulerAncestralDiscreteScheduler"),
        ["DPMSolverMultistepScheduler"] = new("DPMSolverMultistepScheduler"),
        ["FlowMatchEulerDiscreteScheduler"] = new("FlowMatchEulerDiscreteScheduler"),
        ["pndm"] = new("PNDMScheduler", c => c.SkipPrkSteps = true),
        ["ddim"] = new("DDIMScheduler"),
        ["euler"] = new("EulerDiscreteScheduler"),
        ["euler_a"] = new("EulerAncestralDiscreteScheduler"),
        ["euler-ancestral"] = new("EulerAncestralDiscreteScheduler"),
        ["dpm++2m"] = new("DPMSolverMultistepScheduler", c => { DpmPlusPlus2M(c); c.UseKarrasSigmas = false; }),
        ["dpm++2m-karras"] = new("DPMSolverMultistepScheduler", c => { DpmPlusPlus2M(c); c.UseKarrasSigmas = true; c.UseExponentialSigmas = false; }),
        ["flow-euler"] = new("FlowMatchEulerDiscreteScheduler"),
    };

    private static void DpmPlusPlus2M(SchedulerConfig config)
    {
        config.AlgorithmType = "dpmsolver++";
        config.SolverOrder = 2;
    }

    /// <summary>diffusers' KarrasDiffusionSchedulers: the discrete-time classes that share the DDPM noise schedule and can replace each other.</summary>
    private static readonly HashSet<string> DiscreteTimeFamily =
    [
        "DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler", "HeunDiscreteScheduler",
        "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler", "DEISMultistepScheduler", "UniPCMultistepScheduler", "DPMSolverSDEScheduler", "EDMEulerScheduler",
    ];

    /// <summary>true for a discrete-time (DDPM) scheduler class, false for a flow-matching one, null when unknown.</summary>
    private static bool? IsDiscreteTime(string? className) =>
        className is null ? null
        : DiscreteTimeFamily.Contains(className) ? true
        : className.StartsWith("FlowMatch", StringComparison.Ordinal) ? false
        : null;

    /// <summary>Every name <see cref="Create(string, string?)"/> accepts: the short aliases, then the diffusers class names.</summary>
    public static IReadOnlyList<string> Names { get; } =
        [.. Choices.Keys.Where(k => !k.EndsWith("Scheduler", StringComparison.Ordinal)), .. Choices.Keys.Where(k => k.EndsWith("Scheduler", StringComparison.Ordinal))];

    /// <summary>The scheduler of <paramref name="schedulerConfigPath"/>, or the one <paramref name="nameOverride"/> names, built from that config.</summary>
    public static IScheduler Create(string schedulerConfigPath, string? nameOverride = null) =>
        Create(SchedulerConfig.Load(schedulerConfigPath), nameOverride, schedulerConfigPath);

    /// <summary>The scheduler <paramref name="config"/> names (its _class_name), or the one <paramref name="nameOverride"/> names.</summary>
    public static IScheduler Create(SchedulerConfig config, string? nameOverride = null, string source = "scheduler config")
    {
        var configured = config.ClassName;
        if (string.IsNullOrEmpty(nameOverride))
        {
            if (configured is null || !Choices.TryGetValue(configured, out var own))
                throw new DiffusionException("SchedulerNotSupported", DiffusionErrorKind.NotSupported,
                    $"'{source}' names the scheduler '{configured ?? "(no _class_name)"}', which is not supported. " +
                    $"Choose one with the scheduler name parameter: {string.Join(", ", Names)}.", source);
            return Build(own.ClassName, config.Clone());
        }

        if (!Choices.TryGetValue(nameOverride, out var choice))
            throw new DiffusionException("SchedulerNameUnknown", DiffusionErrorKind.InvalidArgument,
                $"Unknown scheduler '{nameOverride}'. Valid names: {string.Join(", ", Names)}.", nameOverride);
        bool? fromDiscrete = IsDiscreteTime(configured), toDiscrete = IsDiscreteTime(choice.ClassName);
        if (fromDiscrete is not null && fromDiscrete != toDiscrete)
            throw new DiffusionException("SchedulerNotCompatible", DiffusionErrorKind.InvalidArgument,
                $"The model's scheduler {configured} cannot be replaced by {choice.ClassName}: " +
                (fromDiscrete == true
                    ? "the model is a discrete-time diffusion model; use pndm, ddim, euler, euler_a, dpm++2m or dpm++2m-karras."
                    : "the model is a flow-matching model; use flow-euler (FlowMatchEulerDiscreteScheduler)."),
                nameOverride);
        var adjusted = config.Clone();
        adjusted.ClassName = choice.ClassName;
        choice.Adjust?.Invoke(adjusted);
        return Build(choice.ClassName, adjusted);
    }

    private static IScheduler Build(string className, SchedulerConfig config) => className switch
    {
        "PNDMScheduler" => new PNDMScheduler(config),
        "DDIMScheduler" => new DDIMScheduler(config),
        "EulerDiscreteScheduler" => new EulerDiscreteScheduler(config),
        "EulerAncestralDiscreteScheduler" => new EulerAncestralDiscreteScheduler(config),
        "DPMSolverMultistepScheduler" => new DPMSolverMultistepScheduler(config),
        _ => new FlowMatchEulerDiscreteScheduler(config),
    };
}
