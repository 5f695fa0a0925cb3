using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Families;

/// <summary>
/// FluxPipeline's latent helpers (diffusers pipeline_flux.py): the VAE latent [B, C, h, w] is cut into 2×2 patches and
/// packed into tokens [B, (h/2)(w/2), 4C]; each token has a position id (0, row, column); text tokens have id 0.
/// </summary>
public static class FluxLatents
{
    /// <summary>
    /// The image size the pipeline actually uses: height and width rounded down to multiples of vaeScaleFactor·2
    /// (the VAE downsamples by vaeScaleFactor, packing by 2 more). <paramref name="changed"/> says whether the size was rounded.
    /// </summary>
    public static (int Height, int Width) RoundSize(int height, int width, int vaeScaleFactor, out bool changed)
    {
        int multiple = vaeScaleFactor * 2;
        int h = height / multiple * multiple;
        int w = width / multiple * multiple;
        if (h <= 0 || w <= 0)
            throw new DiffusionException("ImageSizeTooSmall", DiffusionErrorKind.InvalidArgument,
                $"A FLUX image must be at least {multiple}x{multiple} pixels, but {width}x{height} was asked for. Use a larger width and height (multiples of {multiple}).",
                h <= 0 ? "Height" : "Width");
        changed = h != height || w != width;
        return (h, w);
    }

    /// <summary>The unpacked latent size for an image: 2·(size // (vaeScaleFactor·2)) in each direction.</summary>
    public static (int Height, int Width) LatentSize(int height, int width, int vaeScaleFactor)
        => (2 * (height / (vaeScaleFactor * 2)), 2 * (width / (vaeScaleFactor * 2)));

    /// <summary>[B, C, h, w] → [B, (h/2)(w/2), 4C] (diffusers _pack_latents).</summary>
    public static Tensor PackLatents(Tensor latents)
    {
        using var scope = torch.NewDisposeScope();
        long b = latents.shape[0], c = latents.shape[1], h = latents.shape[2], w = latents.shape[3];
        var patches = latents.view(b, c, h / 2, 2, w / 2, 2).permute(0, 2, 4, 1, 3, 5); // [B, h/2, w/2, C, 2, 2]
        return scope.MoveToOuter(patches.reshape(b, (h / 2) * (w / 2), c * 4));
    }

    /// <summary>[B, L, 4C] → [B, C, h, w] for an image of <paramref name="height"/>×<paramref name="width"/> pixels (diffusers _unpack_latents).</summary>
    public static Tensor UnpackLatents(Tensor latents, int height, int width, int vaeScaleFactor)
    {
        using var scope = torch.NewDisposeScope();
        long b = latents.shape[0], tokens = latents.shape[1], channels = latents.shape[2];
        var (h, w) = LatentSize(height, width, vaeScaleFactor);
        if (tokens != (long)(h / 2) * (w / 2) || channels % 4 != 0)
            throw new DiffusionException("LatentShapeMismatch", DiffusionErrorKind.InvalidArgument,
                $"Packed latents [{string.Join(", ", latents.shape)}] do not fit a {width}x{height} image (expected {(h / 2) * (w / 2)} tokens of 4·C channels).", "latents");
        var patches = latents.view(b, h / 2, w / 2, channels / 4, 2, 2).permute(0, 3, 1, 4, 2, 5); // [B, C, h/2, 2, w/2, 2]
        return scope.MoveToOuter(patches.reshape(b, channels / 4, h, w));
    }

    /// <summary>
    /// Position ids of the packed image tokens for a grid of <paramref name="gridHeight"/>×<paramref name="gridWidth"/> tokens
    /// (half the latent size): [gridHeight·gridWidth, 3] float32 rows (0, row, column), row-major (diffusers _prepare_latent_image_ids).
    /// </summary>
    public static Tensor PrepareLatentImageIds(int gridHeight, int gridWidth)
    {
        using var scope = torch.NewDisposeScope();
        var rows = torch.arange(gridHeight, dtype: ScalarType.Float32, device: torch.CPU).unsqueeze(1).expand(gridHeight, gridWidth);
        var cols = torch.arange(gridWidth, dtype: ScalarType.Float32, device: torch.CPU).unsqueeze(0).expand(gridHeight, gridWidth);
        var ids = torch.stack([torch.zeros(gridHeight, gridWidth, device: torch.CPU), rows, cols], dim: -1); // [h, w, 3]
        return scope.MoveToOuter(ids.reshape(gridHeight * gridWidth, 3));
    }

    /// <summary>Position ids of the text tokens: zeros [seqLen, 3] float32.</summary>
    public static Tensor TextIds(int seqLen) => torch.zeros(seqLen, 3, dtype: ScalarType.Float32, device: torch.CPU);

    /// <summary>
    /// The initial noise, packed: torch.randn on the CPU <paramref name="generator"/> in diffusers' shape
    /// (B, C, 2·(H // (vsf·2)), 2·(W // (vsf·2))) and <paramref name="dtype"/>, then packed to [B, L, 4C].
    /// The same seed gives the same noise as diffusers' FluxPipeline.
    /// </summary>
    public static Tensor PrepareLatents(int batchSize, int numChannels, int height, int width, int vaeScaleFactor,
        Generator generator, ScalarType dtype = ScalarType.Float32)
    {
        using var scope = torch.NewDisposeScope();
        var (h, w) = LatentSize(height, width, vaeScaleFactor);
        var noise = torch.randn([batchSize, numChannels, h, w], dtype: dtype, device: CPU, generator: generator);
        return scope.MoveToOuter(PackLatents(noise));
    }
}
