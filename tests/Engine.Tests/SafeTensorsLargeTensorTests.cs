using System.Text;
using Diffusion.Engine.IO;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>Tensors over 2 GiB are read in chunks, whatever their shape (Tensor.bytes is an int-length Span).</summary>
public class SafeTensorsLargeTensorTests
{
    [Fact]
    public void TensorOver2GiB_WithLeadingDimensionOne_IsReadCompletely()
    {
        const long N = 2_200_000_000; // U8 [1, N]: 2.2 GB, one "row"
        using var dir = new TempDirectory();
        var path = dir.File("big.safetensors");
        var json = $"{{\"big\":{{\"dtype\":\"U8\",\"shape\":[1,{N}],\"data_offsets\":[0,{N}]}}}}";
        var header = Encoding.UTF8.GetBytes(json.PadRight((json.Length + 7) / 8 * 8));
        long dataStart = 8 + header.Length;
        var marks = new Dictionary<long, byte> { [0] = 7, [(1L << 30) - 1] = 11, [1L << 30] = 13, [int.MaxValue] = 17, [N - 2] = 19, [N - 1] = 23 };
        using (var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            fs.Write(BitConverter.GetBytes((ulong)header.Length));
            fs.Write(header);
            fs.SetLength(dataStart + N); // sparse: the zeros cost no disk
            foreach (var (at, value) in marks) { fs.Position = dataStart + at; fs.WriteByte(value); }
        }
        using var file = SafeTensorsFile.Open(path);
        using var t = file.Load("big");
        Assert.Equal(new long[] { 1, N }, t.shape);
        foreach (var (at, value) in marks) Assert.Equal(value, t[0, at].item<byte>());
        Assert.Equal(0, t[0, N / 2].item<byte>());
        using var sum = t.sum(TorchSharp.torch.ScalarType.Int64);
        Assert.Equal(marks.Values.Sum(v => (long)v), sum.item<long>());
    }
}
