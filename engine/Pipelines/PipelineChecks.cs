using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>Argument checks shared by the families, with errors that name the parameter and the fix.</summary>
internal static class PipelineChecks
{
    public static void Size(int height, int width, int multiple)
    {
        foreach (var (name, v) in new[] { ("Height", height), ("Width", width) })
        {
            if (v <= 0)
                throw new DiffusionException("InvalidImageSize", DiffusionErrorKind.InvalidArgument, $"-{name} {v} must be positive.", name);
            if (v % multiple != 0)
                throw new DiffusionException("InvalidImageSize", DiffusionErrorKind.InvalidArgument,
                    $"-{name} {v} is not a multiple of {multiple}; use {v / multiple * multiple} or {(v / multiple + 1) * multiple}.", name);
        }
    }

    public static void Steps(int steps)
    {
        if (steps < 1)
            throw new DiffusionException("InvalidSteps", DiffusionErrorKind.InvalidArgument, $"-Steps {steps}: at least 1 step is needed (typical: 20-50).", "Steps");
    }

    public static long RandomSeed() => Random.Shared.NextInt64(0, uint.MaxValue);

    public static Tensor Negative(DiffusionEmbedding e) => e.NegativePromptEmbeds
        ?? throw new DiffusionException("NegativeEmbeddingMissing", DiffusionErrorKind.InvalidArgument,
            $"Embedding #{e.Index} has no negative prompt embeddings, which classifier-free guidance needs. Encode it again, or use -GuidanceScale 1.", "Embedding");
}
