using Diffusion.Engine.Devices;
using Diffusion.Engine.IO;
using Diffusion.Engine.Sharding;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Placement;

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
/// Loads a model (built on the meta device) unit by unit onto the devices of a plan: resident units get their weights
/// from the files straight onto their device, in their dtype; offloaded units get them in CPU memory (or, for disk,
/// not at all) and are handed to <see cref="StreamedWeights"/>. The weight files are checked strictly first, exactly as
/// a plain load checks them. Then each unit gets placement hooks (<see cref="UnitHooks"/>) and the model its own
/// (<see cref="RootHooks"/>): the model's forward stays as it is.
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
        var placed = new List<PlacedUnit>();
        bool keepFiles = units.Any(u => u.Streamed && u.Device == DeviceNames.Disk);
        PlacedModel? result = null;
        try
        {
            using var _ = torch.no_grad();
            var modules = Modules(model);
            foreach (var unit in units)
            {
                if (!modules.TryGetValue(unit.Path, out var m))
                    throw new InvalidOperationException($"The plan names '{unit.Path}', which is not a module of the {model.GetType().Name}.");
                var targets = HookTargets(m, unit.Path, model);
                if (!unit.Streamed)
                {
                    var device = resolve(unit.Device);
                    weights.LoadInto(m, unit.Path, device, dtype);
                    placed.AddRange(targets.Select(t => new PlacedUnit(t.Module, new UnitPlacement(t.Path, unit.Device, device, null), unit.Path)));
                    continue;
                }
                // cpu: the weights loaded into CPU memory; disk: only the buffers, the parameters stay on meta (shape and dtype only).
                bool disk = unit.Device == DeviceNames.Disk;
                MetaModules.Replace(m, (key, old, isParameter) => disk && isParameter
                    ? torch.empty(old.shape, weights.DTypeFor(key, old, dtype), device: torch.META)
                    : weights.Make(key, old, torch.CPU, dtype), unit.Path);
                foreach (var (path, target) in targets)
                {
                    var streamed = StreamedWeights.TakeOver(target, path, executionDevice, disk ? weights : null);
                    placed.Add(new PlacedUnit(target, new UnitPlacement(path, unit.Device, executionDevice, streamed), unit.Path));
                }
            }
            LinkDiskReadAhead(placed);
            result = new PlacedModel(model, placed, null, keepFiles ? weights : null, executionDevice);
            return result;
        }
        finally
        {
            if (result is null)
                foreach (var u in placed) u.Placement.Streamed?.Dispose();
            if (result is null || !keepFiles) weights.Dispose();
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
        var modules = Modules(model);
        var targets = unitPaths.Append("").Distinct().SelectMany(path => HookTargets(modules[path], path, model).Select(t => (Unit: path, t.Path, t.Module))).ToList();
        WeightLoader.LoadInto(model, source, torch.CPU, dtype);
        var whole = StreamedWeights.TakeOver(model, "", executionDevice, null);
        var group = new OffloadGroup(whole, chain);
        var units = targets.Select(t => new PlacedUnit(t.Module, new UnitPlacement(t.Path, DeviceNames.Cpu, executionDevice, null, group), t.Unit)).ToList();
        return new PlacedModel(model, units, whole, null, executionDevice);
    }

    /// <summary>
    /// The modules that carry a unit's hooks: the unit itself when its call runs hooks (nn.Module&lt;...&gt;), else its
    /// children that do, each placed alone (the VAE: a unit as a whole, called through encode/decode, which run its
    /// encoder, decoder and quant convs). A unit with weights outside such modules cannot be placed from outside.
    /// </summary>
    private static List<(string Path, nn.Module Module)> HookTargets(nn.Module unit, string path, nn.Module model)
    {
        var targets = new List<(string, nn.Module)>();
        void Visit(nn.Module m, string p)
        {
            if (ForwardHooks.CanHook(m)) { targets.Add((p, m)); return; }
            if (m.named_parameters(recurse: false).Any() || m.named_buffers(recurse: false).Any())
                throw new InvalidOperationException(
                    $"The {model.GetType().Name}'s unit '{path}' holds weights in '{p}' ({m.GetType().Name}), whose forward runs no hooks: make it an nn.Module<...> called with .call(...) so placement can reach it.");
            foreach (var (name, child) in m.named_children()) Visit(child, p.Length == 0 ? name : p + "." + name);
        }
        Visit(unit, path);
        return targets;
    }

    /// <summary>
    /// Each unit learns the next disk unit after it in execution order (wrapping round: the last block of one step
    /// reads ahead the first of the next), whose weights it starts reading from the file while it computes. A unit
    /// placed through several children (the VAE) takes no part: which child runs next depends on the call.
    /// </summary>
    private static void LinkDiskReadAhead(IReadOnlyList<PlacedUnit> placed)
    {
        var single = placed.GroupBy(u => u.Unit).Where(g => g.Count() == 1).Select(g => g.Single().Placement).ToList();
        var disk = single.Select((u, i) => (u, i)).Where(x => x.u.Streamed?.FromDisk == true).Select(x => x.i).ToList();
        if (disk.Count == 0) return;
        for (int i = 0; i < single.Count; i++)
        {
            int next = disk.FirstOrDefault(j => j > i, disk[0]);
            if (next != i) single[i].NextFromDisk = single[next];
        }
    }

    private static Dictionary<string, nn.Module> Modules(nn.Module model)
    {
        var d = new Dictionary<string, nn.Module>(StringComparer.Ordinal) { [""] = model };
        foreach (var (name, m) in model.named_modules()) if (name.Length > 0) d[name] = m;
        return d;
    }
}
