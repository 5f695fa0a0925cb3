using System.Globalization;

namespace Diffusion.Engine.Schedulers;

/// <summary>A scheduler's class and the configuration values that decide its timesteps and its update, in one line (for -Verbose).</summary>
public static class SchedulerSummary
{
    public static string Describe(IScheduler scheduler)
    {
        var c = scheduler.Config;
        static string N(double v) => v.ToString("0.#####", CultureInfo.InvariantCulture);
        var parts = new List<string> { $"num_train_timesteps {c.NumTrainTimesteps}" };
        if (scheduler is FlowMatchEulerDiscreteScheduler)
        {
            parts.Add(c.UseDynamicShifting ? $"use_dynamic_shifting (base_shift {N(c.BaseShift)}, max_shift {N(c.MaxShift)})" : $"shift {N(c.Shift)}");
        }
        else
        {
            parts.Add(c.TrainedBetas is null ? $"beta_schedule {c.BetaSchedule} ({N(c.BetaStart)} to {N(c.BetaEnd)})" : "trained_betas");
            parts.Add($"prediction_type {c.PredictionType}");
            parts.Add($"timestep_spacing {c.TimestepSpacing ?? "leading"}");
            parts.Add($"steps_offset {c.StepsOffset}");
            if (c.RescaleBetasZeroSnr) parts.Add("rescale_betas_zero_snr");
        }
        switch (scheduler)
        {
            case PNDMScheduler:
                parts.Add($"skip_prk_steps {c.SkipPrkSteps.ToString().ToLowerInvariant()}");
                parts.Add($"set_alpha_to_one {(c.SetAlphaToOne ?? false).ToString().ToLowerInvariant()}");
                break;
            case DDIMScheduler:
                parts.Add($"set_alpha_to_one {(c.SetAlphaToOne ?? true).ToString().ToLowerInvariant()}");
                parts.Add($"clip_sample {c.ClipSample.ToString().ToLowerInvariant()}");
                break;
            case DPMSolverMultistepScheduler:
                parts.Add($"algorithm_type {c.AlgorithmType}, solver_order {c.SolverOrder}, final_sigmas_type {c.FinalSigmasType}");
                break;
        }
        if (c.UseKarrasSigmas) parts.Add("use_karras_sigmas");
        return $"{scheduler.Name}: {string.Join(", ", parts)}";
    }
}
