
namespace Diffusion.Engine.Models;

public sealed partial class T5EncoderModel
{
    /// <summary>transformers' T5EncoderModel: its no-split block is transformers' (T5Block); no single-file layout holds it.</summary>
    public static ModelClass Registration { get; } = new ModelClass<T5Config>(
        "T5EncoderModel", "transformers",
        T5Config.Load, T5Config.FromJson, c => new T5EncoderModel(c),
        _ => new LayoutRules(
            new() { [""] = ["shared", "encoder"], ["encoder"] = ["block", "final_layer_norm"] },
            new() { ["encoder.block"] = _ => "T5Block" },
            new(),
            // transformers keeps T5's feed-forward output projection (wo) in float32 when the model is loaded in float16.
            (name, target) => target == "float16" && name.EndsWith(".wo.weight", StringComparison.Ordinal) ? "float32" : target),
        ActivationFormulas.T5);
}
