
namespace Diffusion.Engine.Models;

public sealed partial class AutoencoderKL
{
    /// <summary>diffusers' AutoencoderKL: placed whole by a device map; LDM autoencoders (SD's first_stage_model, BFL's ae.safetensors) map onto it.</summary>
    public static ModelClass Registration { get; } = new ModelClass<AutoencoderKLConfig>(
        "AutoencoderKL", "diffusers",
        AutoencoderKLConfig.Load, AutoencoderKLConfig.FromJson, c => new AutoencoderKL(c),
        layout: null, ActivationFormulas.VaeDecode,
        singleFileKeyMap: new LdmVaeKeyMap());
}
