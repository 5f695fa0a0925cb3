namespace Diffusion.Engine.Lora;

/// <summary>The LoRAs applied to one pipeline, in the order they were added, and the scale of the run in progress.</summary>
public sealed class LoraSet
{
    private readonly List<LoraAdapter> _adapters = [];

    public IReadOnlyList<LoraAdapter> Adapters => _adapters;

    /// <summary>The run's scale, multiplying every adapter's own (diffusers' <c>cross_attention_kwargs={"scale": s}</c>); 1 between runs.</summary>
    public double CallScale { get; private set; } = 1.0;

    /// <summary>Sets the run's scale until the returned scope ends.</summary>
    public IDisposable WithCallScale(double scale)
    {
        if (!double.IsFinite(scale))
            throw new DiffusionException("LoraScaleInvalid", DiffusionErrorKind.InvalidArgument,
                $"The LoRA scale {scale} is not a finite number.", "LoraScale");
        var before = CallScale;
        CallScale = scale;
        return new Restore(() => CallScale = before);
    }

    /// <summary>The adapters active now (scale not 0), "name: hash: scale, ..." as image metadata records them; null when none.</summary>
    public string? Describe()
    {
        var active = _adapters.Where(a => a.EffectiveScale != 0).ToList();
        return active.Count == 0 ? null : string.Join(", ", active.Select(a =>
            $"{a.Name}: {a.Hash}: {a.EffectiveScale.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}"));
    }

    public LoraAdapter? Find(string name) => _adapters.FirstOrDefault(a => string.Equals(a.Name, name, StringComparison.OrdinalIgnoreCase));

    internal void Add(LoraAdapter adapter) => _adapters.Add(adapter);
    internal void Forget(LoraAdapter adapter) => _adapters.Remove(adapter);

    /// <summary>Removes every adapter (the pipeline is being freed).</summary>
    internal void Clear()
    {
        foreach (var a in _adapters.ToList()) a.Dispose();
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        private Action? _undo = undo;
        public void Dispose() { _undo?.Invoke(); _undo = null; }
    }
}
