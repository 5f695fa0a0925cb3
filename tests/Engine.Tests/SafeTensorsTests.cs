using Diffusion.Engine.IO;
using Xunit;

namespace Diffusion.Engine.Tests;

public class SafeTensorsTests
{
    [Fact]
    public void ReadsReferenceTensors()
    {
        using var f = SafeTensorsFile.Open(Fixtures.PathOf("sd-tiny-ref-pndm.safetensors"));
        Assert.Equal("I64", f.Tensors["input_ids"].DType);
        Assert.Equal(new long[] { 2, 77 }, f.Tensors["input_ids"].Shape);
        using var ids = f.Load("input_ids");
        Assert.Equal(1512L, ids[0, 0].item<long>()); // <|startoftext|> in the tiny vocab
    }
}
