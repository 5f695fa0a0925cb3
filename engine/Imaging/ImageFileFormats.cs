using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Webp;
using SixLabors.ImageSharp.PixelFormats;

namespace Diffusion.Engine.Imaging;

/// <summary>
/// The file formats an image is saved in, chosen by the file's extension: PNG (parameters in text chunks), JPEG and
/// WebP (parameters in the EXIF UserComment, where AUTOMATIC1111 writes and reads them).
/// </summary>
public static class ImageFileFormats
{
    public const string Png = "PNG", Jpeg = "JPEG", Webp = "WebP";

    /// <summary>JPEG and WebP quality when none is given (1-100).</summary>
    public const int DefaultQuality = 90;

    /// <summary>The format a path's extension names (.png, .jpg, .jpeg, .webp, any case); null for any other.</summary>
    public static string? FromPath(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".png" => Png,
        ".jpg" or ".jpeg" => Jpeg,
        ".webp" => Webp,
        _ => null,
    };

    /// <summary>
    /// The file bytes of interleaved RGB pixels in <paramref name="format"/>. <paramref name="parameters"/> (A1111's
    /// "parameters" text) goes into the EXIF UserComment of JPEG and WebP; PNG takes <paramref name="pngText"/> as text chunks.
    /// </summary>
    public static byte[] Encode(string format, int width, int height, byte[] rgb, string? parameters,
        IEnumerable<KeyValuePair<string, string>> pngText, int quality = DefaultQuality)
    {
        if (quality is < 1 or > 100)
            throw new DiffusionException("ImageQualityInvalid", DiffusionErrorKind.InvalidArgument,
                $"-Quality {quality} is outside 1..100 (100 is the best JPEG/WebP quality).", "Quality");
        if (format == Png) return ImageEncoder.EncodePng(width, height, rgb, pngText);
        if (width <= 0 || height <= 0 || rgb.Length != (long)width * height * 3)
            throw new ArgumentException($"Expected {width}x{height}x3 bytes of RGB, got {rgb.Length}.", nameof(rgb));
        using var image = Image.LoadPixelData<Rgb24>(rgb, width, height);
        using var stream = new MemoryStream();
        if (format == Jpeg)
        {
            image.Save(stream, new JpegEncoder { Quality = quality, ColorType = JpegColorType.YCbCrRatio420 });
            return parameters is null ? stream.ToArray() : ExifUserComment.InsertIntoJpeg(stream.ToArray(), parameters);
        }
        if (format == Webp)
        {
            image.Save(stream, new WebpEncoder { FileFormat = WebpFileFormatType.Lossy, Quality = quality });
            return parameters is null ? stream.ToArray() : ExifUserComment.InsertIntoWebp(stream.ToArray(), width, height, parameters);
        }
        throw new ArgumentException($"Unknown image format '{format}'.", nameof(format));
    }

    /// <summary>
    /// The generation text a file carries: PNG text chunks (all of them), or for JPEG and WebP the EXIF UserComment
    /// under the key "parameters". Empty when there is none.
    /// </summary>
    public static IReadOnlyDictionary<string, string> ReadText(string path)
    {
        var head = new byte[12];
        using (var f = File.OpenRead(path)) _ = f.Read(head, 0, head.Length);
        bool jpeg = head[0] == 0xFF && head[1] == 0xD8;
        bool webp = head.AsSpan(0, 4).SequenceEqual("RIFF"u8) && head.AsSpan(8, 4).SequenceEqual("WEBP"u8);
        if (!jpeg && !webp) return ImageEncoder.ReadPngText(path);
        var bytes = File.ReadAllBytes(path);
        var comment = jpeg ? ExifUserComment.ReadFromJpeg(bytes) : ExifUserComment.ReadFromWebp(bytes);
        var text = new Dictionary<string, string>(StringComparer.Ordinal);
        if (comment is not null) text["parameters"] = comment;
        return text;
    }
}
