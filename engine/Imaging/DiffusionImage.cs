using Diffusion.Engine.IO;
using static TorchSharp.torch;

namespace Diffusion.Engine.Imaging;

/// <summary>
/// A generated image: 8-bit RGB pixels and the parameters that made it, saved as PNG (text chunks), JPEG or WebP (EXIF
/// UserComment). Images decoded by the pipeline also keep the VAE's float output (<see cref="GetPixels"/>, [3,H,W] in [0,1],
/// diffusers' output_type="pt"). What a table shows are properties (Prompt, Seed, Size, Steps, ...); the pixels are
/// methods, so that ConvertTo-Json and Export-Csv of an image give its description, not its pixel array.
/// </summary>
public sealed class DiffusionImage
{
    private readonly byte[] _rgb;
    private readonly Tensor? _pixels;

    public int Index { get; init; }
    public string Prompt => Parameters?.Prompt ?? "";
    public string? NegativePrompt => Parameters?.NegativePrompt;
    public long? Seed => Parameters?.Seed;
    public int Width { get; }
    public int Height { get; }
    /// <summary>"WIDTHxHEIGHT", as A1111's "Size".</summary>
    public string Size => $"{Width}x{Height}";
    public int? Steps => Parameters?.Steps;
    /// <summary>A1111's sampler name ("PLMS", "Euler a", "DPM++ 2M Karras").</summary>
    public string? Sampler => Parameters?.SamplerName;
    public double? GuidanceScale => Parameters?.GuidanceScale;
    /// <summary>The model's folder or repo name.</summary>
    public string? Model => Parameters?.Model;
    /// <summary>With <see cref="BatchPosition"/>: the images that shared this one's generator (1: made alone).</summary>
    public int BatchSize => Parameters?.BatchSize ?? 1;
    public int BatchPosition => Parameters?.BatchPosition ?? 0;
    /// <summary>The file this image was last saved to; null until it is saved.</summary>
    public string? Path { get; private set; }
    public GenerationParameters? Parameters { get; }

    /// <summary>Interleaved RGB, row-major, Width*Height*3 bytes.</summary>
    public byte[] GetRgb() => _rgb;

    /// <summary>The float image [3,H,W] in [0,1] on the CPU, when the image came from the VAE; null for images read from 8-bit data.</summary>
    public Tensor? GetPixels() => _pixels;

    public override string ToString() => $"Image #{Index} {Size} seed {Seed} '{Prompt}'";

    /// <summary>An image decoded by the pipeline: keeps the float pixels [3,H,W] and their 8-bit RGB.</summary>
    public DiffusionImage(Tensor pixels, GenerationParameters parameters, int index)
        : this((int)pixels.shape[2], (int)pixels.shape[1], ImageEncoder.ToRgb24(pixels), parameters)
    {
        _pixels = pixels.DetachFromDisposeScope();
        Index = index;
    }

    public DiffusionImage(int width, int height, byte[] rgb, GenerationParameters? parameters = null)
    {
        if (width <= 0 || height <= 0 || rgb.Length != (long)width * height * 3)
            throw new ArgumentException($"Expected {width}x{height}x3 bytes of RGB, got {rgb.Length}.", nameof(rgb));
        Width = width; Height = height; _rgb = rgb; Parameters = parameters;
    }

    /// <summary>An image from a tensor [3, H, W] in [0, 1] (see <see cref="ImageEncoder.ToRgb24"/>).</summary>
    public static DiffusionImage FromTensor(Tensor image, GenerationParameters? parameters = null)
    {
        var rgb = ImageEncoder.ToRgb24(image); // validates the shape
        return new DiffusionImage((int)image.shape[2], (int)image.shape[1], rgb, parameters);
    }

