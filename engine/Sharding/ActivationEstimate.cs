using Diffusion.Engine.Models;

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

    /// <summary>
    /// The estimate for a model of <paramref name="className"/> with its typed <paramref name="config"/> (null: the class's
    /// defaults); a class without a registration has none (0 bytes).
    /// </summary>
    public static ActivationEstimate For(string className, IModelConfig? config, string dtype, ActivationRequest r)
    {
        int e = ModuleLayouts.DTypeSize(dtype);
        var model = ModelClasses.Find(className);
        var (bytes, what) = model is null ? (0.0, "no estimate for this class") : model.Activations(config ?? model.DefaultConfig(), e, r);
        return new ActivationEstimate((long)Math.Ceiling(bytes * Margin(e)), $"{className} at {r} in {dtype}: {what}");
    }

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
