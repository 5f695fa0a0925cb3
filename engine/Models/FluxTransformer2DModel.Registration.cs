
namespace Diffusion.Engine.Models;

public sealed partial class FluxTransformer2DModel
{
    /// <summary>
    /// diffusers' FluxTransformer2DModel: Black Forest Labs' single-file transformer maps onto it; its no-split blocks
    /// are diffusers' (FluxTransformerBlock, FluxSingleTransformerBlock).
    /// </summary>
    public static ModelClass Registration { get; } = new ModelClass<FluxTransformer2DConfig>(
        "FluxTransformer2DModel", "diffusers",
        FluxTransformer2DConfig.Load, FluxTransformer2DConfig.FromJson, c => new FluxTransformer2DModel(c),
        _ => new LayoutRules(
            new() { [""] = ["time_text_embed", "context_embedder", "x_embedder", "transformer_blocks", "single_transformer_blocks", "norm_out", "proj_out"] },
            new() { ["transformer_blocks"] = _ => "FluxTransformerBlock", ["single_transformer_blocks"] = _ => "FluxSingleTransformerBlock" },
            new()),
        ActivationFormulas.Flux,
        singleFileKeyMap: new BflFluxTransformerKeyMap());
}
