using Diffusion.Engine.Imaging;
using Diffusion.Engine.Models;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// An init image through the VAE's encoder (the img2img pipelines' first stage): the posterior's mean and standard
/// deviation [1, C, h, w] on the CPU, unscaled. The denoise stage samples it with the run's generator (diffusers'
/// <c>latent_dist.sample(generator)</c>, the generator's first draw) and scales it, so encoding takes no seed.
/// </summary>
public sealed class EncodedImage : TensorHolder
{
    private readonly Tensor _mean, _std;

    /// <summary>The model family whose VAE encoded it, by name.</summary>
    public string Family { get; init; } = "";
    public string Model { get; init; } = "";
    /// <summary>The image size the latents are for (the init image's, rounded down or resized as diffusers does).</summary>
    public int Width { get; init; }
    public int Height { get; init; }
    /// <summary>The file it came from, or "" for an image object.</summary>
    public string Source { get; init; } = "";

    public EncodedImage(Tensor mean, Tensor std)
    {
        _mean = Track(mean); _std = Track(std);
    }

    public Tensor Mean { get { ThrowIfDisposed(); return _mean; } }
    public Tensor Std { get { ThrowIfDisposed(); return _std; } }
    public string Shape => IsDisposed ? "(freed)" : "[" + string.Join(",", _mean.shape) + "]";

    protected override IEnumerable<Tensor?> OwnedTensors() => [_mean, _std];

    public override string ToString() => $"Encoded image {Width}x{Height} {Shape}{(Source.Length > 0 ? $" from '{Source}'" : "")}";
}

/// <summary>img2img as diffusers' StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline and FluxImg2ImgPipeline do it.</summary>
public static class ImageToImage
{
    /// <summary>
    /// The init image as the VAE takes it: RGB (alpha dropped, gray spread to three channels, as PIL's convert("RGB")),
    /// resized with Lanczos (PIL's LANCZOS; ImageSharp's Lanczos3 may round a few pixels differently) to the requested
    /// size, or, without one, to its own size rounded down to a multiple of <paramref name="multiple"/> (diffusers'
    /// VaeImageProcessor.get_default_height_width). [1, 3, H, W] float32 in [-1, 1].
    /// </summary>
    internal static (Tensor Pixels, int Height, int Width) Prepare(Image<Rgb24> image, int? height, int? width, int multiple)
    {
        int targetWidth = width ?? image.Width - image.Width % multiple;
        int targetHeight = height ?? image.Height - image.Height % multiple;
        if (targetWidth < multiple || targetHeight < multiple)
            throw new DiffusionException("InitImageTooSmall", DiffusionErrorKind.InvalidArgument,
                $"The init image is {image.Width}x{image.Height}; this model needs at least {multiple}x{multiple} pixels. Give a larger image.", "InitImage");
        if (targetWidth % multiple != 0 || targetHeight % multiple != 0)
            throw new DiffusionException("InvalidImageSize", DiffusionErrorKind.InvalidArgument,
                $"-Width {targetWidth} / -Height {targetHeight}: for img2img with this model both must be multiples of {multiple}.", "Width");
        if (targetWidth != image.Width || targetHeight != image.Height)
            image.Mutate(c => c.Resize(targetWidth, targetHeight, KnownResamplers.Lanczos3));
        return (ImageLoader.ToTensor(image), targetHeight, targetWidth); // [1, 3, H, W]
    }

    /// <summary>An init image file as RGB (see <see cref="ImageLoader.Read"/>).</summary>
    internal static Image<Rgb24> Read(string path) => ImageLoader.Read(path, "init image");

    /// <summary>An image object's 8-bit RGB.</summary>
    internal static Image<Rgb24> FromImage(DiffusionImage image) => Image.LoadPixelData<Rgb24>(image.GetRgb(), image.Width, image.Height);

