using Diffusion.Engine.Pipelines;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// What img2img makes of the init images users have: grayscale and RGBA files become RGB as PIL's convert("RGB") makes
/// them (gray spread to three channels, alpha dropped), other sizes are rounded down or resized, and the pixels are
/// x / 255 * 2 - 1 as diffusers' VaeImageProcessor normalizes them.
/// </summary>
public sealed class ImageToImageInputTests
{
    private static float[] Values(torch.Tensor t) => t.contiguous().data<float>().ToArray();

    [Fact]
    public void GrayscalePngBecomesThreeEqualChannels()
    {
        TorchBackend.EnsureLoaded();
        using var dir = new TempDirectory();
        var path = dir.File("gray.png");
        using (var gray = new Image<L8>(16, 8))
        {
            for (int y = 0; y < 8; y++) for (int x = 0; x < 16; x++) gray[x, y] = new L8((byte)(x * 16 + y));
            gray.SaveAsPng(path);
        }
        using var image = ImageToImage.Read(path);
        var (pixels, h, w) = ImageToImage.Prepare(image, null, null, 8);
        using (pixels)
        {
            Assert.Equal([1L, 3, 8, 16], pixels.shape);
            var r = Values(pixels[0, 0]); var g = Values(pixels[0, 1]); var b = Values(pixels[0, 2]);
            Assert.Equal(r, g);
            Assert.Equal(r, b);
            Assert.Equal((3 * 16 + 5) / 255f * 2 - 1, r[5 * 16 + 3], 6); // pixel (x=3, y=5): value x*16+y
        }
    }

    [Fact]
    public void RgbaPngDropsItsAlpha()
    {
        TorchBackend.EnsureLoaded();
        using var dir = new TempDirectory();
        var rgbaPath = dir.File("rgba.png");
        var rgbPath = dir.File("rgb.png");
        using (var rgba = new Image<Rgba32>(8, 8))
        using (var rgb = new Image<Rgb24>(8, 8))
        {
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++)
                {
                    rgba[x, y] = new Rgba32((byte)(x * 30), (byte)(y * 30), 200, (byte)(x * y * 4)); // alpha varies, colour does not depend on it
                    rgb[x, y] = new Rgb24((byte)(x * 30), (byte)(y * 30), 200);
                }
            rgba.SaveAsPng(rgbaPath);
            rgb.SaveAsPng(rgbPath);
        }
        using var a = ImageToImage.Read(rgbaPath);
        using var b = ImageToImage.Read(rgbPath);
        var (fromRgba, _, _) = ImageToImage.Prepare(a, null, null, 8);
        var (fromRgb, _, _) = ImageToImage.Prepare(b, null, null, 8);
        using (fromRgba) using (fromRgb) Assert.Equal(Values(fromRgb), Values(fromRgba));
    }

    [Fact]
    public void OtherSizesAreRoundedDownOrResizedAndTooSmallIsRefused()
    {
        TorchBackend.EnsureLoaded();
        using var odd = new Image<Rgb24>(37, 21);
        var (rounded, h, w) = ImageToImage.Prepare(odd.Clone(), null, null, 8);
        using (rounded) Assert.Equal((16, 32), (h, w)); // diffusers' get_default_height_width: down to a multiple of 8
        var (resized, h2, w2) = ImageToImage.Prepare(odd.Clone(), 64, 48, 16);
        using (resized) Assert.Equal((64, 48), (h2, w2));
        Assert.Equal("InitImageTooSmall", Assert.Throws<DiffusionException>(() => ImageToImage.Prepare(new Image<Rgb24>(12, 40), null, null, 16)).ErrorId);
        Assert.Equal("InvalidImageSize", Assert.Throws<DiffusionException>(() => ImageToImage.Prepare(odd.Clone(), 60, 48, 16)).ErrorId);
    }
}