    /// <summary>One image per batch entry of a tensor [B, 3, H, W] in [0, 1]; <paramref name="parameters"/>[i] goes with image i.</summary>
    public static IReadOnlyList<DiffusionImage> FromBatch(Tensor images, IReadOnlyList<GenerationParameters?>? parameters = null)
    {
        if (images.dim() != 4)
            throw new DiffusionException("ImageTensorInvalid", DiffusionErrorKind.InvalidArgument,
                $"An image batch must have shape [B, 3, H, W]; got [{string.Join(", ", images.shape)}].");
        if (parameters is not null && parameters.Count != images.shape[0])
            throw new ArgumentException($"{parameters.Count} parameter sets for {images.shape[0]} images.", nameof(parameters));
        var result = new List<DiffusionImage>();
        for (int i = 0; i < images.shape[0]; i++)
        {
            using var image = images[i];
            result.Add(FromTensor(image, parameters?[i]));
        }
        return result;
    }

    /// <summary>
    /// The PNG bytes. With parameters, the text chunks are "parameters" (A1111 style, read by most image tools) then one
    /// chunk per field (prompt, negative_prompt, steps, scheduler, guidance_scale, [guidance_rescale,] seed, width, height, model).
    /// </summary>
    public byte[] EncodePng()
    {
        var text = new List<KeyValuePair<string, string>>();
        if (Parameters is not null)
        {
            text.Add(new("parameters", Parameters.ToA1111String()));
            text.AddRange(Parameters.ToFields());
        }
        return ImageEncoder.EncodePng(Width, Height, _rgb, text);
    }

    /// <summary>The file bytes in <paramref name="format"/> (see <see cref="ImageFileFormats"/>), with the parameters.</summary>
    public byte[] Encode(string format, int quality = ImageFileFormats.DefaultQuality) =>
        format == ImageFileFormats.Png ? EncodePng()
        : ImageFileFormats.Encode(format, Width, Height, _rgb, Parameters?.ToA1111String(), [], quality);

    /// <summary>Writes the PNG atomically (temp file + rename); see <see cref="Save"/>.</summary>
    public void SavePng(string path, bool overwrite) => Save(path, overwrite);

    /// <summary>
    /// Writes the image atomically (temp file + rename) in the format its extension names (.png, .jpg/.jpeg, .webp; PNG
    /// for any other); refuses to replace an existing file unless <paramref name="overwrite"/>, also when another writer
    /// creates it meanwhile. <paramref name="quality"/> (1-100) applies to JPEG and WebP. Sets <see cref="Path"/>.
    /// </summary>
    public void Save(string path, bool overwrite, int quality = ImageFileFormats.DefaultQuality)
    {
        path = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(path))
            throw new DiffusionException("ImagePathIsFolder", DiffusionErrorKind.InvalidArgument,
                $"Cannot save the image as '{path}': that is a folder. Give a file name, or a template such as '{System.IO.Path.Combine(path, OutputPathTemplate.DefaultFileName)}'.", path);
        if (!overwrite && File.Exists(path)) throw FileExists(path);
        var bytes = Encode(ImageFileFormats.FromPath(path) ?? ImageFileFormats.Png, quality);
        try
        {
            AtomicFile.Write(path, overwrite, stream => stream.Write(bytes));
            Path = path;
        }
        catch (TargetExistsException)
        {
            throw FileExists(path); // created by someone else since the check above: the no-replace publish refused it
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DiffusionException("ImageWriteFailed", DiffusionErrorKind.ResourceUnavailable,
                $"Could not write the image '{path}': {e.Message} Check that the folder is writable and the disk has space.", path, e);
        }
    }

    private static DiffusionException FileExists(string path) =>
        new("ImageFileExists", DiffusionErrorKind.InvalidOperation,
            $"The file '{path}' already exists. Use -Force to overwrite it, or choose another -Path.", path);

    /// <summary>
    /// The generation parameters stored in a PNG, JPEG or WebP: from the per-field PNG chunks this class writes, else
    /// parsed from the A1111-style "parameters" (PNG chunk, or EXIF UserComment); null when the file has neither.
    /// </summary>
    public static GenerationParameters? ReadParameters(string pngPath)
    {
        pngPath = System.IO.Path.GetFullPath(pngPath);
        if (!File.Exists(pngPath))
            throw new DiffusionException("ImageFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The image '{pngPath}' does not exist.", pngPath);
        var text = ImageFileFormats.ReadText(pngPath);
        return GenerationParameters.FromFields(text)
            ?? (text.TryGetValue("parameters", out var a1111) ? GenerationParameters.ParseA1111(a1111) : null);
    }
}
