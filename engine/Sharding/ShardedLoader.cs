using Diffusion.Engine.Devices;
using Diffusion.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Sharding;

/// <summary>How one model component is placed: its plan, the devices the plan's names stand for, and the model-offload chain.</summary>
internal sealed record ComponentPlacement(ModelDevicePlan Plan, Device ExecutionDevice, Func<string, Device> Resolve, OffloadChain Chain)
{
    public PlacedModel Place(nn.Module model, WeightSource source, ScalarType dtype) =>
        Plan.Strategy == DeviceMapStrategy.ModelOffload
            ? ShardedLoader.LoadWhole(model, source, dtype, ExecutionDevice, Plan.Layout.Units.Select(u => u.Path), Chain)
            : ShardedLoader.Load(model, source, dtype,
                Plan.Layout.Units.Select(u => new UnitSpec(u.Path, Plan.UnitDevices[u.Path], Plan.IsOffloaded(Plan.UnitDevices[u.Path]))).ToList(),
                ExecutionDevice, Resolve);
}

/// <summary>One unit of a model to place: its device from the plan and whether its weights stream to the execution device.</summary>
internal sealed record UnitSpec(string Path, string Device, bool Streamed);

/// <summary>
/// A model whose units were placed by a device map (or which is offloaded whole): the placements registered with
/// <see cref="UnitDispatch"/>, the streamed weights, and the weight files kept open for disk units.
/// </summary>
internal sealed class PlacedModel : IDisposable
{
    private readonly List<(nn.Module Module, UnitPlacement Placement)> _units;
    private readonly CheckedWeights? _disk;

    internal PlacedModel(List<(nn.Module, UnitPlacement)> units, StreamedWeights? whole, CheckedWeights? disk, Device executionDevice)
    {
        _units = units; Whole = whole; _disk = disk; ExecutionDevice = executionDevice;
    }

    public Device ExecutionDevice { get; }
    public IReadOnlyList<UnitPlacement> Placements => _units.Select(u => u.Placement).ToList();
    /// <summary>Model offload: the whole model's weights, streamed in when the pipeline needs the component.</summary>
    public StreamedWeights? Whole { get; }

    /// <summary>Bytes of weights held at rest per device (host copies count for cpu; disk holds nothing in memory).</summary>
    public IReadOnlyDictionary<string, long> BytesAtRest()
    {
        var bytes = new Dictionary<string, long>(StringComparer.Ordinal);
        void Add(string d, long b) { if (b > 0) bytes[d] = bytes.GetValueOrDefault(d) + b; }
        if (Whole is not null) Add(DeviceNames.Cpu, Whole.HostBytes);
        foreach (var (module, p) in _units)
        {
            if (p.Group is not null) continue; // counted with Whole
            if (p.Streamed is not null) Add(DeviceNames.Cpu, p.Streamed.HostBytes);
            else Add(DeviceCatalog.Name(p.ExecutionDevice), module.parameters().Sum(t => t.numel() * t.element_size()));
        }
        return bytes;
    }

    public void Dispose()
    {
        foreach (var (module, p) in _units)
        {
            UnitDispatch.Unregister(module);
            p.Streamed?.Dispose();
        }
        Whole?.Dispose();
        _disk?.Dispose();
    }
}

/// <summary>
/// Loads a model (built on the meta device) unit by unit onto the devices of a plan: resident units get their weights
/// from the files straight onto their device, in their dtype; offloaded units get them in CPU memory (or, for disk,
/// not at all) and are handed to <see cref="StreamedWeights"/>. The weight files are checked strictly first, exactly as a plain load checks them.
/// </summary>
internal static class ShardedLoader
{
    public static PlacedModel Load(nn.Module model, IReadOnlyList<string> files, ScalarType dtype, Func<string, string>? moduleKey,
        IReadOnlyList<UnitSpec> units, Device executionDevice, Func<string, Device> resolve)
        => Load(model, WeightSource.FromFiles(files, moduleKey), dtype, units, executionDevice, resolve);

