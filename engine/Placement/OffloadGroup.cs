namespace Diffusion.Engine.Placement;

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
