using Diffusion.Engine.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Diffusion.Engine.Sharding;

/// <summary>
/// The weights of an offloaded module (a unit, or a whole component under model offload). At rest the module's
/// parameters are empty tensors on the execution device and the weights live elsewhere: a host copy in CPU memory
/// (pinned when the execution device is a GPU, so copies can be non-blocking) or the safetensors file itself (disk).
/// <see cref="In"/> points every parameter at a fresh copy on the execution device (Tensor.set_, which keeps the
/// Parameter objects and so every reference the model holds); <see cref="Out"/> points them back at empty tensors,
/// which frees the copies. Parameters never change device, so state_dict keys, fields and dtypes stay as they were.
/// </summary>
internal sealed class StreamedWeights : IDisposable
{
    private readonly List<(Parameter Param, Func<Tensor> Fetch, Tensor? Host)> _params;
    private readonly Device _device;

    private StreamedWeights(List<(Parameter, Func<Tensor>, Tensor?)> parameters, Device device)
    {
        _params = parameters; _device = device;
    }

    public bool IsIn { get; private set; }
    /// <summary>Bytes of the weights at their dtype (what <see cref="In"/> puts on the execution device).</summary>
    public long Bytes { get; private init; }
    /// <summary>Bytes held in CPU memory while at rest (host copies; 0 for disk).</summary>
    public long HostBytes { get; private init; }
    public int TimesIn { get; private set; }

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
        var list = new List<(Parameter, Func<Tensor>, Tensor?)>();
        foreach (var (name, p) in module.named_parameters())
        {
            var dtype = dtypes[name];
            var key = modulePath.Length == 0 ? name : modulePath + "." + name;
            if (hosts.TryGetValue(name, out var host))
                list.Add((p, () => host.to(dtype, device, copy: true, non_blocking: pin), host));
            else
                list.Add((p, () => { using var cpu = disk!.Read(key); return cpu.to(dtype, device, copy: true, non_blocking: false); }, null));
        }
        return new StreamedWeights(list, device) { Bytes = bytes, HostBytes = hostBytes };
    }

    /// <summary>Copies the weights onto the execution device (no-op when they are there).</summary>
    public void In()
    {
        if (IsIn) return;
        using var _ = torch.no_grad();
        foreach (var (p, fetch, _) in _params)
        {
            using var copy = fetch();
            p.set_(copy);
        }
        IsIn = true;
        TimesIn++;
    }

    /// <summary>Lets go of the copies: the parameters are empty again.</summary>
    public void Out()
    {
        if (!IsIn) return;
        using var _ = torch.no_grad();
        foreach (var (p, _, _) in _params)
        {
            using var empty = torch.empty(0, p.dtype, _device);
            p.set_(empty);
        }
        IsIn = false;
    }

    public void Dispose()
    {
        Out();
        foreach (var (_, _, host) in _params) host?.Dispose();
        _params.Clear();
    }
}
