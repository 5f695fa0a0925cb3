
namespace Diffusion.Engine.Models;

public sealed partial class UNet2DConditionModel
{
    /// <summary>
    /// diffusers' UNet2DConditionModel: the CompVis/LDM single-file UNet maps onto it; a device map places its down
    /// blocks, mid block and up blocks whole (each of diffusers' no-split ResnetBlock2D / BasicTransformerBlock /
    /// CrossAttnUpBlock2D / UpBlock2D lies inside one), the embeddings and convolutions as leftover units.
    /// </summary>
    public static ModelClass Registration { get; } = new ModelClass<UNet2DConditionConfig>(
        "UNet2DConditionModel", "diffusers",
        UNet2DConditionConfig.Load, UNet2DConditionConfig.FromJson, c => new UNet2DConditionModel(c),
        c => new LayoutRules(
            new() { [""] = ["conv_in", "time_embedding", "add_embedding", "down_blocks", "mid_block", "up_blocks", "conv_norm_out", "conv_out"] },
            new()
            {
                ["down_blocks"] = i => i < c.DownBlockTypes.Length ? c.DownBlockTypes[i] : "CrossAttnDownBlock2D",
                ["up_blocks"] = i => i < c.UpBlockTypes.Length ? c.UpBlockTypes[i] : "CrossAttnUpBlock2D",
            },
            new() { ["mid_block"] = c.MidBlockType ?? "UNetMidBlock2DCrossAttn" }),
        ActivationFormulas.UNet,
        singleFileKeyMap: new LdmUNetKeyMap());
}