    public static PlacedModel Load(nn.Module model, WeightSource source, ScalarType dtype,
        IReadOnlyList<UnitSpec> units, Device executionDevice, Func<string, Device> resolve)
    {
        var weights = CheckedWeights.Open(model, source);
        var placed = new List<(nn.Module, UnitPlacement)>();
        bool keepFiles = units.Any(u => u.Streamed && u.Device == DeviceNames.Disk);
        bool done = false;
        try
        {
            using var _ = torch.no_grad();
            var modules = Modules(model);
            foreach (var unit in units)
            {
                if (!modules.TryGetValue(unit.Path, out var m))
                    throw new InvalidOperationException($"The plan names '{unit.Path}', which is not a module of the {model.GetType().Name}.");
                UnitPlacement placement;
                if (!unit.Streamed)
                {
                    var device = resolve(unit.Device);
                    weights.LoadInto(m, unit.Path, device, dtype);
                    placement = new UnitPlacement(unit.Path, unit.Device, device, null);
                }
                else
                {
                    // cpu: the weights loaded into CPU memory; disk: only the buffers, the parameters stay on meta (shape and dtype only).
                    bool disk = unit.Device == DeviceNames.Disk;
                    MetaModules.Replace(m, (key, old, isParameter) => disk && isParameter
                        ? torch.empty(old.shape, weights.DTypeFor(key, old, dtype), device: torch.META)
                        : weights.Make(key, old, torch.CPU, dtype), unit.Path);
                    var streamed = StreamedWeights.TakeOver(m, unit.Path, executionDevice, disk ? weights : null);
                    placement = new UnitPlacement(unit.Path, unit.Device, executionDevice, streamed);
                }
                placed.Add((m, placement));
                UnitDispatch.Register(m, placement);
            }
            LinkDiskReadAhead(placed.Select(u => u.Item2).ToList());
            done = true;
            return new PlacedModel(placed, null, keepFiles ? weights : null, executionDevice);
        }
        finally
        {
            if (!done)
                foreach (var (m, p) in placed) { UnitDispatch.Unregister(m); p.Streamed?.Dispose(); }
            if (!done || !keepFiles) weights.Dispose();
        }
    }

    /// <summary>
    /// Model offload: the whole model loaded into CPU memory; entering any of <paramref name="unitPaths"/> (the model's
    /// units, "" for the model itself) brings all of it to <paramref name="executionDevice"/> and sends the chain's
    /// previous model back.
    /// </summary>
    public static PlacedModel LoadWhole(nn.Module model, IReadOnlyList<string> files, ScalarType dtype, Func<string, string>? moduleKey,
        Device executionDevice, IEnumerable<string> unitPaths, OffloadChain chain)
        => LoadWhole(model, WeightSource.FromFiles(files, moduleKey), dtype, executionDevice, unitPaths, chain);

    public static PlacedModel LoadWhole(nn.Module model, WeightSource source, ScalarType dtype,
        Device executionDevice, IEnumerable<string> unitPaths, OffloadChain chain)
    {
        WeightLoader.LoadInto(model, source, torch.CPU, dtype);
        var whole = StreamedWeights.TakeOver(model, "", executionDevice, null);
        var group = new OffloadGroup(whole, chain);
        var modules = Modules(model);
        var units = new List<(nn.Module, UnitPlacement)>();
        foreach (var path in unitPaths.Append("").Distinct())
        {
            var placement = new UnitPlacement(path, DeviceNames.Cpu, executionDevice, null, group);
            units.Add((modules[path], placement));
            UnitDispatch.Register(modules[path], placement);
        }
        return new PlacedModel(units, whole, null, executionDevice);
    }

    /// <summary>
    /// Each unit learns the next disk unit after it in execution order (wrapping round: the last block of one step
    /// reads ahead the first of the next), whose weights it starts reading from the file while it computes.
    /// </summary>
    private static void LinkDiskReadAhead(IReadOnlyList<UnitPlacement> units)
    {
        var disk = units.Select((u, i) => (u, i)).Where(x => x.u.Streamed?.FromDisk == true).Select(x => x.i).ToList();
        if (disk.Count == 0) return;
        for (int i = 0; i < units.Count; i++)
        {
            int next = disk.FirstOrDefault(j => j > i, disk[0]);
            if (next != i) units[i].NextFromDisk = units[next];
        }
    }

    private static Dictionary<string, nn.Module> Modules(nn.Module model)
    {
        var d = new Dictionary<string, nn.Module>(StringComparer.Ordinal) { [""] = model };
        foreach (var (name, m) in model.named_modules()) if (name.Length > 0) d[name] = m;
        return d;
    }
}
