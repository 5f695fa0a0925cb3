namespace Diffusion.Engine.Models;

/// <summary>The image the plan keeps activation head-room for: size, images per batch, text tokens (null: the model's default).</summary>
public sealed record ActivationRequest(int Height, int Width, int Batch = 1, int? TextLength = null, int VaeScaleFactor = 8)
{
    public override string ToString() => $"{Width}x{Height}, batch {Batch}";
}

/// <summary>
/// Each model class's count of the activation bytes one forward keeps alive (its registration's activation estimate;
/// Sharding's ActivationEstimator adds the measured margin). The figures follow the block code (Models/Blocks).
/// </summary>
internal static class ActivationFormulas
{
    /// <summary>
    /// FLUX: N = S + L joint tokens (L = (H/2vsf)·(W/2vsf) packed latents, S the T5 length), D = heads·head_dim.
    /// Per N·D element, with e the dtype's bytes: a single-stream block holds 16 tensors (joined residual 1, norm 1,
    /// MLP 8, attention's linear and RMS-normed q/k and v 5, RoPE'd q 1) while the second RoPE runs (½e for -imag, e for
    /// the stacked pair, float32 products: 5·4 in half types, 3·4 in float32), and ends holding 19; a double-stream
    /// block peaks lower (its MLP is per stream). The model holds the previous block's output and the float32 RoPE table.
    /// </summary>
    internal static (double, string) Flux(FluxTransformer2DConfig c, int e, ActivationRequest r)
    {
        long headDim = c.AttentionHeadDim;
        long d = (long)c.NumAttentionHeads * headDim;
        long s = r.TextLength ?? (c.GuidanceEmbeds ? 512 : 256); // FLUX.1-dev's max_sequence_length, schnell's
        long l = (long)(r.Height / (2 * r.VaeScaleFactor)) * (r.Width / (2 * r.VaeScaleFactor));
        double nd = (double)r.Batch * (s + l) * d;
        bool half = e < 4;
        double rope = 1.5 * e + (half ? 5 * 4 + e : 3 * 4);
        double single = Math.Max(16 * e + rope, 19 * e);
        double doubleStream = Math.Max(10 * e + rope, 15 * e);
        double held = nd * e + 2.0 * (s + l) * headDim * 4 + (double)r.Batch * s * c.JointAttentionDim * e;
        return (held + nd * Math.Max(single, doubleStream), $"{s + l} tokens ({l} image + {s} text) of width {d}");
    }

    /// <summary>
    /// SD UNet, batch doubled for classifier-free guidance: the skip connections and block outputs it holds (two per
    /// layer per level, down and up: layers_per_block of the level, a list or one value for all), plus the peak of a
    /// cross-attention block at its level: about 30 C·T in its transformer (GEGLU's 8C projection is the largest), plus
    /// one C·T per further transformer layer of the level (transformer_layers_per_block: the transformer keeps each
    /// layer's output until it returns), or 10 C·T in a resnet.
    /// </summary>
    internal static (double, string) UNet(UNet2DConditionConfig c, int e, ActivationRequest r)
    {
        var channels = c.BlockOutChannels;
        int levels = channels.Length;
        var layers = c.LayersPerBlock.PerBlock(levels, "layers_per_block", c.SourcePath);
        var depth = c.TransformerLayersPerBlock.PerBlock(levels, "transformer_layers_per_block", c.SourcePath);
        double batch = 2.0 * r.Batch;
        double tokens = (double)(r.Height / r.VaeScaleFactor) * (r.Width / r.VaeScaleFactor);
        double held = 0, peak = 0;
        for (int i = 0; i < levels; i++)
        {
            double ct = channels[i] * tokens / Math.Pow(4, i);
            held += 2 * (layers[i] + 1) * ct;
            bool attention = i < c.DownBlockTypes.Length && c.DownBlockTypes[i].StartsWith("CrossAttn", StringComparison.Ordinal);
            peak = Math.Max(peak, (attention ? 30 + (depth[i] - 1) : 10) * ct);
        }
        return (batch * (held + peak) * e, $"{tokens} latent pixels, batch {batch} with guidance");
    }

    /// <summary>VAE decode: the last up block runs resnets at full size on C = block_out_channels[0]: about 12 C·H·W.</summary>
    internal static (double, string) VaeDecode(AutoencoderKLConfig c, int e, ActivationRequest r)
    {
        double pixels = (double)r.Height * r.Width;
        return (r.Batch * 12.0 * c.BlockOutChannels[0] * pixels * e, $"decode at {r.Width}x{r.Height}");
    }

    /// <summary>T5 encoder: per block, the gated feed-forward (8 S·d_ff) and attention (12 S·d_model) plus the bias and scores (heads·S²).</summary>
    internal static (double, string) T5(T5Config c, int e, ActivationRequest r)
    {
        long s = r.TextLength ?? 512;
        double bytes = r.Batch * ((12.0 * s * c.DModel + 8.0 * s * c.DFf) * e + c.NumHeads * (double)s * s * (e + 8));
        return (bytes, $"{s} tokens");
    }

    /// <summary>CLIP text encoder: 77 tokens, batch doubled for SD's negative prompts; every layer's output is kept (hidden_states).</summary>
    internal static (double, string) Clip(CLIPTextConfig c, int e, ActivationRequest r)
    {
        long s = c.MaxPositionEmbeddings, h = c.HiddenSize;
        double bytes = 2.0 * r.Batch * ((12.0 * s * h + 4.0 * s * c.IntermediateSize + c.NumHiddenLayers * s * h) * e + c.NumAttentionHeads * (double)s * s * 4);
        return (bytes, $"{s} tokens");
    }
}
