using System.Collections;
using System.Globalization;
using System.Management.Automation;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>A worker's denoising step, as the parent's progress view shows it.</summary>
/// <param name="Image">The image of the worker's share being made (1-based) of <paramref name="Images"/>.</param>
/// <param name="Step">Steps done (as diffusers counts them) of <paramref name="Steps"/>, the steps asked for.</param>
/// <param name="Device">The device the worker's pipeline runs on, as the worker resolved it (cpu, cuda:0).</param>
internal readonly record struct WorkerStepReport(int Index, int Image, int Images, int Step, int Steps, string Device);

/// <summary>
/// What a parallel run's workers tell the parent besides their results: information records with a tag of their
/// own (not the user's: the parent takes them off the stream), so the parent can show each rank's step and device.
/// The worker's own progress records are not used for this: their text is for people, and is cut off in a narrow view.
/// </summary>
internal static class WorkerReports
{
    public const string StepTag = "Diffusion.WorkerStep";
    public const string DeviceTag = "Diffusion.WorkerDevice";

    /// <summary>Written by Invoke-Diffusion in a worker after each denoising step.</summary>
    public static InformationRecord Step(int index, int image, int images, int step, int steps, string device)
    {
        var data = new Hashtable { ["Index"] = index, ["Image"] = image, ["Images"] = images, ["Step"] = step, ["Steps"] = steps, ["Device"] = device };
        var record = new InformationRecord(data, "Invoke-Diffusion");
        record.Tags.Add(StepTag);
        return record;
    }

    public static bool IsReport(InformationRecord record) => record.Tags.Contains(StepTag) || record.Tags.Contains(DeviceTag);

    public static bool TryReadStep(InformationRecord record, out WorkerStepReport report)
    {
        report = default;
        if (!record.Tags.Contains(StepTag) || Table(record) is not { } t) return false;
        report = new WorkerStepReport(Int(t["Index"]), Int(t["Image"]), Int(t["Images"]), Int(t["Step"]), Int(t["Steps"]), t["Device"]?.ToString() ?? "");
        return true;
    }

    /// <summary>The device a worker reported after loading its pipeline (the worker script writes it).</summary>
    public static string? ReadDevice(InformationRecord record) =>
        record.Tags.Contains(DeviceTag) && Table(record) is { } t ? t["Device"]?.ToString() : null;

    private static IDictionary? Table(InformationRecord record) =>
        (record.MessageData is PSObject p ? p.BaseObject : record.MessageData) as IDictionary;

    private static int Int(object? value) => Convert.ToInt32(value is PSObject p ? p.BaseObject : value, CultureInfo.InvariantCulture);
}
