using Diffusion.Engine.Devices;
using Diffusion.Engine.Placement;
using Diffusion.Engine.Sharding;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>A loaded component: a model on a device in a dtype, a tokenizer, or a scheduler's configuration.</summary>
public sealed class PipelineComponent : IDisposable
{
    public string Name { get; }
    public string ClassName { get; }
    public string Library { get; }
    public string Path { get; }
    /// <summary>Device of a model's weights (null for tokenizers and schedulers).</summary>
    public string? Device { get; }
    public string? DType { get; }
    public long Parameters { get; }
    public long Bytes { get; }
    /// <summary><see cref="Bytes"/> in MiB (one decimal), as the table shows it.</summary>
    public double SizeMB => Math.Round(Bytes / 1048576.0, 1);
    /// <summary>Module path -> device, as accelerate's hf_device_map ({"": device} for a model on one device); null for tokenizers and schedulers.</summary>
    public OrderedMap? DeviceMap { get; }
    /// <summary>The device a model computes on (its inputs go there); null for tokenizers and schedulers.</summary>
    public string? ExecutionDevice { get; }
    /// <summary>The plan this model was placed by (-DeviceMap or -Offload), or null.</summary>
    public ModelDevicePlan? DevicePlan { get; }
    /// <summary>Seconds New-DiffusionPipeline took for this component.</summary>
    public double LoadSeconds { get; internal set; }
    /// <summary>Weight bytes read from its safetensors files while it loaded (weights offloaded to disk are read later, on use).</summary>
    public long BytesRead { get; internal set; }
    internal object Instance { get; private set; }
    private readonly PlacedModel? _placed;
    private readonly IReadOnlyDictionary<string, long> _counted = new Dictionary<string, long>();
    private bool _disposed;

    internal PipelineComponent(ComponentSpec spec, string path, object instance, PlacedModel? placed = null, ModelDevicePlan? plan = null)
    {
        Name = spec.Name; ClassName = spec.ClassName; Library = spec.Library; Path = path; Instance = instance;
        _placed = placed; DevicePlan = plan;
        if (instance is nn.Module && placed is not null && plan is not null)
        {
            Parameters = plan.Layout.Elements; // offloaded parameters are empty at rest: count from the checkpoint
            Bytes = plan.TotalBytes;
            DType = plan.DType;
            ExecutionDevice = plan.ExecutionDevice;
            Device = plan.Strategy is DeviceMapStrategy.ModelOffload or DeviceMapStrategy.SequentialOffload ? $"cpu (offload to {plan.ExecutionDevice})" : plan.Summary;
            DeviceMap = plan.DeviceMap;
            _counted = placed.BytesAtRest();
            foreach (var (d, b) in _counted) MemoryLedger.Add(d, b);
        }
        else if (instance is nn.Module module)
        {
            var parameters = module.parameters().ToList();
            Parameters = parameters.Sum(p => p.numel());
            Bytes = module.state_dict().Values.Sum(t => t.numel() * t.element_size());
            var first = parameters.FirstOrDefault();
            Device = first is null ? null : DeviceCatalog.Name(first.device);
            DType = first?.dtype.ToString().ToLowerInvariant();
            if (Device is not null)
            {
                ExecutionDevice = Device;
                DeviceMap = new OrderedMap([new KeyValuePair<string, string>("", Device)]);
                _counted = new Dictionary<string, long> { [Device] = Bytes };
                MemoryLedger.Add(Device, Bytes);
            }
        }
    }

    internal T As<T>() where T : class => Instance as T
        ?? throw new DiffusionException("ComponentTypeMismatch", DiffusionErrorKind.InvalidData,
            $"The component '{Name}' is a {ClassName}, not the {typeof(T).Name} this pipeline needs. Check model_index.json.", Name);

    public override string ToString() => $"{Name} ({ClassName}{(Device is null ? "" : $", {Device}, {DType}")})";

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (Instance is nn.Module module)
        {
            _placed?.Dispose();
            module.Dispose();
            foreach (var (d, b) in _counted) MemoryLedger.Remove(d, b);
        }
        Instance = null!;
        GC.SuppressFinalize(this);
    }

    /// <summary>A component nothing refers to any more: its tensors are freed by their own finalizers; take it off the ledger.</summary>
    ~PipelineComponent()
    {
        if (_disposed || Instance is not nn.Module) return;
        foreach (var (d, b) in _counted) MemoryLedger.Remove(d, b);
    }
}
