using System.Globalization;
using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>
/// What Invoke-Denoise and Invoke-Diffusion show of a denoise batch: its progress bar (counting the steps asked for,
/// as diffusers' progress bar does) and its -Verbose and -Debug lines.
/// </summary>
internal static class DenoiseProgressText
{
    public const int ActivityId = 2;

    /// <summary>A batch's progress bar, before its first step.</summary>
    public static ProgressRecord Bar(IReadOnlyList<string> prompts, int parentActivityId) =>
        new(ActivityId, $"Denoising {prompts.Count} image(s): {Describe(prompts)}", "starting") { ParentActivityId = parentActivityId };

    /// <summary>The bar after step <paramref name="s"/>: percent, the step and its timestep, the time left.</summary>
    public static void Show(ProgressRecord bar, DenoiseStep s)
    {
        bar.PercentComplete = 100 * s.StepsDone / Math.Max(1, s.StepsAsked);
        bar.StatusDescription = $"step {s.StepsDone}/{s.StepsAsked} (t={s.Timestep:0.###})";
        var perStep = s.Elapsed.TotalSeconds / (s.Index + 1);
        bar.SecondsRemaining = (int)Math.Ceiling(perStep * (s.Total - s.Index - 1));
    }

    /// <summary>-Verbose at a run's first step: the images, device, dtype, steps and the scheduler with its key settings.</summary>
    public static string Run(DiffusionPipeline pipeline, IEnumerable<int> indices, string? scheduler, DenoiseStep first)
    {
        var evaluations = first.Total == first.StepsAsked ? "" : $" ({first.Total} model evaluations)";
        return $"Denoising {Images(indices)} on {pipeline.Device} ({pipeline.DType}): {first.StepsAsked} steps{evaluations}; " +
               $"scheduler {VerboseReport.Scheduler(pipeline, scheduler) ?? "(none)"}.";
    }

    /// <summary>-Debug after a run: the timesteps it ran.</summary>
    public static string Timesteps(IEnumerable<float> timesteps) =>
        $"Timesteps run: {string.Join(", ", timesteps.Select(t => t.ToString("0.###", CultureInfo.InvariantCulture)))}.";

    /// <summary>-Verbose after a run: size, guidance, the seed used and the time.</summary>
    public static string Result(IReadOnlyList<DiffusionLatent> results)
    {
        var r = results[0];
        var rescale = r.GuidanceRescale > 0 ? $", guidance_rescale {r.GuidanceRescale.ToString(CultureInfo.InvariantCulture)}" : "";
        return $"Denoised {Images(results.Select(l => l.Index))} ({r.Width}x{r.Height}, guidance {r.GuidanceScale.ToString(CultureInfo.InvariantCulture)}{rescale}) " +
               $"in {VerboseReport.Seconds(r.Seconds)} with seed {r.Seed}.";
    }

    private static string Images(IEnumerable<int> indices) => "image " + string.Join(", ", indices.Select(i => $"#{i}"));

    private static string Describe(IReadOnlyList<string> prompts)
    {
        var first = prompts[0];
        if (first.Length > 40) first = first[..40] + "…";
        return prompts.Count == 1 ? $"'{first}'" : $"'{first}' and {prompts.Count - 1} more";
    }
}
