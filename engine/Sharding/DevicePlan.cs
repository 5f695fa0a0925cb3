using System.Text;
using System.Text.Json;

using Diffusion.Engine.Devices;

namespace Diffusion.Engine.Sharding;

/// <summary>-DeviceMap strategies, as accelerate and diffusers name them.</summary>
public enum DeviceMapStrategy
{
    /// <summary>Same as balanced (diffusers passes every strategy but sequential through get_balanced_memory).</summary>
    Auto,
    Balanced,
    /// <summary>Balanced over the GPUs but cuda:0, which gets as little as possible.</summary>
    BalancedLow0,
    /// <summary>Fill the first GPU, then the next, then cpu, then disk.</summary>
    Sequential,
    /// <summary>A map given by the user.</summary>
    User,
    /// <summary>-Offload model: the whole model in CPU memory, moved to the GPU while it is used.</summary>
    ModelOffload,
    /// <summary>-Offload sequential: every unit in CPU memory, streamed to the GPU for each call.</summary>
    SequentialOffload,
}

/// <summary>What a plan keeps free on each device besides the weights.</summary>
public enum HeadroomPolicy
{
    /// <summary>
    /// This module's: activation head-room for the requested image on every GPU that computes (on the CPU when there is
    /// no GPU), room to stream the largest offloaded unit on the main device only when something is offloaded, and room
    /// on the CPU for the two largest disk units (one in use, the next read ahead) only when something goes to disk.
    /// </summary>
    Activations,
    /// <summary>accelerate's: the largest remaining layer on the first GPU and on the CPU whatever happens, and no activations.</summary>
    Accelerate,
}

/// <summary>One device in a plan: its budget, the weights placed on it and what is kept free for running.</summary>
public sealed record DeviceUsage(string Device, long? Budget, long? Cap, long Weights, long ActivationHeadroom, long StreamingBuffer)
{
    /// <summary>What is left of the budget after weights and head-room (null for disk).</summary>
    public long? Free => Budget - Weights - ActivationHeadroom - StreamingBuffer;
}

/// <summary>
/// Where every part of one model lives: <see cref="DeviceMap"/> is module path -> device as accelerate's hf_device_map
/// prints it (submodules on one device grouped under their parent, "" for the whole model); <see cref="UnitDevices"/>
/// lists every unit. Units on cpu or disk while the model computes on a GPU are offloaded: their weights stream to the
/// execution device for each forward.
/// </summary>
public sealed class ModelDevicePlan
{
    internal ModelDevicePlan(string component, ModuleLayout layout, DeviceMapStrategy strategy, HeadroomPolicy policy,
        OrderedMap unitDevices, string executionDevice, IReadOnlyList<DeviceUsage> devices, ActivationEstimate activations)
    {
        Component = component; ClassName = layout.ClassName; DType = layout.DType; Strategy = strategy; Policy = policy;
        UnitDevices = unitDevices; ExecutionDevice = executionDevice; Devices = devices; Activations = activations;
        TotalBytes = layout.TotalBytes; Layout = layout;
        DeviceMap = DeviceMapCleaner.Clean(layout, unitDevices);
    }

    public string Component { get; }
    public string ClassName { get; }
    public string DType { get; }
    public DeviceMapStrategy Strategy { get; }
    public HeadroomPolicy Policy { get; }
    public OrderedMap DeviceMap { get; }
    public OrderedMap UnitDevices { get; }
    /// <summary>The device that runs offloaded units and receives the model's inputs.</summary>
    public string ExecutionDevice { get; }
    public IReadOnlyList<DeviceUsage> Devices { get; }
    public ActivationEstimate Activations { get; }
    public long TotalBytes { get; }
    internal ModuleLayout Layout { get; }

