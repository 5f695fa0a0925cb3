using System.Collections;
using System.Text;

using Diffusion.Engine.Devices;

namespace Diffusion.Engine.Sharding;

/// <summary>A model component to place: its layout and the activation memory it needs while it runs.</summary>
public sealed record ComponentForPlan(string Name, ModuleLayout Layout, ActivationEstimate Activations);

/// <summary>
/// Where every model component of a pipeline lives: <see cref="DeviceMap"/> is component -> device as diffusers'
/// hf_device_map prints it ("cuda:0,cuda:1" for a component split by blocks), <see cref="Components"/> the
/// module-level plan of each.
/// </summary>
public sealed class PipelineDevicePlan
{
    internal PipelineDevicePlan(string strategy, HeadroomPolicy policy, IReadOnlyList<ModelDevicePlan> components, IReadOnlyList<DeviceUsage> devices, string mainDevice,
        bool modelLevel = false)
    {
        Strategy = strategy; Policy = policy; Devices = devices; MainDevice = mainDevice; ModelLevel = modelLevel;
        Components = components.ToDictionary(c => c.Component, StringComparer.Ordinal);
        DeviceMap = new OrderedMap(components.Select(c => new KeyValuePair<string, string>(c.Component, c.Summary)));
    }

    public string Strategy { get; }
    public HeadroomPolicy Policy { get; }
    public OrderedMap DeviceMap { get; }
    public IReadOnlyDictionary<string, ModelDevicePlan> Components { get; }
    public IReadOnlyList<DeviceUsage> Devices { get; }
    /// <summary>The pipeline's device: where latents and embeddings are made (the first GPU, or cpu).</summary>
    public string MainDevice { get; }
    /// <summary>True when one model was planned module by module (-DeviceMap on a single component).</summary>
    public bool ModelLevel { get; }

    /// <summary>A model-level plan of the one model component being loaded.</summary>
    internal static PipelineDevicePlan ForOne(ModelDevicePlan plan) =>
        new(ModelDevicePlan.StrategyName(plan.Strategy), plan.Policy, [plan], plan.Devices, plan.ExecutionDevice, modelLevel: true);

    public string ToJson() => DeviceMap.ToJson();

    /// <summary>Devices whose budget the plan exceeds, as sentences for the user.</summary>
    public IReadOnlyList<string> Warnings => ModelLevel || Components.Count == 1
        ? Components.Values.Single().Warnings
        : Devices.Where(d => d.Free < 0).Select(d =>
            $"{d.Device} needs {MemorySize.Format(d.Weights + d.ActivationHeadroom)} (weights and activation head-room) but its budget is {MemorySize.Format(d.Budget!.Value)}: " +
            "it may run out of memory.").Concat(Components.Values.Where(c => c.UnitDevices.Values.Distinct().Count() > 1).SelectMany(c => c.Warnings)).ToList();

    public override string ToString()
    {
        if (ModelLevel || Components.Count == 1) return Components.Values.Single().ToString();
        var sb = new StringBuilder();
        sb.AppendLine($"Pipeline device map '{Strategy}', main device {MainDevice}:");
        foreach (var d in Devices.Where(d => d.Weights > 0 || d.ActivationHeadroom > 0))
            sb.AppendLine($"  {d.Device}: weights {MemorySize.Format(d.Weights)}" +
                (d.ActivationHeadroom > 0 ? $", activation head-room {MemorySize.Format(d.ActivationHeadroom)}" : "") +
                (d.Budget is long b ? $", budget {MemorySize.Format(b)}" : ""));
        sb.AppendLine(ToJson());
        foreach (var w in Warnings) sb.AppendLine($"warning: {w}");
        foreach (var c in Components.Values.Where(c => c.UnitDevices.Values.Distinct().Count() > 1))
            sb.AppendLine().Append(c.ToString()).AppendLine();
        return sb.ToString().TrimEnd();
    }
}

