using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Imaging;

/// <summary>Reads an image file (PNG, JPEG, WebP, BMP, GIF, TIFF, ...) into the tensor a VAE encoder takes.</summary>
public static class ImageLoader
{
    /// <summary>
    /// The image as a float32 CPU tensor [1, 3, H, W] in [-1, 1], as diffusers' load_image + VaeImageProcessor do
    /// without resizing: EXIF orientation applied, converted to RGB (alpha dropped), <c>x / 255</c>, then <c>2 * x - 1</c>.
    /// </summary>
    public static Tensor Load(string path)
    {
        using var image = Read(path);
        return ToTensor(image);
    }

    /// <summary>
    /// An image file as 8-bit RGB, EXIF orientation applied: gray spread to three channels and alpha dropped, as PIL's
    /// convert("RGB"). <paramref name="what"/> names the image in the errors ("The init image ... does not exist").
    /// </summary>
    internal static Image<Rgb24> Read(string path, string what = "image")
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
            throw new DiffusionException("ImageFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The {what} '{path}' does not exist.", path);
        try
        {
            var image = Image.Load<Rgb24>(path);
            image.Mutate(c => c.AutoOrient());
            return image;
        }
        catch (UnknownImageFormatException)
        {
            throw new DiffusionException("ImageFormatUnsupported", DiffusionErrorKind.NotSupported,
                $"'{path}' is not an image format this module reads (PNG, JPEG, WebP, BMP, GIF, TIFF, TGA, PBM).", path);
        }
        catch (Exception e) when (e is ImageFormatException or NotSupportedException)
        {
            throw new DiffusionException("ImageFileCorrupt", DiffusionErrorKind.InvalidData,
                $"Could not decode the image '{path}' ({e.Message}). The file may be damaged; open and re-save it in an image editor.", path, e);
        }
    }

    /// <summary>8-bit RGB as diffusers' VaeImageProcessor normalizes it: [1, 3, H, W] float32 on the CPU, <c>2 * (x / 255) - 1</c>.</summary>
    internal static Tensor ToTensor(Image<Rgb24> image)
    {
        var rgb = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(rgb);
        using var scope = torch.NewDisposeScope();
        var pixels = torch.tensor(rgb, new long[] { image.Height, image.Width, 3 }, device: torch.CPU); // [H, W, 3] uint8
        var normalized = 2.0 * (pixels.to(ScalarType.Float32) / 255.0) - 1.0;
        return scope.MoveToOuter(normalized.permute(2, 0, 1).unsqueeze(0).contiguous()); // [1, 3, H, W]
    }
}