    /// <summary>Devices whose budget the plan exceeds (the head-room alone may not fit), as sentences for the user.</summary>
    public IReadOnlyList<string> Warnings => Devices.Where(d => d.Free < 0).Select(d =>
        $"{(Component.Length > 0 ? Component + ": " : "")}{d.Device} needs {MemorySize.Format(d.Weights + d.ActivationHeadroom + d.StreamingBuffer)} " +
        $"(weights {MemorySize.Format(d.Weights)}, head-room {MemorySize.Format(d.ActivationHeadroom + d.StreamingBuffer)}) but its budget is {MemorySize.Format(d.Budget!.Value)}: " +
        "it may run out of memory. Give it more memory, plan for a smaller image (-Height/-Width), or use a smaller dtype.").ToList();

    /// <summary>Units whose weights live on cpu or disk but run on the execution device.</summary>
    public IReadOnlyList<string> OffloadedUnits =>
        UnitDevices.Where(kv => IsOffloaded(kv.Value)).Select(kv => kv.Key).ToList();

    public bool IsOffloaded(string device) =>
        Strategy is DeviceMapStrategy.ModelOffload or DeviceMapStrategy.SequentialOffload || (device != ExecutionDevice && !DeviceNames.IsGpu(device));

    /// <summary>The devices holding weights, in placement order (e.g. "cuda:0,cpu").</summary>
    public string Summary => string.Join(",", UnitDevices.Values.Distinct());

    public string ToJson() => DeviceMap.ToJson();

    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"{(Component.Length > 0 ? Component + " " : "")}({ClassName}, {MemorySize.Format(TotalBytes)} in {DType}), device map '{StrategyName(Strategy)}', runs on {ExecutionDevice}:");
        foreach (var d in Devices.Where(d => d.Weights > 0 || d.ActivationHeadroom > 0 || d.StreamingBuffer > 0))
        {
            var parts = new List<string> { $"weights {MemorySize.Format(d.Weights)}" };
            if (d.ActivationHeadroom > 0) parts.Add($"activation head-room {MemorySize.Format(d.ActivationHeadroom)}");
            if (d.StreamingBuffer > 0) parts.Add($"{(Policy == HeadroomPolicy.Accelerate ? "largest layer reserved" : "streaming buffer")} {MemorySize.Format(d.StreamingBuffer)}");
            if (d.Budget is long b) parts.Add($"budget {MemorySize.Format(b)}{(d.Cap is long cap && cap < b ? $" (balanced cap {MemorySize.Format(cap)})" : "")}");
            sb.AppendLine($"  {d.Device}: {string.Join(", ", parts)}");
        }
        var offloaded = OffloadedUnits;
        if (offloaded.Count > 0) sb.AppendLine($"  offloaded to {ExecutionDevice} on use: {offloaded.Count} unit(s)");
        sb.AppendLine($"  head-room for activations: {Activations.Note}");
        foreach (var w in Warnings) sb.AppendLine($"  warning: {w}");
        sb.Append(ToJson());
        return sb.ToString();
    }

    public static string StrategyName(DeviceMapStrategy s) => s switch
    {
        DeviceMapStrategy.BalancedLow0 => "balanced_low_0",
        DeviceMapStrategy.User => "user map",
        DeviceMapStrategy.ModelOffload => "model offload",
        DeviceMapStrategy.SequentialOffload => "sequential offload",
        _ => s.ToString().ToLowerInvariant(),
    };
}

/// <summary>accelerate's clean_device_map: a parent whose submodules all share one device is listed once, for the parent.</summary>
internal static class DeviceMapCleaner
{
    public static OrderedMap Clean(ModuleLayout layout, IReadOnlyDictionary<string, string> unitDevices)
    {
        var map = new List<KeyValuePair<string, string>>();
        Visit(layout.Root);
        return new OrderedMap(map);

        void Visit(LayoutNode node)
        {
            var devices = node.Units().Select(u => unitDevices[u.Path]).Distinct().ToList();
            if (devices.Count == 1 || node.IsUnit)
            {
                map.Add(new(node.Path, devices[0]));
                return;
            }
            foreach (var c in node.Children) Visit(c);
        }
    }
}

