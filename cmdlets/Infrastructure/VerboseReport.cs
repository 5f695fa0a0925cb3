using System.Globalization;
using System.Management.Automation;
using Diffusion.Engine;
using Diffusion.Engine.Devices;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Sharding;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// What -Verbose and -Debug say about loads and runs. Called on the pipeline thread only (cmdlet Write* calls must be):
/// engine callbacks that come here run synchronously inside the cmdlet's own call.
/// </summary>
internal static class VerboseReport
{
    /// <summary>Device, dtype, scheduler and each component's load time and bytes read; -Debug: the device plan and memory.</summary>
    public static void Loaded(PSCmdlet cmdlet, DiffusionPipeline pipe, double seconds)
    {
        cmdlet.WriteVerbose($"Loaded {pipe.ClassName} '{pipe.Path}' in {Seconds(seconds)}: device {pipe.Device}, dtype {pipe.DType}, " +
                            $"{pipe.Parameters.ToString("N0", CultureInfo.InvariantCulture)} parameters ({MemorySize.Format(pipe.Bytes)}).");
        foreach (var c in pipe.Components.Values)
        {
            var where = c.Device is null ? "" : $" on {c.Device} as {c.DType}";
            cmdlet.WriteVerbose($"  {c.Name} ({c.ClassName}){where}: loaded in {Seconds(c.LoadSeconds)}, {MemorySize.Format(c.BytesRead)} read.");
        }
        if (Scheduler(pipe, null) is { } scheduler) cmdlet.WriteVerbose($"  scheduler {scheduler}");
        if (pipe.DevicePlan is { } plan) cmdlet.WriteDebug($"Device plan:{Environment.NewLine}{plan}");
        Memory(cmdlet, "after loading");
    }

    /// <summary>The scheduler a run uses and its key settings, or null when the pipeline has none.</summary>
    public static string? Scheduler(DiffusionPipeline pipe, string? overrideName)
    {
        try { return pipe.DescribeScheduler(overrideName); }
        catch (DiffusionException) { return null; } // the run itself reports a scheduler that cannot be made
    }

    /// <summary>-Debug: what the engine holds on each device now, its peak, and the device's free memory.</summary>
    public static void Memory(PSCmdlet cmdlet, string when)
    {
        if (!DebugOn(cmdlet)) return; // listing devices asks the backend: only when it will be shown
        var held = DeviceCatalog.List().Select(d =>
            $"{d.Name} {MemorySize.Format(d.AllocatedByEngine)} (peak {MemorySize.Format(d.PeakByEngine)}{(d.FreeMemory is long free ? $", {MemorySize.Format(free)} free" : "")})");
        cmdlet.WriteDebug($"Engine memory {when}: {string.Join(", ", held)}.");
    }

    /// <summary>True when -Debug was given or $DebugPreference asks for debug output.</summary>
    public static bool DebugOn(PSCmdlet cmdlet) => StreamOn(cmdlet, "Debug");

    /// <summary>True when -Verbose was given or $VerbosePreference asks for verbose output.</summary>
    public static bool VerboseOn(PSCmdlet cmdlet) => StreamOn(cmdlet, "Verbose");

    private static bool StreamOn(PSCmdlet cmdlet, string name) =>
        cmdlet.MyInvocation.BoundParameters.TryGetValue(name, out var d) ? ((SwitchParameter)d).IsPresent
            : cmdlet.GetVariableValue(name + "Preference") is ActionPreference p && p != ActionPreference.SilentlyContinue && p != ActionPreference.Ignore;

    /// <summary>-Verbose / -Debug for the commands a parallel run's workers run, as this command has them.</summary>
    public static void PassOn(PSCmdlet cmdlet, System.Collections.IDictionary arguments)
    {
        if (VerboseOn(cmdlet)) arguments["Verbose"] = true;
        if (DebugOn(cmdlet)) arguments["Debug"] = true;
    }

    public static string Seconds(double s) => s.ToString(s < 10 ? "0.000" : "0.0", CultureInfo.InvariantCulture) + " s";
}
