using Diffusion.Engine.IO;

namespace Diffusion.Engine.SingleFile;

/// <summary>A full-size architecture recognised in a single file, and the Hub repository whose configs, tokenizers and scheduler fit it.</summary>
public sealed record KnownArchitecture(string Name, string ConfigRepoId, SingleFileLayout Layout);

/// <summary>
/// Recognises the published architectures from a single file's keys and shapes (as diffusers' infer_diffusers_model_type
/// picks a default config repo), so a file can be loaded without -Config once its repo's files are at hand:
/// <list type="bullet">
/// <item>Stable Diffusion 1.5: an LDM UNet of 320 base channels with 768-wide cross-attention (and, when present, a
/// CLIP ViT-L/14 text encoder: 768 wide, 12 layers) → stable-diffusion-v1-5/stable-diffusion-v1-5.</item>
/// <item>FLUX.1-dev / FLUX.1-schnell: a BFL transformer 3072 wide with 19 double and 38 single blocks, with a guidance
/// embedding (dev) or without (schnell) → black-forest-labs/FLUX.1-dev or black-forest-labs/FLUX.1-schnell.</item>
/// </list>
/// Smaller or other models of the same layouts are not recognised (null): they need -Config.
/// </summary>
public static class KnownArchitectures
{
    public static KnownArchitecture? Detect(IReadOnlyDictionary<string, SafeTensorInfo> header)
    {
        long[]? Shape(string key) => header.TryGetValue(key, out var t) ? t.Shape : null;
        switch (SingleFileCheckpoint.DetectLayout(header.Keys))
        {
            case SingleFileLayout.CompVisLdm:
            {
                const string unet = "model.diffusion_model.";
                bool sd15Unet = Shape(unet + "input_blocks.0.0.weight") is [320, 4, 3, 3]
                    && Shape(unet + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight") is [320, 768]
                    && header.ContainsKey(unet + "output_blocks.11.0.skip_connection.weight"); // diffusers' "v1" marker key
                var clipPrefix = header.Keys.Any(k => k.StartsWith("cond_stage_model.transformer.text_model.", StringComparison.Ordinal))
                    ? "cond_stage_model.transformer.text_model." : "cond_stage_model.transformer.";
                bool hasClip = header.Keys.Any(k => k.StartsWith("cond_stage_model.", StringComparison.Ordinal));
                bool clipL = Shape(clipPrefix + "embeddings.token_embedding.weight") is [49408, 768]
                    && header.ContainsKey(clipPrefix + "encoder.layers.11.mlp.fc2.weight") && !header.ContainsKey(clipPrefix + "encoder.layers.12.mlp.fc2.weight");
                return sd15Unet && (!hasClip || clipL)
                    ? new KnownArchitecture("Stable Diffusion 1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5", SingleFileLayout.CompVisLdm)
                    : null;
            }
            case SingleFileLayout.BflFluxTransformer:
            {
                var prefix = header.ContainsKey("img_in.weight") ? "" : "model.diffusion_model.";
                bool flux1 = Shape(prefix + "img_in.weight") is [3072, 64]
                    && header.ContainsKey(prefix + "double_blocks.18.img_attn.qkv.weight") && !header.ContainsKey(prefix + "double_blocks.19.img_attn.qkv.weight")
                    && header.ContainsKey(prefix + "single_blocks.37.linear1.weight") && !header.ContainsKey(prefix + "single_blocks.38.linear1.weight");
                if (!flux1) return null;
                return header.ContainsKey(prefix + "guidance_in.in_layer.bias")
                    ? new KnownArchitecture("FLUX.1-dev", "black-forest-labs/FLUX.1-dev", SingleFileLayout.BflFluxTransformer)
                    : new KnownArchitecture("FLUX.1-schnell", "black-forest-labs/FLUX.1-schnell", SingleFileLayout.BflFluxTransformer);
            }
            default:
                return null;
        }
    }
}
