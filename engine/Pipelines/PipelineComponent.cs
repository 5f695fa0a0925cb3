using Diffusion.Engine.Devices;
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
    internal object Instance { get; private set; }
    private bool _disposed;

    internal PipelineComponent(ComponentSpec spec, string path, object instance)
    {
        Name = spec.Name; ClassName = spec.ClassName; Library = spec.Library; Path = path; Instance = instance;
        if (instance is nn.Module module)
        {
            var parameters = module.parameters().ToList();
            Parameters = parameters.Sum(p => p.numel());
            Bytes = module.state_dict().Values.Sum(t => t.numel() * t.element_size());
            var first = parameters.FirstOrDefault();
            Device = first is null ? null : DeviceCatalog.Name(first.device);
            DType = first?.dtype.ToString().ToLowerInvariant();
            if (Device is not null) MemoryLedger.Add(Device, Bytes);
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
            module.Dispose();
            if (Device is not null) MemoryLedger.Remove(Device, Bytes);
        }
        Instance = null!;
    }
}
