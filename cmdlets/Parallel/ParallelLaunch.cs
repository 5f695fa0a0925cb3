using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.Devices;
using Diffusion.Engine.Parallel;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>What both parallel cmdlets need before starting workers: the launch plan, checked, and the module to import.</summary>
internal static class ParallelLaunch
{
    /// <summary>This module's manifest, which every worker imports.</summary>
    public static string ModulePath
    {
        get
        {
            var folder = Path.GetDirectoryName(typeof(ParallelLaunch).Assembly.Location)!;
            var manifest = Path.Combine(folder, "Diffusion.psd1");
            return File.Exists(manifest) ? manifest : folder;
        }
    }

    /// <summary>
    /// The workers for -NumProcesses / -Device. CUDA devices are checked against this session's backend; a backend
    /// loaded from an explicit folder (Initialize-DiffusionBackend -LibTorchPath) is passed on to the workers.
    /// </summary>
    public static IReadOnlyList<WorkerLaunch> Plan(DiffusionCmdlet cmdlet, int? numProcesses, string[]? devices)
    {
        return cmdlet.RunEngine(() =>
        {
            foreach (var d in devices ?? [])
                if (LaunchPlan.Normalize(d) != "cpu") DeviceCatalog.Validate(d);
            var info = TorchBackend.Info;
            var libTorch = info is not null && info.Source == "parameter" ? info.LibTorchPath : null;
            return LaunchPlan.Create(numProcesses, devices, Environment.GetEnvironmentVariables(), Environment.ProcessorCount, libTorch);
        });
    }
}
