using System.Buffers.Binary;
using System.Text;
using Diffusion.Engine.Imaging;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace Diffusion.Engine.Tests;

public class ImageEncoderTests
{
    /// <summary>numpy_to_pil's arithmetic done independently in C#: float32 clamp, float32 x*255, round half to even.</summary>
    private static byte Expected(float x)
    {
        if (float.IsNaN(x)) return 0;
        float scaled = Math.Clamp(x, 0f, 1f) * 255f;
        return (byte)Math.Round(scaled, MidpointRounding.ToEven);
    }

    private static byte[] DecodeRgb(byte[] png, out int width, out int height)
    {
        using var image = Image.Load<Rgb24>(png);
        (width, height) = (image.Width, image.Height);
        var rgb = new byte[width * height * 3];
        image.CopyPixelDataTo(rgb);
        return rgb;
    }

    /// <summary>Compares decoded pixels with Expected() of each value of a [3,H,W] tensor; returns the largest difference.</summary>
    private static int MaxPixelError(Tensor chw, byte[] rgb)
    {
        var values = chw.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        int h = (int)chw.shape[1], w = (int)chw.shape[2], worst = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    worst = Math.Max(worst, Math.Abs(Expected(values[(c * h + y) * w + x]) - rgb[(y * w + x) * 3 + c]));
        return worst;
    }

