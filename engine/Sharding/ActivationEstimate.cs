using System.Text.Json;

namespace Diffusion.Engine.Sharding;

/// <summary>The image the plan keeps activation head-room for: size, images per batch, text tokens (null: the model's default).</summary>
public sealed record ActivationRequest(int Height, int Width, int Batch = 1, int? TextLength = null, int VaeScaleFactor = 8)
{
    public override string ToString() => $"{Width}x{Height}, batch {Batch}";
}

/// <summary>Peak activation memory of one forward pass, in bytes, and what it was computed for.</summary>
public sealed record ActivationEstimate(long Bytes, string Note);

/// <summary>
/// The activation memory a component needs on the device that computes it, from its config at the requested image
/// size. Counts what this engine's code keeps alive, not what PyTorch would: TorchSharp frees a module's
/// intermediates when its dispose scope ends, so the peak of a block is what the block holds plus the peak of the
/// sub-module running at that moment. The figures follow the block code (Models/Blocks) and count the tensors it
/// allocates; libtorch's own scratch (attention kernels, workspaces) and the allocator's rounding come on top.
/// Measured on the CPU (ActivationProbe, the benchmark's rows: a FLUX transformer of width 1024 at 512-1024 px), the
/// forward's peak resident memory was 0.86-1.38x the counted tensors in bfloat16 and 1.35-1.52x in float32, so the
/// count is scaled by 1.4 for half types and 1.6 for float32. GPU kernels were not measured (no GPU in that session).
/// </summary>
public static class ActivationEstimator
{
    private static double Margin(int elementBytes) => elementBytes < 4 ? 1.4 : 1.6;

    public static ActivationEstimate For(string className, JsonElement? config, string dtype, ActivationRequest r)
    {
        int e = ModuleLayouts.DTypeSize(dtype);
        var (bytes, what) = className switch
        {
            "FluxTransformer2DModel" => Flux(config, e, r),
            "UNet2DConditionModel" => UNet(config, e, r),
            "AutoencoderKL" => VaeDecode(config, e, r),
            "T5EncoderModel" => T5(config, e, r),
            "CLIPTextModel" or "CLIPTextModelWithProjection" => Clip(config, e, r),
            _ => (0.0, "no estimate for this class"),
        };
        return new ActivationEstimate((long)Math.Ceiling(bytes * Margin(e)), $"{className} at {r} in {dtype}: {what}");
    }

    /// <summary>
    /// FLUX: N = S + L joint tokens (L = (H/2vsf)·(W/2vsf) packed latents, S the T5 length), D = heads·head_dim.
    /// Per N·D element, with e the dtype's bytes: a single-stream block holds 16 tensors (joined residual 1, norm 1,
    /// MLP 8, attention's linear and RMS-normed q/k and v 5, RoPE'd q 1) while the second RoPE runs (½e for -imag, e for
    /// the stacked pair, float32 products: 5·4 in half types, 3·4 in float32), and ends holding 19; a double-stream
    /// block peaks lower (its MLP is per stream). The model holds the previous block's output and the float32 RoPE table.
    /// </summary>
    private static (double, string) Flux(JsonElement? c, int e, ActivationRequest r)
    {
        long heads = Int(c, "num_attention_heads", 24), headDim = Int(c, "attention_head_dim", 128);
        long d = heads * headDim;
        bool dev = !c.HasValue || !c.Value.TryGetProperty("guidance_embeds", out var g) || g.ValueKind != JsonValueKind.False;
        long s = r.TextLength ?? (dev ? 512 : 256);
        long l = (long)(r.Height / (2 * r.VaeScaleFactor)) * (r.Width / (2 * r.VaeScaleFactor));
        double nd = (double)r.Batch * (s + l) * d;
        bool half = e < 4;
        double rope = 1.5 * e + (half ? 5 * 4 + e : 3 * 4);
        double single = Math.Max(16 * e + rope, 19 * e);
        double doubleStream = Math.Max(10 * e + rope, 15 * e);
        double held = nd * e + 2.0 * (s + l) * headDim * 4 + (double)r.Batch * s * Int(c, "joint_attention_dim", 4096) * e;
        return (held + nd * Math.Max(single, doubleStream), $"{s + l} tokens ({l} image + {s} text) of width {d}");
    }

