using Diffusion.Engine.IO;

namespace Diffusion.Engine.Models;

/// <summary>
/// CompVis/LDM UNet (<c>model.diffusion_model.*</c>) → diffusers' UNet2DConditionModel, as diffusers'
/// <c>convert_ldm_unet_checkpoint</c>: <c>input_blocks.N</c> are the down blocks' resnets, attentions and downsamplers
/// (layers_per_block + 1 per block, after <c>input_blocks.0</c> = conv_in), <c>middle_block.0/1/2</c> the mid block's
/// resnet, attention, resnet, <c>output_blocks.N</c> the up blocks' (layers_per_block + 1 each); resnet layers renamed
/// (in_layers.0 → norm1, in_layers.2 → conv1, emb_layers.1 → time_emb_proj, out_layers.0 → norm2, out_layers.3 → conv2,
/// skip_connection → conv_shortcut). Attention (Transformer2D) keys are the same in both. No tensor changes shape.
/// </summary>
internal sealed class LdmUNetKeyMap : KeyMap
{
    private static readonly Dictionary<string, string> Fixed = new(StringComparer.Ordinal)
    {
        ["time_embed.0"] = "time_embedding.linear_1", ["time_embed.2"] = "time_embedding.linear_2",
        ["input_blocks.0.0"] = "conv_in", ["out.0"] = "conv_norm_out", ["out.2"] = "conv_out",
    };

    public override IEnumerable<KeyMapping> Map(IReadOnlyDictionary<string, SafeTensorInfo> stored, IModelConfig config, string prefix, string file)
    {
        var unet = (UNet2DConditionConfig)config;
        var layers = unet.LayersPerBlock.PerBlock(unet.DownBlockTypes.Length, "layers_per_block", unet.SourcePath);
        if (layers.Distinct().Count() > 1) // LDM numbers input_blocks as layers_per_block + 1 per level; diffusers' converter takes one value too
            throw ModelConfigJson.Unsupported("UNet2DConditionModel", unet.SourcePath, "layers_per_block", unet.LayersPerBlock,
                $"the LDM single-file layout of '{file}' has one layers_per_block for every level; give the config of the model the file was saved from.");
        int perBlock = layers[0] + 1;
        string? labelEmbedding = unet.AdditionEmbedType == "text_time" ? "add_embedding"
            : unet.ClassEmbedType is "timestep" or "projection" ? "class_embedding" : null;
        var unknown = new List<string>();
        var result = new List<KeyMapping>();
        foreach (var (key, info) in stored)
        {
            var moduleKey = Convert(key, perBlock, labelEmbedding);
            if (moduleKey is null) unknown.Add(key);
            else result.Add(Same(moduleKey, prefix + key, info));
        }
        if (unknown.Count > 0) throw Unknown(file, prefix, unknown.Order(StringComparer.Ordinal), "UNet2DConditionModel");
        return result;
    }

    /// <summary>The diffusers key of an LDM UNet key, or null when it is not one.</summary>
    internal static string? Convert(string key, int perBlock, string? labelEmbedding = null)
    {
        var p = key.Split('.');
        string Tail(int from) => string.Join('.', p.Skip(from));
        if (p.Length == 3 && Fixed.TryGetValue($"{p[0]}.{p[1]}", out var name)) return $"{name}.{p[2]}";
        if (p.Length == 4 && Fixed.TryGetValue($"{p[0]}.{p[1]}.{p[2]}", out name)) return $"{name}.{p[3]}";
        if (labelEmbedding is not null && p.Length == 4 && p[0] == "label_emb" && p[1] == "0" && p[2] is "0" or "2")
            return $"{labelEmbedding}.linear_{(p[2] == "0" ? 1 : 2)}.{p[3]}";
        if (p.Length < 3 || !int.TryParse(p[1], out var i)) return null;
        if (p[0] == "middle_block")
            return i switch
            {
                0 or 2 => $"mid_block.resnets.{i / 2}.{Resnet(Tail(2))}",
                1 => $"mid_block.attentions.0.{Tail(2)}",
                _ => null,
            };
        if (p.Length < 4 || !int.TryParse(p[2], out var j)) return null;
        var rest = Tail(3);
        if (p[0] == "input_blocks" && i >= 1)
        {
            int block = (i - 1) / perBlock, layer = (i - 1) % perBlock;
            return j switch
            {
                0 when p[3] == "op" => $"down_blocks.{block}.downsamplers.0.conv.{Tail(4)}",
                0 => $"down_blocks.{block}.resnets.{layer}.{Resnet(rest)}",
                1 => $"down_blocks.{block}.attentions.{layer}.{rest}",
                _ => null,
            };
        }
        if (p[0] == "output_blocks")
        {
            int block = i / perBlock, layer = i % perBlock;
            return j switch
            {
                0 => $"up_blocks.{block}.resnets.{layer}.{Resnet(rest)}",
                1 or 2 when p[3] == "conv" => $"up_blocks.{block}.upsamplers.0.conv.{Tail(4)}",
                1 => $"up_blocks.{block}.attentions.{layer}.{rest}",
                _ => null,
            };
        }
        return null;
    }

    private static string Resnet(string rest) => rest
        .Replace("in_layers.0", "norm1").Replace("in_layers.2", "conv1")
        .Replace("out_layers.0", "norm2").Replace("out_layers.3", "conv2")
        .Replace("emb_layers.1", "time_emb_proj").Replace("skip_connection", "conv_shortcut");
}