    /// <summary>(type, data) of every chunk in a PNG stream.</summary>
    private static List<(string Type, byte[] Data)> Chunks(byte[] png)
    {
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, png[..8]);
        var chunks = new List<(string, byte[])>();
        for (int at = 8; at < png.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            chunks.Add((Encoding.ASCII.GetString(png, at + 4, 4), png[(at + 8)..(at + 8 + length)]));
            at += 12 + length;
        }
        return chunks;
    }

    /// <summary>keyword -> text of the tEXt chunks (Latin-1).</summary>
    private static Dictionary<string, string> TextChunks(byte[] png) => Chunks(png)
        .Where(c => c.Type == "tEXt")
        .Select(c => Encoding.Latin1.GetString(c.Data).Split('\0', 2))
        .ToDictionary(kv => kv[0], kv => kv[1]);

    private static GenerationParameters SampleParameters() => new()
    {
        Prompt = "a photo of a dog, cat-like look",
        NegativePrompt = "blurry",
        Steps = 4,
        Scheduler = "PNDMScheduler",
        GuidanceScale = 7.5,
        Seed = 42,
        Width = 128,
        Height = 96,
        Model = "sd-tiny",
    };

    [Fact]
    public void ConvertsLikeNumpyToPilIncludingHalvesClampAndNaN()
    {
        // k/510 for k = 0..510 hits x*255 = n + 0.5 for many n; plus values outside [0, 1] and NaN.
        var values = Enumerable.Range(0, 511).Select(k => (float)(k / 510.0))
            .Concat([-0.3f, 1.7f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0.4999f / 255f]).ToList();
        int width = values.Count;
        var data = new float[3 * width];
        for (int i = 0; i < width; i++) { data[i] = values[i]; data[width + i] = 1 - values[i]; data[2 * width + i] = values[width - 1 - i]; }
        using var image = torch.tensor(data, new long[] { 3, 1, width });

        var rgb = DecodeRgb(new DiffusionImage(width, 1, ImageEncoder.ToRgb24(image)).EncodePng(), out var w, out var h);
        Assert.Equal((width, 1), (w, h));
        Assert.Equal(0, MaxPixelError(image, rgb));
        // The grid must contain exact halves that round to even (where rounding half away from zero would differ).
        Assert.Contains(values, v => v * 255f is var s && s % 1 == 0.5f && Math.Round(s, MidpointRounding.ToEven) != Math.Round(s, MidpointRounding.AwayFromZero));
        Assert.Equal(new byte[] { 0, 255, 0, 255, 0 }, Enumerable.Range(511, 5).Select(i => rgb[i * 3]).ToArray());
    }

    [Fact]
    public void FixtureImagesRoundTripThroughPng()
    {
        var reference = Fixtures.Tensors("sd-tiny-ref-pndm.safetensors")["image"]; // [2, 3, 128, 128] in [0, 1]
        var images = DiffusionImage.FromBatch(reference);
        Assert.Equal(2, images.Count);
        for (int i = 0; i < images.Count; i++)
        {
            var rgb = DecodeRgb(images[i].EncodePng(), out var w, out var h);
            Assert.Equal((128, 128), (w, h));
            using var chw = reference[i];
            Assert.Equal(0, MaxPixelError(chw, rgb));
        }
    }

    [Fact]
    public void RejectsTensorsThatAreNotImages()
    {
        Assert.Equal("ImageTensorInvalid", Assert.Throws<DiffusionException>(() => DiffusionImage.FromTensor(torch.zeros(4, 8, 8))).ErrorId);
        Assert.Equal("ImageTensorInvalid", Assert.Throws<DiffusionException>(() => DiffusionImage.FromTensor(torch.zeros(3, 8))).ErrorId);
        Assert.Equal("ImageTensorInvalid", Assert.Throws<DiffusionException>(() => DiffusionImage.FromTensor(torch.zeros(new long[] { 3, 8, 8 }, ScalarType.Byte))).ErrorId);
        Assert.Equal("ImageTensorInvalid", Assert.Throws<DiffusionException>(() => DiffusionImage.FromBatch(torch.zeros(3, 8, 8))).ErrorId);
    }

    [Fact]
    public void WritesA1111ParametersAndOneTextChunkPerField()
    {
        var p = SampleParameters();
        using var t = torch.rand(3, 96, 128);
        var png = DiffusionImage.FromTensor(t, p).EncodePng();

        Assert.DoesNotContain(Chunks(png), c => c.Type is "zTXt" or "iTXt");
        var text = TextChunks(png);
        Assert.Equal(
            "a photo of a dog, cat-like look\nNegative prompt: blurry\n" +
            "Steps: 4, Sampler: PNDMScheduler, CFG scale: 7.5, Seed: 42, Size: 128x96, Model: sd-tiny",
            text["parameters"]);
        Assert.Equal("a photo of a dog, cat-like look", text["prompt"]);
        Assert.Equal("blurry", text["negative_prompt"]);
        Assert.Equal("4", text["steps"]);
        Assert.Equal("PNDMScheduler", text["scheduler"]);
        Assert.Equal("7.5", text["guidance_scale"]);
        Assert.Equal("42", text["seed"]);
        Assert.Equal("128", text["width"]);
        Assert.Equal("96", text["height"]);
        Assert.Equal("sd-tiny", text["model"]);
        Assert.Equal(10, text.Count);

        p.Prompt = string.Concat(Enumerable.Repeat("very long prompt, ", 200)); // past ImageSharp's default compression threshold
        var longPng = DiffusionImage.FromTensor(t, p).EncodePng();
        Assert.DoesNotContain(Chunks(longPng), c => c.Type is "zTXt" or "iTXt");
        Assert.Equal(p.Prompt, TextChunks(longPng)["prompt"]);
    }

    [Fact]
    public void A1111TextQuotesAndOmitsAsA1111Does()
    {
        var p = SampleParameters();
        p.NegativePrompt = null;
        p.Scheduler = "DPM++ 2M, Karras";
        p.GuidanceScale = 7;
        Assert.Equal(
            "a photo of a dog, cat-like look\nSteps: 4, Sampler: \"DPM++ 2M, Karras\", CFG scale: 7.0, Seed: 42, Size: 128x96, Model: sd-tiny",
            p.ToA1111String());
    }

    [Fact]
    public void GuidanceRescaleIsWrittenOnlyWhenUsedAndReadBack()
    {
        using var dir = new TempDirectory();
        using var t = torch.rand(3, 8, 8);
        var p = SampleParameters();
        Assert.DoesNotContain("guidance_rescale", TextChunks(DiffusionImage.FromTensor(t, p).EncodePng()).Keys);

        p.GuidanceRescale = 0.7;
        var text = TextChunks(DiffusionImage.FromTensor(t, p).EncodePng());
        Assert.Equal("0.7", text["guidance_rescale"]);
        Assert.Contains("CFG scale: 7.5, Guidance rescale: 0.7, Seed: 42", text["parameters"]);
        var path = dir.File("rescale.png");
        DiffusionImage.FromTensor(t, p).SavePng(path, overwrite: false);
        Assert.Equal(0.7, DiffusionImage.ReadParameters(path)!.GuidanceRescale);
        Assert.Equal(0.7, GenerationParameters.ParseA1111(text["parameters"])!.GuidanceRescale);
    }

    [Fact]
    public void SavesAtomicallyAndReadsParametersBack()
    {
        using var dir = new TempDirectory();
        var path = dir.File("out", "image.png"); // the folder is created
        var p = SampleParameters();
        p.Prompt = "un chat sur un toit \u732B\n(second line)"; // not Latin-1: goes to iTXt
        p.Seed = long.MaxValue;
        using var t = torch.rand(3, 8, 8);
        DiffusionImage.FromTensor(t, p).SavePng(path, overwrite: false);

        var back = DiffusionImage.ReadParameters(path);
        Assert.NotNull(back);
        Assert.Equal(p.Prompt, back.Prompt);
        Assert.Equal(p.NegativePrompt, back.NegativePrompt);
        Assert.Equal(p.Steps, back.Steps);
        Assert.Equal(p.Scheduler, back.Scheduler);
        Assert.Equal(p.GuidanceScale, back.GuidanceScale);
        Assert.Equal(p.Seed, back.Seed);
        Assert.Equal((p.Width, p.Height), (back.Width, back.Height));
        Assert.Equal(p.Model, back.Model);
        Assert.Contains(Chunks(File.ReadAllBytes(path)), c => c.Type == "iTXt");
        Assert.Equal(new[] { "image.png" }, Directory.GetFileSystemEntries(dir.File("out")).Select(Path.GetFileName));
    }

    [Fact]
    public void RefusesToOverwriteWithoutForce()
    {
        using var dir = new TempDirectory();
        var path = dir.File("taken.png");
        File.WriteAllText(path, "old");
        using var t = torch.rand(3, 4, 4);
        var image = DiffusionImage.FromTensor(t, SampleParameters());

        var e = Assert.Throws<DiffusionException>(() => image.SavePng(path, overwrite: false));
        Assert.Equal("ImageFileExists", e.ErrorId);
        Assert.Contains("-Force", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Equal("old", File.ReadAllText(path));

        image.SavePng(path, overwrite: true);
        Assert.Equal(image.EncodePng(), File.ReadAllBytes(path));
        Assert.Equal(new[] { "taken.png" }, dir.Entries());
    }

    [Fact]
    public void RefusesAFolderAsTheFile()
    {
        using var dir = new TempDirectory();
        using var t = torch.rand(3, 4, 4);
        var e = Assert.Throws<DiffusionException>(() => DiffusionImage.FromTensor(t).SavePng(dir.Path, overwrite: true));
        Assert.Equal("ImagePathIsFolder", e.ErrorId);
    }

    [Fact]
    public void ReadsA1111OnlyPngsAndReturnsNullWithoutParameters()
    {
        using var dir = new TempDirectory();
        var a1111 = dir.File("a1111.png");
        File.WriteAllBytes(a1111, ImageEncoder.EncodePng(1, 1, [1, 2, 3], [new("parameters",
            "masterpiece, 1girl\nsecond line\nNegative prompt: lowres, bad hands\n" +
            "Steps: 20, Sampler: \"DPM++ 2M, Karras\", CFG scale: 7.0, Seed: 1234, Size: 512x768, Model hash: abc, Model: v1-5")]));
        var p = DiffusionImage.ReadParameters(a1111);
        Assert.NotNull(p);
        Assert.Equal("masterpiece, 1girl\nsecond line", p.Prompt);
        Assert.Equal("lowres, bad hands", p.NegativePrompt);
        Assert.Equal(20, p.Steps);
        Assert.Equal("DPM++ 2M, Karras", p.Scheduler);
        Assert.Equal(7.0, p.GuidanceScale);
        Assert.Equal(1234, p.Seed);
        Assert.Equal((512, 768), (p.Width, p.Height));
        Assert.Equal("v1-5", p.Model);

        var plain = dir.File("plain.png");
        File.WriteAllBytes(plain, new DiffusionImage(1, 1, [9, 9, 9]).EncodePng());
        Assert.Null(DiffusionImage.ReadParameters(plain));

        Assert.Equal("ImageFileNotFound", Assert.Throws<DiffusionException>(() => DiffusionImage.ReadParameters(dir.File("none.png"))).ErrorId);
    }

    [Fact]
    public void LoadsPngIntoMinusOneToOne()
    {
        using var dir = new TempDirectory();
        var path = dir.File("in.png");
        int w = 7, h = 5;
        var rgb = Enumerable.Range(0, w * h * 3).Select(i => (byte)(i * 37 % 256)).ToArray();
        rgb[0] = 0; rgb[1] = 255; rgb[2] = 128;
        File.WriteAllBytes(path, new DiffusionImage(w, h, rgb).EncodePng());

        using var t = ImageLoader.Load(path);
        Assert.Equal(new long[] { 1, 3, h, w }, t.shape);
        Assert.Equal(ScalarType.Float32, t.dtype);
        var expected = new float[3 * h * w];
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < h * w; i++)
                expected[c * h * w + i] = 2f * (rgb[i * 3 + c] / 255f) - 1f; // pil_to_numpy then normalize, in float32
        using var e = torch.tensor(expected, new long[] { 1, 3, h, w });
        Fixtures.AssertClose(e, t, 0, 0, "loaded image");
        Assert.Equal(-1f, t[0, 0, 0, 0].item<float>());
        Assert.Equal(1f, t[0, 1, 0, 0].item<float>());
    }

    [Fact]
    public void LoadsJpegDropsAlphaAndAppliesExifOrientation()
    {
        using var dir = new TempDirectory();
        // 4x2 RGBA PNG: alpha is dropped, colors kept.
        var rgbaPath = dir.File("rgba.png");
        using (var rgba = new Image<Rgba32>(4, 2, new Rgba32(255, 0, 0, 10))) rgba.SaveAsPng(rgbaPath);
        using var fromRgba = ImageLoader.Load(rgbaPath);
        Assert.Equal(new long[] { 1, 3, 2, 4 }, fromRgba.shape);
        Assert.Equal(new[] { 1f, -1f, -1f }, new[] { 0, 1, 2 }.Select(c => fromRgba[0, c, 0, 0].item<float>()));

        // 4x2 JPEG tagged "rotate 90 clockwise": loads as 2 wide, 4 high.
        var jpegPath = dir.File("rotated.jpg");
        using (var jpeg = new Image<Rgb24>(4, 2, new Rgb24(200, 200, 200)))
        {
            jpeg.Metadata.ExifProfile = new ExifProfile();
            jpeg.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);
            jpeg.Save(jpegPath, new JpegEncoder { Quality = 100 });
        }
        using var fromJpeg = ImageLoader.Load(jpegPath);
        Assert.Equal(new long[] { 1, 3, 4, 2 }, fromJpeg.shape);
        Assert.InRange(fromJpeg.mean().item<float>(), 2 * 195 / 255f - 1, 2 * 205 / 255f - 1);
    }

    [Fact]
    public void LoadingNonImagesFailsClearly()
    {
        using var dir = new TempDirectory();
        var text = dir.File("notes.png");
        File.WriteAllText(text, "not an image at all");
        var e = Assert.Throws<DiffusionException>(() => ImageLoader.Load(text));
        Assert.Equal("ImageFormatUnsupported", e.ErrorId);
        Assert.Contains(text, e.Message);

        var truncated = dir.File("truncated.png");
        File.WriteAllBytes(truncated, new DiffusionImage(16, 16, new byte[16 * 16 * 3]).EncodePng()[..60]);
        e = Assert.Throws<DiffusionException>(() => ImageLoader.Load(truncated));
        Assert.Equal("ImageFileCorrupt", e.ErrorId);

        Assert.Equal("ImageFileNotFound", Assert.Throws<DiffusionException>(() => ImageLoader.Load(dir.File("none.png"))).ErrorId);
    }
}
