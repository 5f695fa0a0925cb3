using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Imaging;

/// <summary>Image tensors to 8-bit RGB, and 8-bit RGB to PNG bytes with text chunks (and back).</summary>
public static class ImageEncoder
{
    /// <summary>
    /// An image tensor [3, H, W] with values in [0, 1] as interleaved 8-bit RGB (H*W*3 bytes, row-major), exactly
    /// as diffusers' VaeImageProcessor.numpy_to_pil: float32, clamp to [0, 1], <c>(x * 255).round()</c> (half to even),
    /// to uint8. NaN becomes 0.
    /// </summary>
    public static byte[] ToRgb24(Tensor image)
    {
        if (image.dim() != 3 || image.shape[0] != 3 || !torch.is_floating_point(image.dtype))
            throw new DiffusionException("ImageTensorInvalid", DiffusionErrorKind.InvalidArgument,
                $"An image tensor must be floating-point with shape [3, H, W]; got {image.dtype} [{string.Join(", ", image.shape)}].");
        using var scope = torch.NewDisposeScope();
        var x = image.detach().to(ScalarType.Float32, CPU).nan_to_num(0.0).clamp(0.0, 1.0);
        var rgb = (x * 255).round().to(ScalarType.Byte).permute(1, 2, 0).contiguous(); // [H, W, 3]
        return rgb.bytes.ToArray();
    }

    /// <summary>PNG (8-bit RGB) of interleaved RGB pixels, with one text chunk per entry of <paramref name="text"/> (in order).</summary>
    public static byte[] EncodePng(int width, int height, byte[] rgb, IEnumerable<KeyValuePair<string, string>> text)
    {
        if (width <= 0 || height <= 0 || rgb.Length != (long)width * height * 3)
            throw new ArgumentException($"Expected {width}x{height}x3 = {(long)width * height * 3} bytes of RGB, got {rgb.Length}.", nameof(rgb));
        using var image = Image.LoadPixelData<Rgb24>(rgb, width, height);
        var png = image.Metadata.GetPngMetadata();
        foreach (var (key, value) in text)
            png.TextData.Add(new PngTextData(key, value, "", ""));
        var encoder = new PngEncoder
        {
            ColorType = PngColorType.Rgb,
            BitDepth = PngBitDepth.Bit8,
            // Never zlib-compress text: tEXt for Latin-1 text, iTXt (UTF-8) otherwise, as PIL's PngInfo.add_text does.
            TextCompressionThreshold = int.MaxValue,
        };
        using var stream = new MemoryStream();
        image.Save(stream, encoder);
        return stream.ToArray();
    }

    /// <summary>The text chunks (tEXt, zTXt, iTXt) of a PNG file, first occurrence of each keyword; empty for other formats.</summary>
    public static IReadOnlyDictionary<string, string> ReadPngText(string path)
    {
        IImageInfo? info;
        try { info = Image.Identify(path); }
        catch (Exception e) when (e is ImageFormatException or NotSupportedException)
        {
            throw new DiffusionException("ImageFileCorrupt", DiffusionErrorKind.InvalidData,
                $"Could not read the image '{path}': {e.Message}", path, e);
        }
        var text = new Dictionary<string, string>(StringComparer.Ordinal);
        if (info is null) return text;
        foreach (var chunk in info.Metadata.GetPngMetadata().TextData)
            text.TryAdd(chunk.Keyword, chunk.Value);
        return text;
    }
}
