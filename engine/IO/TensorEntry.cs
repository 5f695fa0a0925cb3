namespace Diffusion.Engine.IO;

/// <summary>One tensor of a checkpoint as its header describes it, under the module's key.</summary>
public sealed record TensorEntry(string Name, string DType, long[] Shape)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}
