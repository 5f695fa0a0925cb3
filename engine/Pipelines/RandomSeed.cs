namespace Diffusion.Engine.Pipelines;

/// <summary>The seed a run takes when none is given: one draw, so every image of the run can report (and repeat) it.</summary>
public static class RandomSeed
{
    /// <summary>A seed in 0..2^32-1 (a size any other tool takes too).</summary>
    public static long Next() => Random.Shared.NextInt64(0, uint.MaxValue);
}
