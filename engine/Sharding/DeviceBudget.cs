using System.Collections;
using System.Globalization;

using Diffusion.Engine.Devices;

namespace Diffusion.Engine.Sharding;

/// <summary>How many bytes of weights a device may hold: "cuda:N", "cpu" or "disk" (disk: no limit when null).</summary>
public sealed record DeviceBudget(string Device, long? Bytes)
{
    public bool IsGpu => DeviceNames.IsGpu(Device);
    public override string ToString() => $"{Device}={(Bytes is long b ? MemorySize.Format(b) : "unlimited")}";
}

/// <summary>Device names in plans and maps: cuda:N for GPUs, then cpu, then disk (accelerate's order).</summary>
public static class DeviceNames
{
    public const string Cpu = "cpu";
    public const string Disk = "disk";

    public static bool IsGpu(string device) => device.StartsWith("cuda:", StringComparison.Ordinal);

    public static int GpuIndex(string device) => int.Parse(device.AsSpan(5), CultureInfo.InvariantCulture);

    /// <summary>
    /// A device as users name it in -MaxMemory keys and -DeviceMap values, normalized: 0 or '0' or 'cuda:0' (and 'cuda',
    /// which is cuda:0) become "cuda:0"; 'cpu' and 'disk' stay. Anything else is an error naming it.
    /// </summary>
    public static string Normalize(object? key, string what)
    {
        switch (key)
        {
            case int i when i >= 0: return $"cuda:{i}";
            case long l when l >= 0 && l <= int.MaxValue: return $"cuda:{l}";
            case string s:
                var t = s.Trim().ToLowerInvariant();
                if (t is Cpu or Disk) return t;
                if (t == "cuda") return "cuda:0";
                var digits = t.StartsWith("cuda:", StringComparison.Ordinal) ? t[5..] : t;
                if (digits.Length > 0 && digits.All(char.IsAsciiDigit) && int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
                    return $"cuda:{n}";
                break;
        }
        throw new DiffusionException("UnknownDevice", DiffusionErrorKind.InvalidArgument,
            $"{what}: '{key}' is not a device. Use a GPU number (0, 1, ...) or 'cuda:N', 'cpu' or 'disk'.", what);
    }

    /// <summary>Sort key: GPUs by index, then cpu, then disk.</summary>
    public static (int Group, int Index) Order(string device) =>
        IsGpu(device) ? (0, GpuIndex(device)) : device == Cpu ? (1, 0) : (2, 0);
}

public static class DeviceBudgets
{
    /// <summary>
    /// -MaxMemory as a hashtable (device -> size), like accelerate's max_memory: keys 0, 1, 'cuda:0', 'cpu', 'disk';
    /// values bytes or strings with units. Returned in accelerate's order (GPUs by index, cpu, disk). Only the devices
    /// named are used, as in accelerate: leave out 'cpu' and nothing is offloaded to it.
    /// </summary>
    public static IReadOnlyList<DeviceBudget> FromMaxMemory(IDictionary maxMemory)
    {
        var budgets = new Dictionary<string, DeviceBudget>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in maxMemory)
        {
            var device = DeviceNames.Normalize(e.Key, "-MaxMemory");
            var bytes = MemorySize.Parse(e.Value, $"-MaxMemory for '{device}'");
            if (!budgets.TryAdd(device, new DeviceBudget(device, bytes)))
                throw new DiffusionException("DuplicateDevice", DiffusionErrorKind.InvalidArgument,
                    $"-MaxMemory names '{device}' twice (as '{e.Key}' and another key). Give each device once.", "MaxMemory");
        }
        if (budgets.Count == 0)
            throw new DiffusionException("InvalidMemorySize", DiffusionErrorKind.InvalidArgument,
                "-MaxMemory is empty. Give at least one device, e.g. @{0='16GB'; cpu='64GB'}.", "MaxMemory");
        return Sorted(budgets.Values);
    }

    /// <summary>The default budgets: each GPU's and the host's free memory now (accelerate's get_max_memory), disk unlimited.</summary>
    public static IReadOnlyList<DeviceBudget> FromFreeMemory()
    {
        var list = new List<DeviceBudget>();
        foreach (var d in Devices.DeviceCatalog.List())
            list.Add(new DeviceBudget(d.Name, d.FreeMemory ?? d.TotalMemory ?? 0));
        return Sorted(list);
    }

    public static IReadOnlyList<DeviceBudget> Sorted(IEnumerable<DeviceBudget> budgets) =>
        budgets.OrderBy(b => DeviceNames.Order(b.Device)).ToList();
}