/// <summary>
/// A read-only dictionary that keeps its insertion order (maps print in module order). It is also a non-generic
/// IDictionary, so PowerShell shows it as a table, reads keys as properties and ConvertTo-Json prints an object.
/// </summary>
public sealed class OrderedMap : IReadOnlyDictionary<string, string>, System.Collections.IDictionary
{
    private readonly List<KeyValuePair<string, string>> _items;
    private readonly Dictionary<string, string> _index;

    public OrderedMap(IEnumerable<KeyValuePair<string, string>> items)
    {
        _items = new List<KeyValuePair<string, string>>();
        _index = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var kv in items)
            if (_index.TryAdd(kv.Key, kv.Value)) _items.Add(kv);
    }

    public string this[string key] => _index[key];
    public IEnumerable<string> Keys => _items.Select(kv => kv.Key);
    public IEnumerable<string> Values => _items.Select(kv => kv.Value);
    public int Count => _items.Count;
    public bool ContainsKey(string key) => _index.ContainsKey(key);
    public bool TryGetValue(string key, out string value) => _index.TryGetValue(key, out value!);
    public IEnumerator<KeyValuePair<string, string>> GetEnumerator() => _items.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => ((System.Collections.IDictionary)this).GetEnumerator();

    public string ToJson() => JsonSerializer.Serialize(_items.ToDictionary(kv => kv.Key, kv => kv.Value), new JsonSerializerOptions { WriteIndented = true });
    public override string ToString() => ToJson();

    object? System.Collections.IDictionary.this[object key]
    {
        get => key is string k && _index.TryGetValue(k, out var v) ? v : null;
        set => throw new NotSupportedException("A device map is read-only.");
    }
    System.Collections.ICollection System.Collections.IDictionary.Keys => _items.Select(kv => kv.Key).ToList();
    System.Collections.ICollection System.Collections.IDictionary.Values => _items.Select(kv => kv.Value).ToList();
    bool System.Collections.IDictionary.IsReadOnly => true;
    bool System.Collections.IDictionary.IsFixedSize => true;
    bool System.Collections.ICollection.IsSynchronized => false;
    object System.Collections.ICollection.SyncRoot => this;
    bool System.Collections.IDictionary.Contains(object key) => key is string k && _index.ContainsKey(k);
    void System.Collections.IDictionary.Add(object key, object? value) => throw new NotSupportedException("A device map is read-only.");
    void System.Collections.IDictionary.Clear() => throw new NotSupportedException("A device map is read-only.");
    void System.Collections.IDictionary.Remove(object key) => throw new NotSupportedException("A device map is read-only.");
    void System.Collections.ICollection.CopyTo(Array array, int index)
    {
        foreach (var kv in _items) array.SetValue(new System.Collections.DictionaryEntry(kv.Key, kv.Value), index++);
    }
    System.Collections.IDictionaryEnumerator System.Collections.IDictionary.GetEnumerator() =>
        _items.Select(kv => new System.Collections.DictionaryEntry(kv.Key, kv.Value)).ToDictionaryEnumerator();
}

internal static class DictionaryEnumeratorExtensions
{
    public static System.Collections.IDictionaryEnumerator ToDictionaryEnumerator(this IEnumerable<System.Collections.DictionaryEntry> entries) =>
        new Enumerator(entries.ToList());

    private sealed class Enumerator(List<System.Collections.DictionaryEntry> entries) : System.Collections.IDictionaryEnumerator
    {
        private int _i = -1;
        public System.Collections.DictionaryEntry Entry => entries[_i];
        public object Key => Entry.Key;
        public object? Value => Entry.Value;
        public object Current => Entry;
        public bool MoveNext() => ++_i < entries.Count;
        public void Reset() => _i = -1;
    }
}
