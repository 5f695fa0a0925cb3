using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Placement;

/// <summary>
/// The state the hooks of one placed model share: its units, and during a call of the model (from the root's
/// pre-hook to its hook) the tensors already moved, so that what the model carries from unit to unit (the time
/// embedding, the text states, the rotary tables) crosses to each device once per call, not once per unit.
/// </summary>
internal sealed class PlacementSession(IReadOnlyList<UnitPlacement> units)
{
    // Source tensor (by reference: a live object is never another tensor, unlike a native handle) -> its copies on other devices.
    private Dictionary<Tensor, List<Tensor>>? _moved;

    public IReadOnlyList<UnitPlacement> Units { get; } = units;

    /// <summary>A call of the model starts: what an interrupted call left streamed in goes, the moved tensors are forgotten.</summary>
    public void BeginCall()
    {
        ReleaseStreamed(except: null);
        _moved = new Dictionary<Tensor, List<Tensor>>(ReferenceEqualityComparer.Instance);
    }

    /// <summary>The call ended: the moved tensors are forgotten (they go with the dispose scopes they were made in).</summary>
    public void EndCall()
    {
        _moved = null;
        ReleaseStreamed(except: null);
    }

    /// <summary>
    /// Lets go of the weights of every unit but <paramref name="except"/> that is still streamed in. Units do not
    /// nest, so at a unit's entry (or a call's start) only a forward that threw (a cancellation) can have left one in.
    /// </summary>
    public void ReleaseStreamed(UnitPlacement? except)
    {
        foreach (var u in Units)
            if (u != except && u.Streamed is { IsIn: true } s) s.Out();
    }

    /// <summary>The tensor on the unit's execution device: itself when there, else its copy (made once per call).</summary>
    public Tensor MoveTo(Tensor t, UnitPlacement unit)
    {
        var device = unit.ExecutionDevice;
        if (TensorDevices.IsOn(t, device)) return t;
        List<Tensor>? copies = null;
        if (_moved is not null && _moved.TryGetValue(t, out copies))
            foreach (var c in copies)
                if (!c.IsInvalid && TensorDevices.IsOn(c, device)) return c; // a copy disposed with an inner scope is made again
        var moved = t.to(device);
        unit.InputsMoved++;
        if (_moved is not null)
        {
            if (copies is null) _moved[t] = copies = [];
            copies.Add(moved);
        }
        return moved;
    }
}

/// <summary>
/// The hooks of one unit (accelerate's AlignDevicesHook): entering brings its weights (and, under model offload, its
/// component) to the execution device and reads the next disk unit ahead; every tensor argument is moved there
/// when it is elsewhere (activations cross devices only at unit boundaries); leaving lets streamed weights go.
/// </summary>
internal sealed class UnitHooks(PlacementSession session, UnitPlacement unit) : IForwardHooks
{
    public void Enter(nn.Module module)
    {
        session.ReleaseStreamed(except: unit);
        unit.Enter();
    }

    public T Input<T>(T argument) => TensorDevices.Map(argument, t => session.MoveTo(t, unit));

    public TResult Exit<TResult>(nn.Module module, TResult result)
    {
        unit.Exit();
        return result;
    }
}

/// <summary>
/// The hooks of a placed model itself: its call opens and closes the session (see <see cref="PlacementSession"/>),
/// and its result goes back to the device of its first tensor argument (accelerate's io_same_device), so a model split
/// across devices hands its output back where the caller's tensors are. When the model is itself a unit (model
/// offload's "" unit), it is entered as one too.
/// </summary>
internal sealed class RootHooks(PlacementSession session, UnitPlacement? unit) : IForwardHooks
{
    private Device? _callerDevice;

    public void Enter(nn.Module module)
    {
        session.BeginCall();
        _callerDevice = null;
        unit?.Enter();
    }

    public T Input<T>(T argument)
    {
        _callerDevice ??= TensorDevices.First(argument)?.device;
        return unit is null ? argument : TensorDevices.Map(argument, t => session.MoveTo(t, unit));
    }

    public TResult Exit<TResult>(nn.Module module, TResult result)
    {
        unit?.Exit();
        session.EndCall();
        if (_callerDevice is not { } device) return result;
        return TensorDevices.Map(result, t => TensorDevices.IsOn(t, device) ? t : t.to(device));
    }
}
