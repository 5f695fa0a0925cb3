namespace Diffusion.Engine.Schedulers;

/// <summary>The errors every scheduler raises the same way.</summary>
internal static class SchedulerErrors
{
    public static DiffusionException TimestepSpacingNotSupported(string spacing, string scheduler) =>
        new("SchedulerTimestepSpacingNotSupported", DiffusionErrorKind.NotSupported,
            $"timestep_spacing '{spacing}' is not supported by {scheduler}; use 'linspace', 'leading' or 'trailing'.", "timestep_spacing");

    public static DiffusionException StepBeforeSetTimesteps(string scheduler) =>
        new("SchedulerNotReady", DiffusionErrorKind.InvalidOperation,
            $"{scheduler}.Step was called before SetTimesteps; set the number of inference steps first.");
}
