namespace Diffusion.Engine.Sharding;

/// <summary>
/// Model-level device maps, planned from a <see cref="ModuleLayout"/> without loading weights. The placement is
/// accelerate's infer_auto_device_map: walk the top-level modules in order, put a module on the current device if it
/// fits, else split it into its children if it may be split, else move on to the next device (GPUs, then cpu, then
/// disk, which has no limit). balanced / auto / balanced_low_0 first cap the GPUs as get_balanced_memory does.
/// What is kept free on a device follows the <see cref="HeadroomPolicy"/>: accelerate's (the largest remaining layer
/// on the first GPU and the CPU) or this module's (activations at the requested size where computing happens, and
/// streaming room only where something is offloaded).
/// </summary>
public static class DeviceMapPlanner
{
    private const int MaxRounds = 8;

    /// <param name="budgets">Devices with their memory (accelerate's max_memory); disk is added, unlimited, when absent.</param>
    /// <param name="budgetsFromUser">False when the budgets are the devices' free memory (accelerate then keeps 10% of a lone GPU).</param>
    public static ModelDevicePlan Plan(ModuleLayout layout, IReadOnlyList<DeviceBudget> budgets, DeviceMapStrategy strategy,
        ActivationEstimate activations, HeadroomPolicy policy = HeadroomPolicy.Activations, bool budgetsFromUser = true, string component = "")
    {
        if (strategy == DeviceMapStrategy.User)
            throw new ArgumentException("A user map is placed with FromUserMap.", nameof(strategy));
        var devices = WithDisk(budgets);
        var gpus = devices.Where(d => d.IsGpu).Select(d => d.Device).ToList();
        var caps = strategy == DeviceMapStrategy.Sequential
            ? devices.ToDictionary(d => d.Device, d => d.Bytes)
            : BalancedCaps(layout, devices, strategy == DeviceMapStrategy.BalancedLow0, policy == HeadroomPolicy.Accelerate && !budgetsFromUser);

        if (policy == HeadroomPolicy.Accelerate)
        {
            var mainDevices = gpus.Count > 0 ? new HashSet<string> { gpus[0], DeviceNames.Cpu } : new HashSet<string> { DeviceNames.Cpu };
            var reservedFor = new Dictionary<string, long>();
            // accelerate subtracts the reservation from the (balanced) cap.
            var map = Infer(layout, devices, (device, largestLayer) =>
            {
                if (caps[device] is not long cap) return null;
                if (!mainDevices.Contains(device)) return cap;
                reservedFor[device] = Math.Max(reservedFor.GetValueOrDefault(device), largestLayer);
                return cap - largestLayer;
            });
            var exec = ExecutionDevice(layout, map, gpus);
            var usage = Usage(layout, map, devices, caps, d => 0, d => reservedFor.GetValueOrDefault(d));
            return new ModelDevicePlan(component, layout, strategy, policy, map, exec, usage, activations with { Note = "none kept (accelerate's policy): " + activations.Note });
        }

        // This module's policy: activations wherever computing happens; streaming room only when something streams.
        long stream = 0, diskStage = 0;
        OrderedMap placed = null!;
        for (int round = 0; round < MaxRounds; round++)
        {
            long s = stream, ds = diskStage;
            // The balanced cap spreads weights; the head-room is physical memory: the limit is the smaller of the cap and
            // the budget less the head-room.
            placed = Infer(layout, devices, (device, _) => devices.First(d => d.Device == device).Bytes is long budget
                ? Math.Min(caps[device]!.Value, budget - Reserve(device, gpus, activations.Bytes, s, ds))
                : null);
            var (needStream, needStage) = StreamingNeeds(layout, placed, gpus);
            if (needStream <= stream && needStage <= diskStage) break;
            stream = Math.Max(stream, needStream);
            diskStage = Math.Max(diskStage, needStage);
        }
        var execution = ExecutionDevice(layout, placed, gpus);
        var (finalStream, finalStage) = StreamingNeeds(layout, placed, gpus);
        var devicesUsage = Usage(layout, placed, devices, caps,
            d => DeviceNames.IsGpu(d) ? (placed.Values.Contains(d) || d == execution ? activations.Bytes : 0) : d == DeviceNames.Cpu && gpus.Count == 0 ? activations.Bytes : 0,
            d => d == execution ? finalStream : d == DeviceNames.Cpu && gpus.Count > 0 ? finalStage : 0);
        return new ModelDevicePlan(component, layout, strategy, policy, placed, execution, devicesUsage, activations);
    }

