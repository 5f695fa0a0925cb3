namespace Diffusion.Engine.Lora;

/// <summary>The LoRAs applied to one pipeline, in the order they were added, and the scale of the run in progress.</summary>
public sealed class LoraSet
{
    private readonly List<LoraAdapter> _adapters = [];

    public IReadOnlyList<LoraAdapter> Adapters => _adapters;

    /// <summary>The run's scale, multiplying every adapter's own (diffusers' <c>cross_attention_kwargs={"scale": s}</c>); 1 between runs.</summary>
    public double CallScale { get; private set; } = 1.0;

    /// <summary>
    /// The adapters active in the run in progress, by name, with their scales for it (diffusers' <c>set_adapters(names,
    /// adapter_weights)</c> for one call; A1111's prompt tags): the others are off. Null between runs and for runs
    /// that use every adapter at its own <see cref="LoraAdapter.Scale"/>.
    /// </summary>
    public IReadOnlyDictionary<string, double>? RunScales { get; private set; }

    /// <summary>
    /// Sets the run's scale, and (<paramref name="active"/> not null) the adapters active in it with their scales,
    /// until the returned scope ends. The adapters themselves are not changed.
    /// </summary>
    public IDisposable WithCallScale(double scale, IReadOnlyDictionary<string, double>? active = null)
    {
        if (!double.IsFinite(scale))
            throw new DiffusionException("LoraScaleInvalid", DiffusionErrorKind.InvalidArgument,
                $"The LoRA scale {scale} is not a finite number.", "LoraScale");
        var scales = active is null ? null : Resolve(active);
        var (beforeScale, beforeScales) = (CallScale, RunScales);
        (CallScale, RunScales) = (scale, scales);
        return new Restore(() => (CallScale, RunScales) = (beforeScale, beforeScales));
    }

    /// <summary>Checks that every name is an adapter of this pipeline, and keys the scales case-insensitively.</summary>
    private Dictionary<string, double> Resolve(IReadOnlyDictionary<string, double> active)
    {
        var scales = new Dictionary<string, double>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, s) in active)
        {
            if (Find(name) is null)
                throw new DiffusionException("LoraNotFound", DiffusionErrorKind.InvalidArgument,
                    $"The pipeline has no LoRA named '{name}'. Its LoRAs: {string.Join(", ", _adapters.Select(a => a.Name).DefaultIfEmpty("(none)"))}. " +
                    "Add it first (Add-DiffusionLora -Name, or Invoke-Diffusion -Lora: a file is named by its name without extension).", name);
            if (!double.IsFinite(s))
                throw new DiffusionException("LoraScaleInvalid", DiffusionErrorKind.InvalidArgument, $"The LoRA scale {s} of '{name}' is not a finite number.", name);
            scales[name] = s;
        }
        return scales;
    }

    /// <summary>An adapter's own scale in the run in progress: the run's for it, 0 when the run leaves it off, else its Scale.</summary>
    internal double ScaleOf(LoraAdapter adapter) =>
        RunScales is null ? adapter.Scale : RunScales.GetValueOrDefault(adapter.Name, 0.0);

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
