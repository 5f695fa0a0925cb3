using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Sharding;

/// <summary>
/// The hooks around a model's units when it is placed across devices (accelerate's AlignDevicesHook, at block
/// level). A model's forward wraps each unit call:
/// <code>using (var at = UnitDispatch.Enter(block)) output = block.forward(at.In(x), at.In(temb));</code>
/// Entering streams an offloaded unit's weights onto its execution device; <see cref="UnitScope.In"/> moves an input
/// there when it is elsewhere (activations cross devices only at unit boundaries; outputs stay where they were made
/// until the next unit needs them); leaving lets streamed weights go. For a model loaded the plain way nothing is
/// registered and Enter returns a scope that changes nothing.
/// </summary>
public static class UnitDispatch
{
    private static readonly ConditionalWeakTable<nn.Module, UnitPlacement> Placements = new();

    public static UnitScope Enter(nn.Module unit)
    {
        var observed = Observer?.Invoke(unit);
        var placement = Placements.TryGetValue(unit, out var p) ? p : null;
        var scope = placement?.Enter() ?? UnitScope.None;
        return observed is null ? scope : new UnitScope(placement, observed);
    }

    /// <summary>
    /// Diagnostics (the per-block benchmark): when set on a thread, called at every unit entry there; what it returns is
    /// disposed when that unit's call ends. Placement does not depend on it.
    /// </summary>
    [ThreadStatic] internal static Func<nn.Module, IDisposable?>? Observer;

    internal static void Register(nn.Module unit, UnitPlacement placement) => Placements.AddOrUpdate(unit, placement);

    internal static void Unregister(nn.Module unit) => Placements.Remove(unit);

    /// <summary>
    /// A model's output on the device of one of its inputs (accelerate's io_same_device): a model split across devices
    /// hands its result back where the caller's tensors are. Itself when it is there already.
    /// </summary>
    public static Tensor ReturnTo(Tensor output, Tensor input) =>
        SameDevice(output, input.device) ? output : output.to(input.device);

    internal static bool SameDevice(Tensor t, Device d) =>
        t.device_type == d.type && (d.type != DeviceType.CUDA || t.device_index == Math.Max(0, d.index));

    /// <summary>The placement of a unit, or null when it runs where it lies.</summary>
    internal static UnitPlacement? Of(nn.Module unit) => Placements.TryGetValue(unit, out var p) ? p : null;
}

/// <summary>Where one unit lives and runs, and what its hook did (for tests and the benchmark).</summary>
internal sealed class UnitPlacement
{
    public UnitPlacement(string path, string device, Device executionDevice, StreamedWeights? streamed, OffloadGroup? group = null)
    {
        Path = path; Device = device; ExecutionDevice = executionDevice; Streamed = streamed; Group = group;
    }

    /// <summary>Model offload: the component this unit belongs to, brought to the GPU as a whole when any of its units runs.</summary>
    public OffloadGroup? Group { get; }

    public string Path { get; }
    /// <summary>The plan's device for the unit's weights: cuda:N, cpu or disk.</summary>
    public string Device { get; }
    public Device ExecutionDevice { get; }
    /// <summary>Non-null when the unit is offloaded: its weights stream in for each call.</summary>
    public StreamedWeights? Streamed { get; }
    public int Calls { get; private set; }
    /// <summary>Inputs that came from another device and were moved here.</summary>
    public int InputsMoved { get; internal set; }

    /// <summary>The next unit, in execution order, whose weights come from disk: read ahead while this one computes.</summary>
    public UnitPlacement? NextFromDisk { get; internal set; }

    public UnitScope Enter()
    {
        Calls++;
        Group?.Activate();
        Streamed?.In();
        NextFromDisk?.Streamed?.Prefetch();
        return new UnitScope(this);
    }

    internal void Exit() => Streamed?.Out();
}

/// <summary>One call of a unit: moves inputs to its execution device; leaving lets streamed weights go.</summary>
public sealed class UnitScope : IDisposable
{
    internal static readonly UnitScope None = new(null);
    private readonly UnitPlacement? _placement;

    private readonly IDisposable? _observer;

    internal UnitScope(UnitPlacement? placement, IDisposable? observer = null)
    {
        _placement = placement;
        _observer = observer;
    }

    /// <summary>The execution device, or null when the unit is not placed by a device map.</summary>
    public Device? Device => _placement?.ExecutionDevice;

    /// <summary>The tensor on the unit's execution device (itself when it is there already or the unit is not placed).</summary>
    public Tensor In(Tensor t)
    {
        if (_placement is null) return t;
        if (UnitDispatch.SameDevice(t, _placement.ExecutionDevice)) return t;
        _placement.InputsMoved++;
        return t.to(_placement.ExecutionDevice);
    }

    /// <summary>
    /// Moves tensors the model carries from unit to unit (activations, conditioning) to this unit's device and keeps
    /// them there for the units after it. The tensors left behind are not disposed (they may be the caller's); they go
    /// with the forward's dispose scope.
    /// </summary>
    public void Move(ref Tensor a) => a = In(a);
    public void Move(ref Tensor a, ref Tensor b) { a = In(a); b = In(b); }
    public void Move(ref Tensor a, ref Tensor b, ref Tensor c) { a = In(a); b = In(b); c = In(c); }
    public void Move(ref Tensor a, ref Tensor b, ref Tensor c, ref Tensor d, ref Tensor e) { a = In(a); b = In(b); c = In(c); d = In(d); e = In(e); }

    public void Dispose()
    {
        _placement?.Exit();
        _observer?.Dispose();
    }
}

/// <summary>The models of one pipeline under model offload: at most one has its weights on the GPU.</summary>
internal sealed class OffloadChain
{
    public OffloadGroup? Active { get; set; }
}

/// <summary>
/// One model under model offload (diffusers' enable_model_cpu_offload): when one of its units is entered, the model
/// before it in the chain goes back to CPU memory and this one comes to the GPU, where it stays until another model
/// is used, so the denoising loop streams nothing.
/// </summary>
internal sealed class OffloadGroup(StreamedWeights whole, OffloadChain chain)
{
    public StreamedWeights Whole { get; } = whole;

    public void Activate()
    {
        if (chain.Active == this && Whole.IsIn) return;
        chain.Active?.Whole.Out();
        Whole.In();
        chain.Active = this;
    }
}
