
namespace Diffusion.Engine.Models;

public sealed partial class CLIPTextModel
{
    /// <summary>
    /// transformers' CLIPTextModel (SD 1.x's and FLUX.1's text encoder): folder files saved before transformers 5 have
    /// the "text_model." level (<see cref="ModuleKey"/>); SD 1.x single files hold it under cond_stage_model.transformer;
    /// its no-split block is transformers' (CLIPEncoderLayer).
    /// </summary>
    public static ModelClass Registration { get; } = Register("CLIPTextModel", withProjection: false);

    /// <summary>transformers' CLIPTextModelWithProjection (SDXL's second text encoder): CLIPTextModel with text_projection.</summary>
    public static ModelClass WithProjectionRegistration { get; } = Register("CLIPTextModelWithProjection", withProjection: true);

    private static ModelClass Register(string className, bool withProjection) => new ModelClass<CLIPTextConfig>(
        className, "transformers",
        CLIPTextConfig.Load, CLIPTextConfig.FromJson, c => new CLIPTextModel(c, withProjection),
        _ => new LayoutRules(
            new() { [""] = ["embeddings", "encoder", "final_layer_norm", "text_projection"], ["encoder"] = ["layers"] },
            new() { ["encoder.layers"] = _ => "CLIPEncoderLayer" },
            new()),
        ActivationFormulas.Clip,
        ModuleKey,
        // SD 1.x files hold CLIPTextModel only (SDXL's second encoder comes from the -Config folder, as in diffusers).
        withProjection ? null : new LdmClipKeyMap());
}
