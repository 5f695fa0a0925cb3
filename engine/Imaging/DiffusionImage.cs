using Diffusion.Engine.IO;
using static TorchSharp.torch;

namespace Diffusion.Engine.Imaging;

/// <summary>
/// A generated image: 8-bit RGB pixels and the parameters that made it, saved as PNG with text chunks. Images decoded
/// by the pipeline also keep the VAE's float output (<see cref="Pixels"/>, [3,H,W] in [0,1], diffusers' output_type="pt").
/// </summary>
public sealed class DiffusionImage
{
    public int Width { get; }
    public int Height { get; }
    /// <summary>Interleaved RGB, row-major, Width*Height*3 bytes.</summary>
    public byte[] Rgb { get; }
    public GenerationParameters? Parameters { get; }
    /// <summary>Position of the prompt this image came from (0-based), for file name templates and ordering.</summary>
    public int Index { get; init; }
    /// <summary>The float image [3,H,W] in [0,1] on the CPU, when the image came from the VAE; null for images read from 8-bit data.</summary>
    public Tensor? Pixels { get; private init; }

    /// <summary>An image decoded by the pipeline: keeps the float pixels [3,H,W] and their 8-bit RGB.</summary>
    public DiffusionImage(Tensor pixels, GenerationParameters parameters, int index)
        : this((int)pixels.shape[2], (int)pixels.shape[1], ImageEncoder.ToRgb24(pixels), parameters)
    {
        Pixels = pixels.DetachFromDisposeScope();
        Index = index;
    }

    public DiffusionImage(int width, int height, byte[] rgb, GenerationParameters? parameters = null)
    {
        if (width <= 0 || height <= 0 || rgb.Length != (long)width * height * 3)
            throw new ArgumentException($"Expected {width}x{height}x3 bytes of RGB, got {rgb.Length}.", nameof(rgb));
        Width = width; Height = height; Rgb = rgb; Parameters = parameters;
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
        return ImageEncoder.EncodePng(Width, Height, Rgb, text);
    }

    /// <summary>Writes the PNG atomically (temp file + rename); refuses to replace an existing file unless <paramref name="overwrite"/>, also when another writer creates it meanwhile.</summary>
    public void SavePng(string path, bool overwrite)
    {
        path = Path.GetFullPath(path);
        if (Directory.Exists(path))
            throw new DiffusionException("ImagePathIsFolder", DiffusionErrorKind.InvalidArgument,
                $"Cannot save the image as '{path}': that is a folder. Give a file name, or a template such as '{Path.Combine(path, OutputPathTemplate.DefaultFileName)}'.", path);
        if (!overwrite && File.Exists(path)) throw FileExists(path);
        var png = EncodePng();
        try
        {
            AtomicFile.Write(path, overwrite, stream => stream.Write(png));
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
    /// The generation parameters stored in a PNG: from the per-field chunks this class writes, else parsed from an
    /// A1111-style "parameters" chunk; null when the file has neither.
    /// </summary>
    public static GenerationParameters? ReadParameters(string pngPath)
    {
        pngPath = Path.GetFullPath(pngPath);
        if (!File.Exists(pngPath))
            throw new DiffusionException("ImageFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The image '{pngPath}' does not exist.", pngPath);
        var text = ImageEncoder.ReadPngText(pngPath);
        return GenerationParameters.FromFields(text)
            ?? (text.TryGetValue("parameters", out var a1111) ? GenerationParameters.ParseA1111(a1111) : null);
    }
}