    /// <summary>The VAE encode stage: the init image's latent distribution for this pipeline's denoiser.</summary>
    public static EncodedImage Encode(DiffusionPipeline pipe, string path, int? height = null, int? width = null)
    {
        using var image = Read(path);
        return Encode(pipe, image, height, width, Path.GetFullPath(path));
    }

    /// <summary>The VAE encode stage for an image object (a generated image, or one read by Get-DiffusionImage).</summary>
    public static EncodedImage Encode(DiffusionPipeline pipe, DiffusionImage image, int? height = null, int? width = null)
    {
        using var rgb = FromImage(image);
        return Encode(pipe, rgb, height, width);
    }

    internal static EncodedImage Encode(DiffusionPipeline pipe, Image<Rgb24> image, int? height, int? width, string source = "")
    {
        const string stage = "Encoding the init image";
        var vae = pipe.Require<AutoencoderKL>("vae", stage);
        int multiple = pipe.PipelineFamily.ImageSizeMultiple(pipe.VaeScaleFactor); // FluxImg2ImgPipeline's processor packs 2x2
        var (pixels, h, w) = Prepare(image, height, width, multiple);
        using var pixelScope = pixels;
        // SDXL encodes in float32 when the VAE asks for it (force_upcast); SD's img2img pipeline encodes in the pipeline's dtype.
        var vaeDType = pipe.PipelineFamily.VaeEncodeDType(pipe, vae);
        return NativeFailure.Guard(stage, () => WithVaeIn(pipe, vae, vaeDType, () =>
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var input = pixels.to(pipe.TorchDType, pipe.TorchDevice).to(vaeDType); // diffusers: image.to(dtype), then .float() to upcast
            var (mean, logvar) = vae.Encode(input);
            var std = torch.exp(0.5 * logvar); // diffusers' DiagonalGaussianDistribution.std
            return new EncodedImage(mean.to(torch.CPU), std.to(torch.CPU))
            {
                Family = pipe.Family, Model = pipe.Path, Width = w, Height = h, Source = source,
            };
        }));
    }

    /// <summary>The VAE's config (scaling and shift), from the loaded VAE or, in a staged denoise pipeline without it, from its folder.</summary>
    internal static AutoencoderKLConfig VaeConfig(DiffusionPipeline pipe) =>
        pipe.Components.TryGetValue("vae", out var c) && c.Instance is AutoencoderKL vae
            ? vae.Config
            : AutoencoderKLConfig.Load(pipe.Folder.ComponentFile("vae", "config.json"));

    /// <summary>An encoded image fits this run: same family, the run's size.</summary>
    internal static void Check(EncodedImage image, DiffusionPipeline pipe, int height, int width, bool hasInitialLatents)
    {
        if (image.IsDisposed) image.Mean.Dispose(); // throws ObjectDisposed with its message
        if (image.Family != pipe.Family)
            throw new DiffusionException("InitImageFamilyMismatch", DiffusionErrorKind.InvalidArgument,
                $"The init image was encoded by a {image.Family} pipeline's VAE; this pipeline ('{pipe.Path}') is {pipe.Family}. Encode it with this model's VAE.", "InitImage");
        if (image.Height != height || image.Width != width)
            throw new DiffusionException("InitImageSizeMismatch", DiffusionErrorKind.InvalidArgument,
                $"The init image was encoded at {image.Width}x{image.Height}; this run asks for {width}x{height}. Leave -Width/-Height out " +
                "(img2img takes the init image's size) or encode the image at that size (ConvertTo-DiffusionLatent -Image ... -Width -Height).", "InitImage");
        if (hasInitialLatents)
            throw new DiffusionException("InitImageWithInitialLatent", DiffusionErrorKind.InvalidArgument,
                "-InitImage and -InitialLatent both say where the run starts; give one of them.", "InitImage");
    }

    /// <summary>Strength in [0, 1], as diffusers' check_inputs.</summary>
    public static double CheckStrength(double? strength)
    {
        double s = strength ?? 0.8;
        if (!(s >= 0 && s <= 1))
            throw new DiffusionException("StrengthOutOfRange", DiffusionErrorKind.InvalidArgument,
                $"-Strength {s} is outside 0..1. 0 keeps the init image, 1 replaces it almost entirely.", "Strength");
        return s;
    }

    /// <summary>
    /// The step index the run starts at (diffusers' <c>get_timesteps</c>, the family's t_start), multiplied by the
    /// scheduler's order. A strength that leaves no step is refused, as diffusers refuses it.
    /// </summary>
    internal static int StartStep(IPipelineFamily family, int steps, double strength, int order)
    {
        int tStart = family.StartStep(steps, strength);
        if (steps - tStart < 1)
            throw new DiffusionException("StrengthLeavesNoSteps", DiffusionErrorKind.InvalidArgument,
                $"-Strength {strength} with -Steps {steps} leaves {steps - tStart} denoising steps. Raise -Strength or -Steps " +
                "(the run takes about Steps x Strength steps; -Strength 0 would return the init image unchanged).", "Strength");
        return tStart * order;
    }

    /// <summary>
    /// An img2img run's start, for every family: the encoded image checked against the run, the strength checked, the
    /// first step it leaves (diffusers' get_timesteps, after SetTimesteps) and the noised latents [B, C, h, w] (unpacked).
    /// </summary>
    internal static (Tensor Noised, int FirstStep, double Strength) Begin(EncodedImage init, DiffusionPipeline pipe, DenoiseOptions o,
        Schedulers.IScheduler scheduler, int steps, int height, int width, bool hasInitialLatents, int batch, Generator generator, ScalarType dtype)
    {
        Check(init, pipe, height, width, hasInitialLatents);
        double strength = CheckStrength(o.Strength);
        int firstStep = StartStep(pipe.PipelineFamily, steps, strength, scheduler.Order);
        return (NoisedLatents(init, VaeConfig(pipe), scheduler, firstStep, batch, generator, dtype), firstStep, strength);
    }

    /// <summary>
    /// The latents an img2img run starts from, [B, C, h, w] (unpacked): the posterior sampled with the run's generator
    /// (its first draw, in the dtype the VAE encoded in, as diffusers' DiagonalGaussianDistribution.sample), cast to the
    /// run's dtype, scaled (SD: x * scaling_factor; FLUX: (x - shift_factor) * scaling_factor), repeated for the batch,
    /// then noised with the generator's next draw to the first step's level.
    /// </summary>
    internal static Tensor NoisedLatents(EncodedImage image, AutoencoderKLConfig vae, Schedulers.IScheduler scheduler, int firstStep,
        int batch, Generator generator, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var mean = image.Mean; // the VAE's dtype: the pipeline's, or float32 for SDXL's force_upcast
        var draw = torch.randn(mean.shape, mean.dtype, torch.CPU, generator: generator);
        var sample = (mean + image.Std * draw).to(dtype); // [1, C, h, w]
        var latents = vae.ShiftFactor is double shift ? (sample - shift) * vae.ScalingFactor : sample * vae.ScalingFactor;
        var repeated = latents.expand(batch, -1, -1, -1).contiguous(); // [B, C, h, w]
        var noise = torch.randn(repeated.shape, dtype, torch.CPU, generator: generator);
        return scope.MoveToOuter(scheduler.AddNoise(repeated, noise, firstStep));
    }

    /// <summary>Runs <paramref name="action"/> with the VAE's weights in <paramref name="dtype"/>, then converts them back to the pipeline's (lossless for float16/bfloat16 to float32 and back).</summary>
    internal static T WithVaeIn<T>(DiffusionPipeline pipe, AutoencoderKL vae, ScalarType dtype, Func<T> action)
    {
        if (dtype == pipe.TorchDType) return action();
        vae.to(dtype);
        try { return action(); }
        finally { vae.to(pipe.TorchDType); }
    }
}