    /// <summary>
    /// SD UNet, batch doubled for classifier-free guidance: the skip connections and block outputs it holds (two per
    /// layer per level, down and up), plus the peak of a cross-attention block at its level: about 30 C·T in its
    /// transformer (GEGLU's 8C projection is the largest) or 10 C·T in a resnet.
    /// </summary>
    private static (double, string) UNet(JsonElement? c, int e, ActivationRequest r)
    {
        var channels = Ints(c, "block_out_channels", [320, 640, 1280, 1280]);
        var types = Strings(c, "down_block_types", ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]);
        long layers = Int(c, "layers_per_block", 2);
        double batch = 2.0 * r.Batch;
        double tokens = (double)(r.Height / r.VaeScaleFactor) * (r.Width / r.VaeScaleFactor);
        double held = 0, peak = 0;
        for (int i = 0; i < channels.Length; i++)
        {
            double ct = channels[i] * tokens / Math.Pow(4, i);
            held += 2 * (layers + 1) * ct;
            bool attention = i < types.Length && types[i].StartsWith("CrossAttn", StringComparison.Ordinal);
            peak = Math.Max(peak, (attention ? 30 : 10) * ct);
        }
        return (batch * (held + peak) * e, $"{tokens} latent pixels, batch {batch} with guidance");
    }

    /// <summary>VAE decode: the last up block runs resnets at full size on C = block_out_channels[0]: about 12 C·H·W.</summary>
    private static (double, string) VaeDecode(JsonElement? c, int e, ActivationRequest r)
    {
        var channels = Ints(c, "block_out_channels", [128, 256, 512, 512]);
        double pixels = (double)r.Height * r.Width;
        return (r.Batch * 12.0 * channels[0] * pixels * e, $"decode at {r.Width}x{r.Height}");
    }

    /// <summary>T5 encoder: per block, the gated feed-forward (8 S·d_ff) and attention (12 S·d_model) plus the bias and scores (heads·S²).</summary>
    private static (double, string) T5(JsonElement? c, int e, ActivationRequest r)
    {
        long s = r.TextLength ?? 512, dm = Int(c, "d_model", 4096), dff = Int(c, "d_ff", 10240), heads = Int(c, "num_heads", 64);
        double bytes = r.Batch * ((12.0 * s * dm + 8.0 * s * dff) * e + heads * (double)s * s * (e + 8));
        return (bytes, $"{s} tokens");
    }

    /// <summary>CLIP text encoder: 77 tokens, batch doubled for SD's negative prompts; every layer's output is kept (hidden_states).</summary>
    private static (double, string) Clip(JsonElement? c, int e, ActivationRequest r)
    {
        long s = Int(c, "max_position_embeddings", 77), h = Int(c, "hidden_size", 768), inter = Int(c, "intermediate_size", 3072);
        long layers = Int(c, "num_hidden_layers", 12), heads = Int(c, "num_attention_heads", 12);
        double bytes = 2.0 * r.Batch * ((12.0 * s * h + 4.0 * s * inter + layers * s * h) * e + heads * (double)s * s * 4);
        return (bytes, $"{s} tokens");
    }

    private static long Int(JsonElement? c, string key, long fallback) =>
        c is JsonElement j && j.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n) ? n : fallback;

    private static long[] Ints(JsonElement? c, string key, long[] fallback) =>
        c is JsonElement j && j.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Array
            ? v.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.Number).Select(x => x.GetInt64()).ToArray()
            : fallback;

    private static string[] Strings(JsonElement? c, string key, string[] fallback) =>
        c is JsonElement j && j.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Array
            ? v.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : "").ToArray()
            : fallback;
}
