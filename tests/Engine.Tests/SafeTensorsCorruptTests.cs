using System.Text;
using Diffusion.Engine.IO;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>Every way a safetensors file can be broken must give SafeTensorsCorrupt naming the file, never a raw .NET exception.</summary>
public class SafeTensorsCorruptTests
{
    /// <summary>A file of an 8-byte length (the header's, unless given), the header text, then <paramref name="dataBytes"/> zero bytes.</summary>
    private static byte[] File(string header, int dataBytes = 0, ulong? declaredLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        return [.. BitConverter.GetBytes(declaredLength ?? (ulong)json.Length), .. json, .. new byte[dataBytes]];
    }

    private static DiffusionException OpenCorrupt(byte[] content, string because)
    {
        using var dir = new TempDirectory();
        var path = dir.File("broken.safetensors");
        System.IO.File.WriteAllBytes(path, content);
        var e = Assert.Throws<DiffusionException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Equal("SafeTensorsCorrupt", e.ErrorId);
        Assert.Equal(DiffusionErrorKind.InvalidData, e.Kind);
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.Target);
        Assert.Contains(because, e.Message);
        return e;
    }

    public static TheoryData<string, byte[], string> CorruptFiles() => new()
    {
        { "empty file", [], "0 bytes long" },
        { "shorter than 8 bytes", [1, 2, 3, 4, 5], "5 bytes long" },
        { "header length past EOF", File("{}", declaredLength: 1000), "says 1000 bytes but the file has only 10" },
        { "header length zero", File("", declaredLength: 0), "says 0 bytes" },
        { "header length huge", File("{}", declaredLength: ulong.MaxValue), $"says {ulong.MaxValue} bytes" },
        { "bad JSON", File("{\"a\": {\"dtype\": "), "not valid JSON" },
        { "not UTF-8", [.. BitConverter.GetBytes(2UL), 0xFF, 0xFE], "not valid JSON" },
        { "array header", File("[1, 2]"), "JSON array, not an object" },
        { "string header", File("\"weights\""), "JSON string, not an object" },
        { "entry not an object", File("{\"a\": 5}"), "'a' lacks dtype, shape or data_offsets" },
        { "entry missing data_offsets", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4), "'a' lacks dtype, shape or data_offsets" },
        { "entry missing dtype", File("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4), "'a' lacks dtype, shape or data_offsets" },
        { "entry missing shape", File("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4), "'a' lacks dtype, shape or data_offsets" },
        { "dtype not a string", File("{\"a\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4), "'a' lacks dtype, shape or data_offsets" },
        { "shape of strings", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}", 4), "'a' has an invalid shape" },
        { "negative shape", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4), "'a' has an invalid shape" },
        { "fractional shape", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4), "'a' has an invalid shape" },
        { "offsets of strings", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [\"0\", \"4\"]}}", 4), "'a' has invalid data_offsets" },
        { "one offset", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4]}}", 4), "'a' has invalid data_offsets" },
        { "end before begin", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}", 4), "'a' has invalid data_offsets" },
        { "offsets out of range", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [100], \"data_offsets\": [0, 400]}}", 4), "beyond the 4 data bytes" },
        { "offsets inconsistent with dtype*shape", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4), "needs 8 bytes but its data_offsets [0, 4] span 4" },
        { "F16 size mismatch", File("{\"a\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 16), "needs 8 bytes" },
        { "shape overflows", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}", 4), "too large to exist" },
        { "overlapping tensors", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8), "overlaps tensor 'a'" },
        { "gap between tensors", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}", 12), "data bytes 4-8 belong to no tensor" },
        { "bytes after the last tensor", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 12), "extra bytes after the last tensor" },
        { "duplicate tensor", File("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4), "lists tensor 'a' twice" },
        { "metadata not an object", File("{\"__metadata__\": [1]}"), "\"__metadata__\" header entry is not an object" },
        { "metadata value not a string", File("{\"__metadata__\": {\"format\": 1}}"), "value for 'format' is not a string" },
    };

    [Theory]
    [MemberData(nameof(CorruptFiles))]
    public void RaisesSafeTensorsCorrupt(string _, byte[] content, string because) => OpenCorrupt(content, because);

    [Fact]
    public void AcceptsZeroSizedTensorsAndNullMetadata()
    {
        using var dir = new TempDirectory();
        var path = dir.File("ok.safetensors");
        System.IO.File.WriteAllBytes(path, File(
            "{\"__metadata__\": null, \"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [4, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}   ", 4));
        using var f = SafeTensorsFile.Open(path);
        using var e = f.Load("e");
        Assert.Equal(new long[] { 0, 3 }, e.shape);
    }

    [Theory]
    [InlineData("C64", 8)]
    [InlineData("F8_E4M3", 1)]
    public void UnknownDTypeFailsOnLoad(string dtype, int bytes)
    {
        using var dir = new TempDirectory();
        var path = dir.File("exotic.safetensors");
        System.IO.File.WriteAllBytes(path, File($"{{\"z\": {{\"dtype\": \"{dtype}\", \"shape\": [1], \"data_offsets\": [0, {bytes}]}}}}", bytes));
        using var f = SafeTensorsFile.Open(path); // the header is fine
        var e = Assert.Throws<DiffusionException>(() => f.Load("z"));
        Assert.Equal("SafeTensorsUnsupportedDType", e.ErrorId);
        Assert.Contains(path, e.Message);
        Assert.Contains(dtype, e.Message);
    }

    [Fact]
    public void MissingFileIsNotFound()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<DiffusionException>(() => SafeTensorsFile.Open(dir.File("absent.safetensors")));
        Assert.Equal("SafeTensorsFileNotFound", e.ErrorId);
        Assert.Contains(dir.File("absent.safetensors"), e.Message);
    }

    /// <summary>The strict layout checks must accept every file that diffusers/safetensors wrote.</summary>
    [Fact]
    public void AllFixtureFilesPassTheChecks()
    {
        var files = Directory.GetFiles(Fixtures.PathOf(), "*.safetensors", SearchOption.AllDirectories);
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            using var f = SafeTensorsFile.Open(file);
            Assert.NotEmpty(f.Tensors);
        }
    }
}
