using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Engine.Lora;

/// <summary>
/// One LoRA applied to a pipeline's models, as PEFT applies it without fusing: every patched layer computes
/// y = W x + b + s · (α / r) · B (A x), where s is the adapter's <see cref="Scale"/> times the run's scale
/// (<see cref="LoraSet.CallScale"/>: diffusers' <c>cross_attention_kwargs={"scale": s}</c>, the same s in the text
/// encoders and the denoiser); a run may give it another own scale, or turn it off (<see cref="LoraSet.RunScales"/>).
/// The model's weights are never changed: each layer gets a forward hook from outside, so removing the adapter gives
/// back the model bit for bit, and a layer placed on another device, offloaded or streamed from disk is patched the
/// same way (A and B go to the device the layer computes on, once, and stay there).
/// </summary>
public sealed class LoraAdapter : IDisposable
{
    private readonly List<PatchedLayer> _layers;
    private readonly LoraSet _owner;

    public string Name { get; }
    public string Path { get; }
    public LoraFormat Format { get; }
    /// <summary>This adapter's weight (diffusers' <c>set_adapters(..., adapter_weights=)</c>; -Scale of Add-DiffusionLora).</summary>
    public double Scale { get; set; }
    /// <summary>Component -> number of layers this adapter patches in it.</summary>
    public IReadOnlyDictionary<string, int> Layers { get; }
    /// <summary>Components the file has layers for that this pipeline did not load (a staged pipeline): those layers are not applied.</summary>
    public IReadOnlyList<string> SkippedComponents { get; }
    public int Rank { get; }
    /// <summary>A1111's short hash of the file (the first 12 hex digits of its SHA-256), as its "Lora hashes" records it.</summary>
    public string Hash => _hash ??= ShortHash(Path);
    private string? _hash;

    private static string ShortHash(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(stream))[..12].ToLowerInvariant();
    }
    public bool IsRemoved { get; private set; }

    internal LoraAdapter(LoraSet owner, string name, string path, LoraFormat format, double scale, List<PatchedLayer> layers,
        IReadOnlyList<string> skipped)
    {
        _owner = owner; Name = name; Path = path; Format = format; Scale = scale; _layers = layers; SkippedComponents = skipped;
        Layers = layers.GroupBy(l => l.Component).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        Rank = layers.Count == 0 ? 0 : (int)layers.Max(l => l.Rank);
    }

    internal double EffectiveScale => _owner.ScaleOf(this) * _owner.CallScale;

    public override string ToString() =>
        $"{Name} ({Format}, rank {Rank}, scale {Scale}): {string.Join(", ", Layers.Select(l => $"{l.Key} {l.Value}"))}";

    /// <summary>Takes the hooks off every layer and frees A and B (wherever they were copied).</summary>
    public void Dispose()
    {
        if (IsRemoved) return;
        IsRemoved = true;
        foreach (var layer in _layers) layer.Dispose();
        _layers.Clear();
        _owner.Forget(this);
    }
}

/// <summary>One layer's LoRA pair and the hook that adds its delta.</summary>
internal sealed class PatchedLayer : IDisposable
{
    private readonly Tensor _down;  // [r, in] or [r, in, 1, 1], float32 on the CPU
    private readonly Tensor _up;    // [out, r] or [out, r, 1, 1]
    private readonly double _scaling; // alpha / r
    private readonly bool _conv;
    private readonly Dictionary<(DeviceType, int, ScalarType), (Tensor Down, Tensor Up)> _copies = [];
    private readonly nn.HookableModule<Func<nn.Module<Tensor, Tensor>, Tensor, Tensor>, Func<nn.Module<Tensor, Tensor>, Tensor, Tensor, Tensor>>.HookRemover _hook;
    private readonly Func<double> _scale;

    public string Component { get; }
    public string Module { get; }
    public long Rank { get; }

    public PatchedLayer(string component, string module, nn.Module<Tensor, Tensor> target, Tensor down, Tensor up, double scaling, Func<double> scale)
    {
        Component = component; Module = module; _down = down; _up = up; _scaling = scaling; _scale = scale;
        Rank = down.shape[0];
        _conv = target is Conv2d;
        _hook = target.register_forward_hook(AddDelta);
    }

    private Tensor AddDelta(nn.Module<Tensor, Tensor> _, Tensor input, Tensor output)
    {
        double s = _scale();
        if (s == 0) return output;
        using var scope = NewDisposeScope();
        var (down, up) = On(input.device, input.dtype);
        var delta = _conv
            ? F.conv2d(F.conv2d(input, down), up)            // 1x1 convs: [B, in, H, W] -> [B, r, H, W] -> [B, out, H, W]
            : F.linear(F.linear(input, down), up);           // [..., in] -> [..., r] -> [..., out]
        return scope.MoveToOuter(output + delta * (_scaling * s));
    }

    private (Tensor Down, Tensor Up) On(Device device, ScalarType dtype)
    {
        if (device.type == DeviceType.CPU && dtype == ScalarType.Float32) return (_down, _up);
        var key = (device.type, device.index, dtype);
        if (!_copies.TryGetValue(key, out var copy))
        {
            copy = (_down.to(dtype, device).DetachFromDisposeScope(), _up.to(dtype, device).DetachFromDisposeScope());
            _copies[key] = copy;
        }
        return copy;
    }

    public void Dispose()
    {
        _hook.remove();
        foreach (var (d, u) in _copies.Values) { d.Dispose(); u.Dispose(); }
        _copies.Clear();
        _down.Dispose(); _up.Dispose();
    }
}