/// <summary>
/// Pipeline-level maps. 'balanced' is diffusers' _assign_components_to_devices: components by size, largest first,
/// dealt to the GPUs (largest memory first) in a back-and-forth cycle, each to the next GPU of the cycle if it fits.
/// Where diffusers sends a component that does not fit that GPU to the CPU, this planner (activations policy) tries
/// the other GPUs, and if none holds it whole, splits it by blocks across the GPUs' remaining memory (then cpu, then
/// disk) with the model-level balanced plan. A GPU keeps the largest activation need among the components it runs.
/// </summary>
public static class PipelineDevicePlanner
{
    public static PipelineDevicePlan Balanced(IReadOnlyList<ComponentForPlan> components, IReadOnlyList<DeviceBudget> budgets,
        HeadroomPolicy policy = HeadroomPolicy.Activations)
    {
        var sorted = components.Select((c, i) => (c, i)).OrderByDescending(x => x.c.Layout.TotalBytes).ThenBy(x => x.i).Select(x => x.c).ToList();
        var gpus = budgets.Where(b => b.IsGpu).OrderByDescending(b => b.Bytes ?? long.MaxValue).ThenBy(b => DeviceNames.Order(b.Device)).ToList();
        var cycle = gpus.Concat(Enumerable.Reverse(gpus)).Select(b => b.Device).ToList();
        var budget = budgets.ToDictionary(b => b.Device, b => b.Bytes);
        var used = budgets.Select(b => b.Device).Append(DeviceNames.Cpu).Append(DeviceNames.Disk).Distinct().ToDictionary(d => d, _ => 0L);
        var activation = used.Keys.ToDictionary(d => d, _ => 0L);
        var plans = new Dictionary<string, ModelDevicePlan>(StringComparer.Ordinal);
        int next = 0;

        bool Fits(ComponentForPlan c, string d)
        {
            long room = budget[d] ?? long.MaxValue;
            return policy == HeadroomPolicy.Accelerate
                ? c.Layout.TotalBytes <= room - used[d]
                : used[d] + c.Layout.TotalBytes + Math.Max(activation[d], c.Activations.Bytes) <= room;
        }

        void PlaceWhole(ComponentForPlan c, string d)
        {
            used[d] += c.Layout.TotalBytes;
            activation[d] = Math.Max(activation[d], c.Activations.Bytes);
            plans[c.Name] = DeviceMapPlanner.Whole(c.Layout, d, c.Activations, c.Name);
        }

        foreach (var c in sorted)
        {
            if (cycle.Count == 0) { PlaceWhole(c, DeviceNames.Cpu); continue; }
            var d = cycle[next % cycle.Count];
            if (Fits(c, d)) { PlaceWhole(c, d); next++; continue; }
            if (policy == HeadroomPolicy.Accelerate) { PlaceWhole(c, DeviceNames.Cpu); continue; }
            var other = gpus.Select(g => g.Device).Where(g => g != d && Fits(c, g)).OrderByDescending(g => (budget[g] ?? long.MaxValue) - used[g]).FirstOrDefault();
            if (other is not null) { PlaceWhole(c, other); continue; }
            if (!c.Layout.IsSplittable) { PlaceWhole(c, DeviceNames.Cpu); continue; }

            // Split by blocks over what is left: each GPU's room after the weights already there, less the part of
            // its activation head-room this component does not share (the model plan reserves its own activations).
            var remaining = budgets.Select(b => new DeviceBudget(b.Device, b.Bytes is long bytes
                ? Math.Max(0, bytes - used[b.Device] - (b.IsGpu ? Math.Max(0, activation[b.Device] - c.Activations.Bytes) : 0))
                : null)).ToList();
            var plan = DeviceMapPlanner.Plan(c.Layout, remaining, DeviceMapStrategy.Balanced, c.Activations, policy, budgetsFromUser: true, component: c.Name);
            foreach (var u in c.Layout.Units) used[plan.UnitDevices[u.Path]] += u.Bytes;
            foreach (var g in plan.UnitDevices.Values.Distinct().Where(DeviceNames.IsGpu).Append(plan.ExecutionDevice))
                activation[g] = Math.Max(activation[g], c.Activations.Bytes);
            plans[c.Name] = plan;
        }

        var ordered = components.Select(c => plans[c.Name]).ToList();
        var main = gpus.Count > 0 ? gpus.OrderBy(g => DeviceNames.Order(g.Device)).First().Device : DeviceNames.Cpu;
        var usage = used.Keys.OrderBy(DeviceNames.Order).Select(d => new DeviceUsage(d, budget.GetValueOrDefault(d), null, used[d], activation[d], 0)).ToList();
        return new PipelineDevicePlan("balanced", policy, ordered, usage, main);
    }

