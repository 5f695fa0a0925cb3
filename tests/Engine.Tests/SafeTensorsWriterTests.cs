using System.Text;
using System.Text.Json;
using Diffusion.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace Diffusion.Engine.Tests;

public class SafeTensorsWriterTests
{
    private static Dictionary<string, Tensor> MixedTensors()
    {
        var g = torch.manual_seed(1234);
        return new Dictionary<string, Tensor>
        {
            ["b.weight"] = torch.randn(new long[] { 3, 4 }, generator: g),
            ["a.half"] = torch.randn(new long[] { 5 }, generator: g).to(ScalarType.Float16), // odd byte count before wider types
            ["c.bf16"] = torch.randn(new long[] { 2, 3 }, generator: g).to(ScalarType.BFloat16),
            ["d.ids"] = torch.arange(7L),
            ["e.bytes"] = torch.tensor(new byte[] { 0, 1, 255 }),
            ["f.mask"] = torch.tensor(new[] { true, false, true }),
            ["g.scalar"] = torch.tensor(42),
            ["h.empty"] = torch.zeros(new long[] { 0, 4 }),
            ["i.f64"] = torch.randn(new long[] { 2 }, ScalarType.Float64, generator: g),
            ["j.transposed"] = torch.randn(new long[] { 3, 2 }, generator: g).t(), // not contiguous
            ["k.i16"] = torch.tensor(new short[] { -3, 7 }),
            ["l.i8"] = torch.tensor(new sbyte[] { -128, 5, 127 }),
        };
    }

    [Fact]
    public void RoundTripsEveryDTypeShapeAndMetadata()
    {
        using var dir = new TempDirectory();
        var path = dir.File("model.safetensors");
        var tensors = MixedTensors();
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\"" };
        SafeTensorsWriter.Save(path, tensors, metadata);

        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(tensors.Keys.Order(StringComparer.Ordinal), f.Tensors.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(metadata, f.Metadata);
        foreach (var (name, expected) in tensors)
        {
            using var actual = f.Load(name);
            Assert.Equal(expected.dtype, actual.dtype);
            Assert.Equal(expected.shape, actual.shape);
            Assert.True(expected.eq(actual).all().item<bool>(), $"{name} differs after the round trip");
        }
        Assert.Equal(new[] { "model.safetensors" }, dir.Entries()); // no temp file left
    }

    [Fact]
    public void WritesTheReferenceLayout()
    {
        using var dir = new TempDirectory();
        var path = dir.File("layout.safetensors");
        SafeTensorsWriter.Save(path, MixedTensors(), new Dictionary<string, string> { ["format"] = "pt" });

        var bytes = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        Assert.Equal(0, headerLength % 8);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.EndsWith("}", header.TrimEnd(' '));
        Assert.True(header.Length - header.TrimEnd(' ').Length < 8, "padding is less than 8 spaces");

        using var doc = JsonDocument.Parse(header);
        var keys = doc.RootElement.EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal("__metadata__", keys[0]);
        Assert.Equal(keys.Skip(1).Order(StringComparer.Ordinal), keys.Skip(1)); // tensors sorted by name

        long dataLength = bytes.Length - 8 - headerLength;
        long covered = 0;
        foreach (var entry in doc.RootElement.EnumerateObject().Skip(1))
        {
            var offsets = entry.Value.GetProperty("data_offsets");
            long begin = offsets[0].GetInt64(), end = offsets[1].GetInt64();
            int elementSize = DTypes.ElementSize(entry.Value.GetProperty("dtype").GetString()!);
            Assert.True(begin % elementSize == 0, $"{entry.Name} starts at {begin}, not aligned to its {elementSize}-byte elements");
            covered += end - begin;
        }
        Assert.Equal(dataLength, covered);
    }

    [Fact]
    public void EmptyDictionaryGivesAValidFile()
    {
        using var dir = new TempDirectory();
        var path = dir.File("empty.safetensors");
        SafeTensorsWriter.Save(path, new Dictionary<string, Tensor>());
        using var f = SafeTensorsFile.Open(path);
        Assert.Empty(f.Tensors);
        Assert.Equal(16, new FileInfo(path).Length); // 8-byte length + "{}" padded to 8
    }

    [Fact]
    public void ReplacesAnExistingFile()
    {
        using var dir = new TempDirectory();
        var path = dir.File("w.safetensors");
        SafeTensorsWriter.Save(path, new Dictionary<string, Tensor> { ["x"] = torch.ones(3) });
        SafeTensorsWriter.Save(path, new Dictionary<string, Tensor> { ["y"] = torch.zeros(2) });
        using var f = SafeTensorsFile.Open(path);
        Assert.Equal(new[] { "y" }, f.Tensors.Keys);
        Assert.Equal(new[] { "w.safetensors" }, dir.Entries());
    }

    [Fact]
    public void FailedWriteLeavesNothingBehind()
    {
        using var dir = new TempDirectory();
        var target = dir.File("taken");
        Directory.CreateDirectory(target); // the rename onto a folder fails after the data was written
        var e = Assert.Throws<DiffusionException>(() =>
            SafeTensorsWriter.Save(target, new Dictionary<string, Tensor> { ["x"] = torch.ones(1000) }));
        Assert.Equal("SafeTensorsWriteFailed", e.ErrorId);
        Assert.Contains(target, e.Message);
        Assert.Equal(new[] { "taken" }, dir.Entries());
    }

    [Fact]
    public void UnsupportedDTypeKeepsTheOldFile()
    {
        using var dir = new TempDirectory();
        var path = dir.File("keep.safetensors");
        SafeTensorsWriter.Save(path, new Dictionary<string, Tensor> { ["x"] = torch.ones(3) });
        var before = File.ReadAllBytes(path);
        var e = Assert.Throws<DiffusionException>(() =>
            SafeTensorsWriter.Save(path, new Dictionary<string, Tensor> { ["c"] = torch.zeros(2, ScalarType.ComplexFloat32) }));
        Assert.Equal("SafeTensorsUnsupportedDType", e.ErrorId);
        Assert.Contains("'c'", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { "keep.safetensors" }, dir.Entries());
    }

    [Fact]
    public void RefusesTheMetadataName()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<DiffusionException>(() =>
            SafeTensorsWriter.Save(dir.File("m.safetensors"), new Dictionary<string, Tensor> { ["__metadata__"] = torch.ones(1) }));
        Assert.Equal("SafeTensorsInvalidName", e.ErrorId);
        Assert.Empty(dir.Entries());
    }
}
