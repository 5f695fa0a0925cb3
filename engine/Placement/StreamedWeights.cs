using Diffusion.Engine.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Diffusion.Engine.Placement;

/// <summary>
/// The weights of an offloaded module (a unit, or a whole component under model offload). At rest the module's
/// parameters are empty tensors on the execution device and the weights live elsewhere: a host copy in CPU memory
/// (pinned when the execution device is a GPU, so copies can be non-blocking) or the safetensors file itself (disk).
/// <see cref="In"/> points every parameter at a fresh copy on the execution device (Tensor.set_, which keeps the
/// Parameter objects and so every reference the model holds); <see cref="Out"/> points them back at empty tensors,
/// which frees the copies. Parameters never change device, so state_dict keys, fields and dtypes stay as they were.
/// Disk weights can be read ahead (<see cref="Prefetch"/>) on a worker thread while the unit before this one computes.
/// </summary>
internal sealed class StreamedWeights : IDisposable
{
    /// <summary>DIFFUSION_NO_PREFETCH=1 (or true) reads disk units only when they run; read at each call, so $env: works any time.</summary>
    internal static bool PrefetchEnabled => Environment.GetEnvironmentVariable("DIFFUSION_NO_PREFETCH") is not ("1" or "true");

    // Host: the resident host copy (cpu units), or null when the weight is read from the file by ReadHost.
    private readonly List<(Parameter Param, ScalarType DType, Tensor? Host, Func<Tensor>? ReadHost)> _params;
    private readonly Device _device;
    private readonly bool _pin;
    private Task<Tensor[]>? _prefetch;

    private StreamedWeights(List<(Parameter, ScalarType, Tensor?, Func<Tensor>?)> parameters, Device device, bool pin)
    {
        _params = parameters; _device = device; _pin = pin;
        FromDisk = parameters.Any(p => p.Item4 is not null);
    }

    public bool IsIn { get; private set; }
    /// <summary>Bytes of the weights at their dtype (what <see cref="In"/> puts on the execution device).</summary>
    public long Bytes { get; private init; }
    /// <summary>Bytes held in CPU memory while at rest (host copies; 0 for disk).</summary>
    public long HostBytes { get; private init; }
    public int TimesIn { get; private set; }
    /// <summary>How often <see cref="In"/> found its disk weights already read by <see cref="Prefetch"/>.</summary>
    public int TimesPrefetched { get; private set; }
    /// <summary>Whether the weights come from the file on each use.</summary>
    public bool FromDisk { get; }

    /// <summary>
    /// Takes over the parameters of <paramref name="module"/>, which are in their dtype and either hold their weights in
    /// CPU memory or, when <paramref name="disk"/> is given, are meta tensors (the weights are read from the file on each
    /// use): keeps host copies, then gives the module empty parameters on <paramref name="device"/> and moves its buffers there.
    /// </summary>
    public static StreamedWeights TakeOver(nn.Module module, string modulePath, Device device, CheckedWeights? disk)
    {
        using var _ = torch.no_grad();
        bool pin = device.type == DeviceType.CUDA;
        var hosts = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var dtypes = new Dictionary<string, ScalarType>(StringComparer.Ordinal);
        long bytes = 0, hostBytes = 0;
        foreach (var (name, p) in module.named_parameters())
        {
            dtypes[name] = p.dtype;
            bytes += p.numel() * p.element_size();
            if (disk is null)
            {
                var host = pin ? p.detach().pin_memory() : p.detach(); // an alias keeps the storage once the parameter lets go
                hosts[name] = host.DetachFromDisposeScope();
                hostBytes += p.numel() * p.element_size();
            }
        }
        MetaModules.Replace(module, (_, old, isParameter) => isParameter ? torch.empty(0, old.dtype, device) : old.to(device), keepShape: false);
        var list = new List<(Parameter, ScalarType, Tensor?, Func<Tensor>?)>();
        foreach (var (name, p) in module.named_parameters())
        {
            var dtype = dtypes[name];
            var key = modulePath.Length == 0 ? name : modulePath + "." + name;
            if (hosts.TryGetValue(name, out var host))
                list.Add((p, dtype, host, null));
            else
                list.Add((p, dtype, null, () => // on the CPU in the weight's dtype (pinned for a GPU): only the copy to the device is left
                {
                    var cast = disk!.Read(key, torch.CPU, dtype);
                    if (!pin) return cast;
                    using (cast) return cast.pin_memory();
                }));
        }
        return new StreamedWeights(list, device, pin) { Bytes = bytes, HostBytes = hostBytes };
    }

    /// <summary>
    /// Starts reading the disk weights into host memory on a worker thread, so that <see cref="In"/> finds them there
    /// (the placement hooks call it for the next offloaded unit while the current one computes). No-op for host copies, when the
    /// weights are in, or when a read is under way.
    /// </summary>
    public void Prefetch()
    {
        if (!PrefetchEnabled || IsIn || _prefetch is not null || !FromDisk) return;
        var readers = _params.Select(p => p.ReadHost).ToArray();
        _prefetch = Task.Run(() =>
        {
            var staged = new Tensor[readers.Length];
            try
            {
                for (int i = 0; i < readers.Length; i++) staged[i] = readers[i]?.Invoke()!;
                return staged;
            }
            catch
            {
                foreach (var t in staged) t?.Dispose();
                throw;
            }
        });
    }

    /// <summary>Copies the weights onto the execution device (no-op when they are there).</summary>
    public void In()
    {
        if (IsIn) return;
        using var _ = torch.no_grad();
        var staged = TakePrefetched();
        try
        {
            for (int i = 0; i < _params.Count; i++)
            {
                var (p, dtype, host, readHost) = _params[i];
                if (host is not null)
                {
                    using var copy = host.to(dtype, _device, copy: true, non_blocking: _pin);
                    p.set_(copy);
                    continue;
                }
                using var read = staged?[i] ?? readHost!();
                if (staged is not null) staged[i] = null!; // disposed here
                if (TensorDevices.IsOn(read, _device)) p.set_(read); // CPU execution: the read tensor is the weight
                else
                {
                    using var copy = read.to(_device, non_blocking: _pin);
                    p.set_(copy);
                }
            }
        }
        finally
        {
            if (staged is not null) foreach (var t in staged) t?.Dispose();
        }
        if (staged is not null) TimesPrefetched++;
        IsIn = true;
        TimesIn++;
    }

    /// <summary>The tensors a prefetch read (waiting for it to finish), or null when none was started; a failed read throws here.</summary>
    private Tensor[]? TakePrefetched()
    {
        if (_prefetch is not { } task) return null;
        _prefetch = null;
        return task.GetAwaiter().GetResult();
    }

    /// <summary>Lets go of the copies: the parameters are empty again.</summary>
    public void Out()
    {
        if (!IsIn) return;
        using var _ = torch.no_grad();
        foreach (var (p, _, _, _) in _params)
        {
            using var empty = torch.empty(0, p.dtype, _device);
            p.set_(empty);
        }
        IsIn = false;
    }

    public void Dispose()
    {
        Out();
        try { if (TakePrefetched() is { } staged) foreach (var t in staged) t?.Dispose(); }
        catch (Exception) { /* a failed read ahead holds nothing */ }
        foreach (var (_, _, host, _) in _params) host?.Dispose();
        _params.Clear();
    }
}
