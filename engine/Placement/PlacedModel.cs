using Diffusion.Engine.Devices;
using Diffusion.Engine.IO;
using Diffusion.Engine.Sharding;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Placement;

/// <summary>A module that carries placement hooks, its placement, and the plan's unit it belongs to.</summary>
internal sealed record PlacedUnit(nn.Module Module, UnitPlacement Placement, string Unit);

/// <summary>
/// A model whose units were placed by a device map (or which is offloaded whole): the placement hooks registered on
/// its units and on the model itself, the streamed weights, and the weight files kept open for disk units. Disposing
/// removes the hooks and frees the streamed weights.
/// </summary>
internal sealed class PlacedModel : IDisposable
{
    private readonly List<PlacedUnit> _units;
    private readonly CheckedWeights? _disk;
    private readonly List<Action> _removeHooks = [];
    private readonly PlacementSession _session;

    internal PlacedModel(nn.Module model, List<PlacedUnit> units, StreamedWeights? whole, CheckedWeights? disk, Device executionDevice)
    {
        _units = units; Whole = whole; _disk = disk; ExecutionDevice = executionDevice;
        _session = new PlacementSession(units.Select(u => u.Placement).ToList());
        var root = units.FirstOrDefault(u => ReferenceEquals(u.Module, model));
        try
        {
            foreach (var u in units.Where(u => !ReferenceEquals(u.Module, model)))
                _removeHooks.Add(ForwardHooks.TryAttach(u.Module, new UnitHooks(_session, u.Placement))
                    ?? throw new InvalidOperationException($"The unit '{u.Placement.Path}' ({u.Module.GetType().Name}) runs no forward hooks."));
            // The model itself: calls are bracketed and outputs handed back (a model without hooks, the VAE, has none to bracket).
            if (ForwardHooks.TryAttach(model, new RootHooks(_session, root?.Placement)) is { } removeRoot) _removeHooks.Add(removeRoot);
        }
        catch
        {
            RemoveHooks();
            throw;
        }
    }

    public Device ExecutionDevice { get; }
    public IReadOnlyList<UnitPlacement> Placements => _units.Select(u => u.Placement).ToList();
    /// <summary>Model offload: the whole model's weights, streamed in when the pipeline needs the component.</summary>
    public StreamedWeights? Whole { get; }

    /// <summary>Lets go of every unit's streamed weights still in (after a call that threw; a finished call leaves none).</summary>
    public void ReleaseStreamed() => _session.ReleaseStreamed(except: null);

    /// <summary>Bytes of weights held at rest per device (host copies count for cpu; disk holds nothing in memory).</summary>
    public IReadOnlyDictionary<string, long> BytesAtRest()
    {
        var bytes = new Dictionary<string, long>(StringComparer.Ordinal);
        void Add(string d, long b) { if (b > 0) bytes[d] = bytes.GetValueOrDefault(d) + b; }
        if (Whole is not null) Add(DeviceNames.Cpu, Whole.HostBytes);
        foreach (var (module, p, _) in _units)
        {
            if (p.Group is not null) continue; // counted with Whole
            if (p.Streamed is not null) Add(DeviceNames.Cpu, p.Streamed.HostBytes);
            else Add(DeviceCatalog.Name(p.ExecutionDevice), module.parameters().Sum(t => t.numel() * t.element_size()));
        }
        return bytes;
    }

    private void RemoveHooks()
    {
        foreach (var remove in _removeHooks) remove();
        _removeHooks.Clear();
    }

    public void Dispose()
    {
        RemoveHooks();
        foreach (var u in _units) u.Placement.Streamed?.Dispose();
        Whole?.Dispose();
        _disk?.Dispose();
    }
}
