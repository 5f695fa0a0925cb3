namespace Diffusion.Engine.Schedulers;

/// <summary>
/// The sampler names AUTOMATIC1111 writes into an image's parameters ("PLMS", "DDIM", "Euler", "Euler a", "DPM++ 2M",
/// "DPM++ 2M Karras"), from the scheduler that ran; and back, the -Scheduler name that rebuilds that scheduler.
/// </summary>
public static class SamplerNames
{
    /// <summary>A1111's name for <paramref name="scheduler"/>; its diffusers class name where A1111 has none.</summary>
    public static string Of(IScheduler scheduler)
    {
        var c = scheduler.Config;
        return scheduler.Name switch
        {
            "PNDMScheduler" => c.SkipPrkSteps ? "PLMS" : "PNDM",
            "DDIMScheduler" => "DDIM",
            "EulerDiscreteScheduler" => c.UseKarrasSigmas ? "Euler Karras" : "Euler",
            "EulerAncestralDiscreteScheduler" => "Euler a",
            "DPMSolverMultistepScheduler" when c.AlgorithmType == "dpmsolver++" && c.SolverOrder == 2 =>
                c.UseKarrasSigmas ? "DPM++ 2M Karras" : c.UseExponentialSigmas ? "DPM++ 2M Exponential" : "DPM++ 2M",
            "FlowMatchEulerDiscreteScheduler" => "Euler",
            var other => other,
        };
    }

    /// <summary>
    /// The -Scheduler value that makes the scheduler an image names again: an alias for A1111's names (with
    /// <paramref name="className"/>, the diffusers class recorded beside it, telling FLUX's "Euler" from SD's), else the class.
    /// </summary>
    public static string ToSchedulerName(string sampler, string? className)
    {
        bool flow = className?.StartsWith("FlowMatch", StringComparison.Ordinal) == true;
        return sampler switch
        {
            "PLMS" => "pndm",
            "DDIM" => "ddim",
            "Euler" => flow ? "flow-euler" : "euler",
            "Euler a" => "euler_a",
            "DPM++ 2M" => "dpm++2m",
            "DPM++ 2M Karras" => "dpm++2m-karras",
            _ => string.IsNullOrEmpty(className) ? sampler : className,
        };
    }
}