    /// <summary>
    /// A map the user wrote (module path -> device), checked against the model: every key must be a module of the model
    /// at or above a unit, every unit must be covered (the most specific key wins, as in accelerate), and every device
    /// must be one of <paramref name="knownDevices"/> (null: any GPU, cpu or disk).
    /// </summary>
    public static ModelDevicePlan FromUserMap(ModuleLayout layout, System.Collections.IDictionary userMap, IReadOnlyList<DeviceBudget> budgets,
        ActivationEstimate activations, IReadOnlyCollection<string>? knownDevices = null, string component = "")
    {
        var what = component.Length > 0 ? $"-DeviceMap for '{component}'" : "-DeviceMap";
        var keys = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry e in userMap)
        {
            var key = e.Key?.ToString()?.Trim() ?? "";
            var device = DeviceNames.Normalize(e.Value, $"{what} value for '{key}'");
            if (knownDevices is not null && !knownDevices.Contains(device))
                throw new DiffusionException("UnknownDevice", DiffusionErrorKind.InvalidArgument,
                    $"{what} puts '{key}' on '{device}', which is not a device here. Devices: {string.Join(", ", knownDevices)} (see Get-DiffusionDevice).", "DeviceMap");
            var node = layout.Find(key);
            if (node is null)
            {
                var insideUnit = layout.Units.FirstOrDefault(u => u.Path.Length > 0 && key.StartsWith(u.Path + ".", StringComparison.Ordinal));
                if (insideUnit is not null)
                    throw new DiffusionException("DeviceMapSplitsBlock", DiffusionErrorKind.InvalidArgument,
                        $"{what} maps '{key}', which is inside '{insideUnit.Path}' ({insideUnit.Kind}); that module is placed whole. Map '{insideUnit.Path}' instead.", "DeviceMap");
                throw new DiffusionException("DeviceMapUnknownModule", DiffusionErrorKind.InvalidArgument,
                    $"{what} maps '{key}', which is not a module of this {layout.ClassName}. Its top-level modules are: " +
                    $"{string.Join(", ", layout.Root.IsUnit ? ["''"] : layout.Root.Children.Select(c => c.Path))} (blocks are numbered, e.g. '{layout.Units.FirstOrDefault(u => u.IsBlock)?.Path ?? ""}'; '' is the whole model).", "DeviceMap");
            }
            if (!keys.TryAdd(key, device))
                throw new DiffusionException("DeviceMapDuplicateModule", DiffusionErrorKind.InvalidArgument, $"{what} maps '{key}' twice.", "DeviceMap");
        }
        var unitDevices = new List<KeyValuePair<string, string>>();
        var unmapped = new List<string>();
        foreach (var unit in layout.Units)
        {
            var device = MostSpecific(keys, unit.Path);
            if (device is null) unmapped.Add(unit.Path);
            else unitDevices.Add(new(unit.Path, device));
        }
        if (unmapped.Count > 0)
            throw new DiffusionException("DeviceMapUnmappedModule", DiffusionErrorKind.InvalidArgument,
                $"{what} leaves {unmapped.Count} module(s) without a device: {string.Join(", ", unmapped.Take(8))}{(unmapped.Count > 8 ? ", ..." : "")}. " +
                "Map each of them, or a parent of them ('' for the whole model).", "DeviceMap");
        var map = new OrderedMap(unitDevices);
        var all = WithDisk(budgets.Concat(map.Values.Distinct().Where(d => budgets.All(b => b.Device != d)).Select(d => new DeviceBudget(d, null))).ToList());
        var gpus = all.Where(d => d.IsGpu).Select(d => d.Device).ToList();
        var exec = ExecutionDevice(layout, map, gpus);
        var (stream, stage) = StreamingNeeds(layout, map, gpus);
        var caps = all.ToDictionary(d => d.Device, d => d.Bytes);
        var usage = Usage(layout, map, all, caps,
            d => DeviceNames.IsGpu(d) ? (map.Values.Contains(d) || d == exec ? activations.Bytes : 0) : d == DeviceNames.Cpu && gpus.Count == 0 ? activations.Bytes : 0,
            d => d == exec ? stream : d == DeviceNames.Cpu && gpus.Count > 0 ? stage : 0);
        return new ModelDevicePlan(component, layout, DeviceMapStrategy.User, HeadroomPolicy.Activations, map, exec, usage, activations);
    }

    /// <summary>
    /// Every unit on one device (a component the pipeline plan keeps whole). On disk the model runs on
    /// <paramref name="diskExecutionDevice"/> with its weights read from the file for each call.
    /// </summary>
    public static ModelDevicePlan Whole(ModuleLayout layout, string device, ActivationEstimate activations, string component = "", string diskExecutionDevice = DeviceNames.Cpu)
    {
        var map = new OrderedMap(layout.Units.Select(u => new KeyValuePair<string, string>(u.Path, device)));
        var exec = device == DeviceNames.Disk ? diskExecutionDevice : device;
        var usage = device == exec
            ? new[] { new DeviceUsage(device, null, null, layout.TotalBytes, activations.Bytes, 0) }
            : new[] { new DeviceUsage(exec, null, null, 0, activations.Bytes, layout.Units.Max(u => u.Bytes)), new DeviceUsage(device, null, null, layout.TotalBytes, 0, 0) };
        return new ModelDevicePlan(component, layout, DeviceMapStrategy.User, HeadroomPolicy.Activations, map, exec, usage, activations);
    }

    /// <summary>
    /// The guide's CPU offload for one model: every unit's weights in CPU memory, run on <paramref name="executionDevice"/>.
    /// Sequential offload streams one unit at a time (room for the largest unit is kept there); model offload streams
    /// the whole model in when it is used and out when another model is (room for all of it).
    /// </summary>
    public static ModelDevicePlan Offloaded(ModuleLayout layout, string executionDevice, ActivationEstimate activations, bool wholeModel, string component = "")
    {
        var map = new OrderedMap(layout.Units.Select(u => new KeyValuePair<string, string>(u.Path, DeviceNames.Cpu)));
        long stream = wholeModel ? layout.TotalBytes : layout.Units.Max(u => u.Bytes);
        var usage = executionDevice == DeviceNames.Cpu
            ? new[] { new DeviceUsage(DeviceNames.Cpu, null, null, layout.TotalBytes, activations.Bytes, stream) }
            : new[] { new DeviceUsage(executionDevice, null, null, 0, activations.Bytes, stream), new DeviceUsage(DeviceNames.Cpu, null, null, layout.TotalBytes, 0, 0) };
        return new ModelDevicePlan(component, layout, wholeModel ? DeviceMapStrategy.ModelOffload : DeviceMapStrategy.SequentialOffload,
            HeadroomPolicy.Activations, map, executionDevice, usage, activations);
    }

    private static string? MostSpecific(Dictionary<string, string> keys, string path)
    {
        for (var p = path; ; p = p.LastIndexOf('.') is var i && i < 0 ? "" : p[..i])
        {
            if (keys.TryGetValue(p, out var d)) return d;
            if (p.Length == 0) return null;
        }
    }

    private static List<DeviceBudget> WithDisk(IReadOnlyList<DeviceBudget> budgets)
    {
        var list = DeviceBudgets.Sorted(budgets).ToList();
        if (list.All(b => b.Device != DeviceNames.Disk)) list.Add(new DeviceBudget(DeviceNames.Disk, null));
        return list;
    }

    /// <summary>What the activations policy keeps free on a device while placing.</summary>
    private static long Reserve(string device, List<string> gpus, long activations, long stream, long diskStage)
    {
        if (DeviceNames.IsGpu(device)) return activations + (device == gpus[0] ? stream : 0);
        if (device == DeviceNames.Cpu) return gpus.Count == 0 ? activations + stream : diskStage;
        return 0;
    }

    /// <summary>
    /// Room for streaming: the largest unit that streams to the execution device, and what disk units need in CPU memory:
    /// the two largest, one being used while the next is read ahead. On a CPU-only plan both are the disk units' room.
    /// </summary>
    private static (long Stream, long DiskStage) StreamingNeeds(ModuleLayout layout, IReadOnlyDictionary<string, string> map, List<string> gpus)
    {
        long stream = 0;
        var disk = new List<long>();
        foreach (var u in layout.Units)
        {
            var d = map[u.Path];
            if (gpus.Count > 0 && !DeviceNames.IsGpu(d)) stream = Math.Max(stream, u.Bytes);
            if (d == DeviceNames.Disk) disk.Add(u.Bytes);
        }
        long twoLargestDisk = disk.OrderDescending().Take(2).Sum();
        return gpus.Count > 0 ? (stream, twoLargestDisk) : (twoLargestDisk, 0);
    }

    /// <summary>accelerate's main device: the first GPU holding a unit, else the first GPU, else the CPU.</summary>
    private static string ExecutionDevice(ModuleLayout layout, IReadOnlyDictionary<string, string> map, List<string> gpus) =>
        layout.Units.Select(u => map[u.Path]).FirstOrDefault(DeviceNames.IsGpu) ?? gpus.FirstOrDefault() ?? DeviceNames.Cpu;

    /// <summary>
    /// infer_auto_device_map's loop over the layout tree. <paramref name="limit"/> gives the bytes of weights a device may
    /// take (null: no limit), knowing the largest layer still to place. Returns unit -> device.
    /// </summary>
    private static OrderedMap Infer(ModuleLayout layout, List<DeviceBudget> devices, Func<string, long, long?> limit)
    {
        var toTreat = new List<LayoutNode>(layout.Root.IsUnit ? [layout.Root] : layout.Root.Children);
        var (largest, largestNames) = LargestLayer(toTreat);
        var used = devices.ToDictionary(d => d.Device, _ => 0L);
        var placed = new Dictionary<string, string>(StringComparer.Ordinal);
        int current = 0;
        while (toTreat.Count > 0)
        {
            var node = toTreat[0];
            toTreat.RemoveAt(0);
            largestNames.RemoveAll(n => n == node.Path || n.StartsWith(node.Path + ".", StringComparison.Ordinal) || node.Path.Length == 0);
            if (largestNames.Count == 0) (largest, largestNames) = LargestLayer(toTreat);
            var device = devices[current].Device;
            var room = limit(device, largest);
            if (room is null || used[device] + node.Bytes <= room)
            {
                used[device] += node.Bytes;
                foreach (var u in node.Units()) placed[u.Path] = device;
                continue;
            }
            if (!node.IsUnit)
            {
                toTreat.InsertRange(0, node.Children);
                (largest, largestNames) = LargestLayer(toTreat);
                continue;
            }
            current++;
            toTreat.Insert(0, node);
        }
        return new OrderedMap(layout.Units.Select(u => new KeyValuePair<string, string>(u.Path, placed[u.Path])));
    }

    /// <summary>get_max_layer_size: the largest unit (no-split block or leaf) among the modules left, and those of that size.</summary>
    private static (long Size, List<string> Names) LargestLayer(IEnumerable<LayoutNode> modules)
    {
        long max = 0;
        var names = new List<string>();
        foreach (var u in modules.SelectMany(m => m.Units()))
        {
            if (u.Bytes > max) { max = u.Bytes; names = [u.Path]; }
            else if (u.Bytes == max) names.Add(u.Path);
        }
        return (max, names);
    }

    /// <summary>
    /// get_balanced_memory: each GPU but the last is capped at total / GPUs plus a buffer of 1.25 x max(first block of
    /// each no-split class, mean final module); balanced_low_0 gives GPU 0 only what the others cannot hold.
    /// With <paramref name="loneGpuNinety"/> (accelerate's policy on free-memory budgets) a lone GPU keeps 10% free.
    /// </summary>
    internal static Dictionary<string, long?> BalancedCaps(ModuleLayout layout, List<DeviceBudget> devices, bool lowZero, bool loneGpuNinety)
    {
        var caps = devices.ToDictionary(d => d.Device, d => d.Bytes);
        var gpus = devices.Where(d => d.IsGpu && d.Bytes > 0).Select(d => d.Device).ToList();
        if (gpus.Count == 0) return caps;
        if (gpus.Count == 1)
        {
            lowZero = false;
            if (loneGpuNinety) caps[gpus[0]] = (long)(caps[gpus[0]]!.Value * 0.9);
        }
        long total = layout.TotalBytes;
        long perGpu = total / (lowZero ? gpus.Count - 1 : gpus.Count);
        long noSplit = layout.Units.Where(u => u.IsBlock).GroupBy(u => u.Kind).Select(g => g.First().Bytes).DefaultIfEmpty(0).Max();
        long buffer = (long)(1.25 * Math.Max(noSplit, layout.MeanLeafModuleBytes));
        perGpu += buffer;
        foreach (var g in gpus.Take(gpus.Count - 1))
            caps[g] = Math.Min(lowZero && g == gpus[0] ? caps[gpus[0]]!.Value : perGpu, caps[g]!.Value);
        if (lowZero)
        {
            long minZero = Math.Max(0, total - gpus.Skip(1).Sum(g => caps[g]!.Value));
            caps[gpus[0]] = Math.Min(minZero, caps[gpus[0]]!.Value);
        }
        return caps;
    }

    private static List<DeviceUsage> Usage(ModuleLayout layout, IReadOnlyDictionary<string, string> map, List<DeviceBudget> devices,
        Dictionary<string, long?> caps, Func<string, long> activations, Func<string, long> streaming)
    {
        var weights = layout.Units.GroupBy(u => map[u.Path]).ToDictionary(g => g.Key, g => g.Sum(u => u.Bytes));
        return devices.Select(d => new DeviceUsage(d.Device, d.Bytes, caps.GetValueOrDefault(d.Device), weights.GetValueOrDefault(d.Device),
            activations(d.Device), streaming(d.Device))).ToList();
    }
}
