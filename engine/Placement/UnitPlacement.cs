using static TorchSharp.torch;

namespace Diffusion.Engine.Placement;

/// <summary>Where one placed unit lives and runs, and what its hooks did (for tests and the benchmark).</summary>
internal sealed class UnitPlacement
{
    public UnitPlacement(string path, string device, Device executionDevice, StreamedWeights? streamed, OffloadGroup? group = null)
    {
        Path = path; Device = device; ExecutionDevice = executionDevice; Streamed = streamed; Group = group;
    }

    /// <summary>Model offload: the component this unit belongs to, brought to the GPU as a whole when any of its units runs.</summary>
    public OffloadGroup? Group { get; }

    /// <summary>The module path from the model ("" for the model itself).</summary>
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

    /// <summary>The start of a call: the component comes to the GPU (model offload), the weights stream in, the next disk unit is read ahead.</summary>
    public void Enter()
    {
        Calls++;
        Group?.Activate();
        Streamed?.In();
        NextFromDisk?.Streamed?.Prefetch();
    }

    /// <summary>The end of a call: streamed weights go.</summary>
    public void Exit() => Streamed?.Out();
}
