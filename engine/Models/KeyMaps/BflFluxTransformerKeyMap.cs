using Diffusion.Engine.IO;

namespace Diffusion.Engine.Models;

/// <summary>
/// Black Forest Labs' FLUX.1 transformer (<c>flux1-dev.safetensors</c>: double_blocks, single_blocks, img_in, ...) →
/// diffusers' FluxTransformer2DModel, as diffusers' <c>convert_flux_transformer_checkpoint_to_diffusers</c>: the fused
/// <c>qkv</c> projections split in three (to_q/to_k/to_v, add_q/k/v_proj), the single blocks' <c>linear1</c> split into
/// q, k, v (the model's width each) and the MLP input (the rest), and <c>final_layer.adaLN_modulation.1</c>, whose
/// halves BFL orders (shift, scale), read as diffusers' norm_out.linear (scale, shift). The width comes from the
/// tensors' shapes (diffusers' converter hardcodes FLUX.1's 3072, which fails for other widths).
/// </summary>
internal sealed class BflFluxTransformerKeyMap : KeyMap
{
    private static readonly Dictionary<string, string> Fixed = new(StringComparer.Ordinal)
    {
        ["time_in.in_layer"] = "time_text_embed.timestep_embedder.linear_1", ["time_in.out_layer"] = "time_text_embed.timestep_embedder.linear_2",
        ["vector_in.in_layer"] = "time_text_embed.text_embedder.linear_1", ["vector_in.out_layer"] = "time_text_embed.text_embedder.linear_2",
        ["guidance_in.in_layer"] = "time_text_embed.guidance_embedder.linear_1", ["guidance_in.out_layer"] = "time_text_embed.guidance_embedder.linear_2",
        ["txt_in"] = "context_embedder", ["img_in"] = "x_embedder", ["final_layer.linear"] = "proj_out",
    };

    /// <summary>Double-block modules that map one to one (module path below double_blocks.N → below transformer_blocks.N).</summary>
    private static readonly Dictionary<string, string> Double = new(StringComparer.Ordinal)
    {
        ["img_mod.lin"] = "norm1.linear", ["txt_mod.lin"] = "norm1_context.linear",
        ["img_attn.norm.query_norm"] = "attn.norm_q", ["img_attn.norm.key_norm"] = "attn.norm_k",
        ["txt_attn.norm.query_norm"] = "attn.norm_added_q", ["txt_attn.norm.key_norm"] = "attn.norm_added_k",
        ["img_mlp.0"] = "ff.net.0.proj", ["img_mlp.2"] = "ff.net.2", ["txt_mlp.0"] = "ff_context.net.0.proj", ["txt_mlp.2"] = "ff_context.net.2",
        ["img_attn.proj"] = "attn.to_out.0", ["txt_attn.proj"] = "attn.to_add_out",
    };

    private static readonly Dictionary<string, string> Single = new(StringComparer.Ordinal)
    {
        ["modulation.lin"] = "norm.linear", ["norm.query_norm"] = "attn.norm_q", ["norm.key_norm"] = "attn.norm_k", ["linear2"] = "proj_out",
    };

    public override IEnumerable<KeyMapping> Map(IReadOnlyDictionary<string, SafeTensorInfo> stored, IModelConfig config, string prefix, string file)
    {
        var result = new List<KeyMapping>();
        var unknown = new List<string>();
        foreach (var (key, info) in stored)
        {
            var mapped = Convert(key, info, stored);
            if (mapped is null) unknown.Add(key);
            else result.AddRange(mapped.Select(m => m with { SourceKey = prefix + m.SourceKey }));
        }
        if (unknown.Count > 0) throw Unknown(file, prefix, unknown.Order(StringComparer.Ordinal), "FluxTransformer2DModel");
        return result;
    }

    private static IEnumerable<KeyMapping>? Convert(string key, SafeTensorInfo info, IReadOnlyDictionary<string, SafeTensorInfo> stored)
    {
        int dot = key.LastIndexOf('.');
        if (dot < 0) return null;
        string module = key[..dot], leaf = key[(dot + 1)..];
        string param = leaf == "scale" ? "weight" : leaf; // RMSNorm's scale is diffusers' weight
        if (Fixed.TryGetValue(module, out var name)) return [Same($"{name}.{param}", key, info)];
        if (module == "final_layer.adaLN_modulation.1")
        {
            long half = info.Shape[0] / 2; // [2*width, ...]: (shift, scale) -> (scale, shift)
            return [new KeyMapping($"norm_out.linear.{param}", key, info.Shape, [new RowRange(half, half), new RowRange(0, half)])];
        }
        var p = module.Split('.', 3);
        if (p.Length < 3 || !int.TryParse(p[1], out var n)) return null;
        if (p[0] == "double_blocks")
        {
            var block = $"transformer_blocks.{n}.";
            if (Double.TryGetValue(p[2], out var d)) return [Same($"{block}{d}.{param}", key, info)];
            if (p[2] is "img_attn.qkv" or "txt_attn.qkv")
            {
                long width = info.Shape[0] / 3; // [3*width, ...] -> q, k, v
                string[] names = p[2] == "img_attn.qkv" ? ["attn.to_q", "attn.to_k", "attn.to_v"] : ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"];
                return names.Select((t, k) => Rows($"{block}{t}.{param}", key, info, k * width, width)).ToList();
            }
            return null;
        }
        if (p[0] == "single_blocks")
        {
            var block = $"single_transformer_blocks.{n}.";
            if (Single.TryGetValue(p[2], out var s)) return [Same($"{block}{s}.{param}", key, info)];
            if (p[2] == "linear1" && stored.TryGetValue($"single_blocks.{n}.linear2.weight", out var linear2))
            {
                long width = linear2.Shape[0], mlp = info.Shape[0] - 3 * width; // linear1 [3*width + mlp, width], linear2 [width, width + mlp]
                if (mlp <= 0) return null;
                return new[] { "attn.to_q", "attn.to_k", "attn.to_v" }.Select((t, k) => Rows($"{block}{t}.{param}", key, info, k * width, width))
                    .Append(Rows($"{block}proj_mlp.{param}", key, info, 3 * width, mlp)).ToList();
            }
            return null;
        }
        return null;
    }
}