    /// <summary>
    /// A pipeline map the user wrote: component -> device, or component -> a module map (hashtable) for a model that
    /// can be split. Every loaded model component must be mapped; unknown components and devices are errors.
    /// </summary>
    public static PipelineDevicePlan FromUserMap(IReadOnlyList<ComponentForPlan> components, IDictionary userMap, IReadOnlyList<DeviceBudget> budgets,
        IReadOnlyCollection<string>? knownDevices = null)
    {
        var byName = components.ToDictionary(c => c.Name, StringComparer.Ordinal);
        var plans = new Dictionary<string, ModelDevicePlan>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in userMap)
        {
            var name = e.Key?.ToString()?.Trim() ?? "";
            if (!byName.TryGetValue(name, out var c))
                throw new DiffusionException("DeviceMapUnknownComponent", DiffusionErrorKind.InvalidArgument,
                    $"-DeviceMap maps '{name}', which is not a model component being loaded. Map these: {string.Join(", ", components.Select(x => x.Name))}.", "DeviceMap");
            if (e.Value is IDictionary moduleMap)
                plans[name] = DeviceMapPlanner.FromUserMap(c.Layout, moduleMap, budgets, c.Activations, knownDevices, name);
            else
            {
                var device = DeviceNames.Normalize(e.Value, $"-DeviceMap value for '{name}'");
                if (knownDevices is not null && !knownDevices.Contains(device))
                    throw new DiffusionException("UnknownDevice", DiffusionErrorKind.InvalidArgument,
                        $"-DeviceMap puts '{name}' on '{device}', which is not a device here. Devices: {string.Join(", ", knownDevices)} (see Get-DiffusionDevice).", "DeviceMap");
                plans[name] = DeviceMapPlanner.Whole(c.Layout, device, c.Activations, name,
                    budgets.Where(b => b.IsGpu).Select(b => b.Device).FirstOrDefault() ?? DeviceNames.Cpu);
            }
        }
        var missing = components.Where(c => !plans.ContainsKey(c.Name)).Select(c => c.Name).ToList();
        if (missing.Count > 0)
            throw new DiffusionException("DeviceMapUnmappedModule", DiffusionErrorKind.InvalidArgument,
                $"-DeviceMap leaves {string.Join(", ", missing)} without a device. Map every model component being loaded.", "DeviceMap");
        var ordered = components.Select(c => plans[c.Name]).ToList();
        var used = new Dictionary<string, long>();
        var activation = new Dictionary<string, long>();
        foreach (var p in ordered)
        {
            foreach (var u in p.Layout.Units) used[p.UnitDevices[u.Path]] = used.GetValueOrDefault(p.UnitDevices[u.Path]) + u.Bytes;
            foreach (var d in p.UnitDevices.Values.Distinct().Append(p.ExecutionDevice))
                if (DeviceNames.IsGpu(d) || d == p.ExecutionDevice) activation[d] = Math.Max(activation.GetValueOrDefault(d), p.Activations.Bytes);
        }
        var budget = budgets.ToDictionary(b => b.Device, b => b.Bytes);
        var devices = used.Keys.Union(activation.Keys).OrderBy(DeviceNames.Order)
            .Select(d => new DeviceUsage(d, budget.GetValueOrDefault(d), null, used.GetValueOrDefault(d), activation.GetValueOrDefault(d), 0)).ToList();
        var main = ordered.Select(p => p.ExecutionDevice).Where(DeviceNames.IsGpu).OrderBy(DeviceNames.Order).FirstOrDefault() ?? DeviceNames.Cpu;
        return new PipelineDevicePlan("user map", HeadroomPolicy.Activations, ordered, devices, main);
    }
}
