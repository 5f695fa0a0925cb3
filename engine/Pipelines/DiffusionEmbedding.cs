using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// The text-encoder output for one prompt: what the denoiser needs, and nothing of the encoders.
/// SD: PromptEmbeds [1,77,C] and NegativePromptEmbeds [1,77,C]. FLUX: PromptEmbeds (T5) [1,S,C] and
/// PooledPromptEmbeds (CLIP) [1,C'].
/// </summary>
public sealed class DiffusionEmbedding : TensorHolder
{
    public int Index { get; init; }
    public string Prompt { get; internal set; } = ""; // set after encoding where the text encoded differs (LoRA tags taken out)
    public string? NegativePrompt { get; init; }
    /// <summary>SDXL: the prompt the second text encoder got (diffusers' prompt_2; the prompt when not given).</summary>
    public string? Prompt2 { get; init; }
    /// <summary>SDXL: the negative prompt the second text encoder got (negative_prompt_2).</summary>
    public string? NegativePrompt2 { get; init; }
    /// <summary>The pipeline family that made it, by name ("StableDiffusion", "Flux"); "" when an imported file does not say.</summary>
    public string Family { get; init; } = "";
    public string Model { get; init; } = "";
    public int TokenCount { get; init; }
    public bool Truncated { get; init; }
    public string? TruncatedText { get; init; }

    private readonly Tensor _promptEmbeds;
    private readonly Tensor? _negativePromptEmbeds;
    private readonly Tensor? _pooledPromptEmbeds;
    private readonly Tensor? _negativePooledPromptEmbeds;

    public DiffusionEmbedding(Tensor promptEmbeds, Tensor? negativePromptEmbeds = null, Tensor? pooledPromptEmbeds = null, Tensor? negativePooledPromptEmbeds = null)
    {
        _promptEmbeds = Track(promptEmbeds);
        _negativePromptEmbeds = negativePromptEmbeds is null ? null : Track(negativePromptEmbeds);
        _pooledPromptEmbeds = pooledPromptEmbeds is null ? null : Track(pooledPromptEmbeds);
        _negativePooledPromptEmbeds = negativePooledPromptEmbeds is null ? null : Track(negativePooledPromptEmbeds);
    }

    public Tensor PromptEmbeds { get { ThrowIfDisposed(); return _promptEmbeds; } }
    public Tensor? NegativePromptEmbeds { get { ThrowIfDisposed(); return _negativePromptEmbeds; } }
    public Tensor? PooledPromptEmbeds { get { ThrowIfDisposed(); return _pooledPromptEmbeds; } }
    public Tensor? NegativePooledPromptEmbeds { get { ThrowIfDisposed(); return _negativePooledPromptEmbeds; } }

    public string Shape => IsDisposed ? "(freed)" : "[" + string.Join(",", _promptEmbeds.shape) + "]";
    public string Device => IsDisposed ? "(freed)" : Devices.DeviceCatalog.Name(_promptEmbeds.device);
    public string DType => IsDisposed ? "(freed)" : _promptEmbeds.dtype.ToString().ToLowerInvariant();

    protected override IEnumerable<Tensor?> OwnedTensors() => [_promptEmbeds, _negativePromptEmbeds, _pooledPromptEmbeds, _negativePooledPromptEmbeds];

    public override string ToString() => $"Embedding #{Index} '{Prompt}' {Shape}";
}
