using Diffusion.Engine.IO;

namespace Diffusion.Engine.Models;

/// <summary>
/// LDM autoencoder (SD's <c>first_stage_model.*</c>, BFL's <c>ae.safetensors</c>, the standalone SD VAEs) → diffusers'
/// AutoencoderKL, as diffusers' <c>convert_ldm_vae_checkpoint</c>: <c>encoder.down.N.block.M</c> → down_blocks.N.resnets.M,
/// <c>decoder.up.N</c> → up_blocks.(levels-1-N) (LDM numbers the decoder bottom-up), <c>mid.block_K</c> →
/// mid_block.resnets.(K-1), <c>mid.attn_1.q/k/v/proj_out/norm</c> → to_q/to_k/to_v/to_out.0/group_norm with the 1x1
/// conv kernels [C,C,1,1] read as linear weights [C,C], nin_shortcut → conv_shortcut, norm_out → conv_norm_out.
/// </summary>
internal sealed class LdmVaeKeyMap : KeyMap
{
    private static readonly Dictionary<string, string> Attention = new(StringComparer.Ordinal)
    {
        ["norm"] = "group_norm", ["q"] = "to_q", ["k"] = "to_k", ["v"] = "to_v", ["proj_out"] = "to_out.0",
    };

    public override IEnumerable<KeyMapping> Map(IReadOnlyDictionary<string, SafeTensorInfo> stored, IModelConfig config, string prefix, string file)
    {
        int levels = ((AutoencoderKLConfig)config).UpBlockTypes.Length;
        var unknown = new List<string>();
        var result = new List<KeyMapping>();
        foreach (var (key, info) in stored)
        {
            var moduleKey = Convert(key, levels);
            if (moduleKey is null) { unknown.Add(key); continue; }
            bool attentionWeight = moduleKey.Contains(".mid_block.attentions.0.to_", StringComparison.Ordinal) && info.Shape.Length > 2;
            result.Add(attentionWeight
                ? new KeyMapping(moduleKey, prefix + key, info.Shape[..2]) // [C,C,1,1] conv kernel -> [C,C] linear weight, same bytes
                : Same(moduleKey, prefix + key, info));
        }
        if (unknown.Count > 0) throw Unknown(file, prefix, unknown.Order(StringComparer.Ordinal), "AutoencoderKL");
        return result;
    }

    /// <summary>The diffusers key of an LDM autoencoder key, or null when it is not one.</summary>
    internal static string? Convert(string key, int levels)
    {
        var p = key.Split('.');
        string Tail(int from) => string.Join('.', p.Skip(from));
        if (p.Length == 2 && p[0] is "quant_conv" or "post_quant_conv") return key;
        if (p.Length < 3 || p[0] is not ("encoder" or "decoder")) return null;
        var side = p[0];
        if (p.Length == 3 && p[1] is "conv_in" or "conv_out") return key;
        if (p.Length == 3 && p[1] == "norm_out") return $"{side}.conv_norm_out.{p[2]}";
        if (p[1] == "mid" && p.Length >= 4)
        {
            if (p[2] is "block_1" or "block_2") return $"{side}.mid_block.resnets.{(p[2] == "block_1" ? 0 : 1)}.{Resnet(Tail(3))}";
            if (p[2] == "attn_1" && p.Length == 5 && Attention.TryGetValue(p[3], out var a)) return $"{side}.mid_block.attentions.0.{a}.{p[4]}";
            return null;
        }
        if (p.Length < 5 || !int.TryParse(p[2], out var n)) return null;
        if (side == "encoder" && p[1] == "down")
            return p[3] switch
            {
                "block" when p.Length >= 6 => $"encoder.down_blocks.{n}.resnets.{Resnet(Tail(4))}",
                "downsample" when p[4] == "conv" && p.Length == 6 => $"encoder.down_blocks.{n}.downsamplers.0.conv.{p[5]}",
                _ => null,
            };
        if (side == "decoder" && p[1] == "up" && n < levels)
            return p[3] switch
            {
                "block" when p.Length >= 6 => $"decoder.up_blocks.{levels - 1 - n}.resnets.{Resnet(Tail(4))}",
                "upsample" when p[4] == "conv" && p.Length == 6 => $"decoder.up_blocks.{levels - 1 - n}.upsamplers.0.conv.{p[5]}",
                _ => null,
            };
        return null;
    }

    private static string Resnet(string rest) => rest.Replace("nin_shortcut", "conv_shortcut");
}
