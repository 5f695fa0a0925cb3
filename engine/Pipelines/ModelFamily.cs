namespace Diffusion.Engine.Pipelines;

/// <summary>The kind of pipeline, from model_index.json's _class_name. Cmdlets are the same for every family.</summary>
public enum ModelFamily
{
    StableDiffusion,
    Flux,
    /// <summary>SDXL: two CLIP encoders (penultimate states concatenated, pooled from the second) and a UNet with size/crop conditioning.</summary>
    StableDiffusionXL,
}

public static class ModelFamilies
{
    public static ModelFamily FromClassName(string className, string path) => className switch
    {
        "StableDiffusionPipeline" => ModelFamily.StableDiffusion,
        "FluxPipeline" => ModelFamily.Flux,
        "StableDiffusionXLPipeline" => ModelFamily.StableDiffusionXL,
        _ => throw new DiffusionException("UnknownPipelineClass", DiffusionErrorKind.NotSupported,
            $"'{path}' holds a {className}; this module runs StableDiffusionPipeline (SD 1.x/2.x), StableDiffusionXLPipeline (SDXL) and FluxPipeline (FLUX.1 dev/schnell) folders.", path),
    };

    /// <summary>The components each stage needs, per family.</summary>
    public static string[] EncoderComponents(ModelFamily f) => f is ModelFamily.Flux or ModelFamily.StableDiffusionXL
        ? ["tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2"]
        : ["tokenizer", "text_encoder"];

    public static string DenoiserComponent(ModelFamily f) => f == ModelFamily.Flux ? "transformer" : "unet";
}
