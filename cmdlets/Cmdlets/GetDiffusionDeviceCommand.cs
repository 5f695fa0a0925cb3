using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine.Devices;

namespace Diffusion.Cmdlets;

/// <summary>Lists the compute devices with total/free memory and what the engine holds, and where the backend came from.</summary>
[Cmdlet(VerbsCommon.Get, "DiffusionDevice")]
[OutputType(typeof(DeviceInfo))]
public sealed class GetDiffusionDeviceCommand : DiffusionCmdlet
{
    /// <summary>Only these devices (cpu, cuda, cuda:N); all when omitted.</summary>
    [Parameter(Position = 0)]
    [ArgumentCompleter(typeof(DeviceCompleter))]
    public string[]? Name { get; set; }

    protected override void EndProcessing()
    {
        var devices = Run(DeviceCatalog.List);
        static bool Matches(string n, DeviceInfo d) => string.Equals(n, d.Name, StringComparison.OrdinalIgnoreCase)
                                                       || string.Equals(n, d.Type, StringComparison.OrdinalIgnoreCase);
        foreach (var d in devices)
        {
            if (Name is null || Name.Any(n => Matches(n, d)))
                WriteObject(d);
        }
        // A name that matches nothing is an error, not an empty answer.
        foreach (var n in Name?.Where(n => !devices.Any(d => Matches(n, d))) ?? [])
            WriteError(new ErrorRecord(new ItemNotFoundException($"No device '{n}'."), "DeviceNotFound", ErrorCategory.ObjectNotFound, n)
            {
                ErrorDetails = new ErrorDetails($"No device '{n}' here: the devices are {string.Join(", ", devices.Select(d => d.Name))}. " +
                    (devices.Any(d => d.Type == "cuda") ? "" : "For CUDA, start pwsh with $env:DIFFUSION_LIBTORCH pointing at a CUDA libtorch (a PyTorch install's torch/lib)."))
            });
    }
}

/// <summary>Loads the torch backend now, optionally from a given libtorch folder (a PyTorch install's torch/lib for CUDA).</summary>
[Cmdlet(VerbsData.Initialize, "DiffusionBackend")]
[OutputType(typeof(Diffusion.Engine.BackendInfo))]
public sealed class InitializeDiffusionBackendCommand : DiffusionCmdlet
{
    /// <summary>Folder with libtorch's libraries (libc10, libtorch_cpu, and for CUDA libtorch_cuda). Default: $env:DIFFUSION_LIBTORCH, else the bundled CPU libtorch.</summary>
    [Parameter(Position = 0)]
    public string? LibTorchPath { get; set; }

    protected override void EndProcessing()
    {
        var path = LibTorchPath is null ? null : GetUnresolvedProviderPathFromPSPath(LibTorchPath);
        WriteObject(Run(() => Diffusion.Engine.TorchBackend.EnsureLoaded(path)));
    }
}
