using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// The denoised latents of one image and how they were made. SD: [1,4,H/8,W/8]. FLUX: packed [1,(H/16)*(W/16),64].
/// </summary>
public sealed class DiffusionLatent : TensorHolder
{
    public int Index { get; init; }
    public string Prompt { get; init; } = "";
    public string? NegativePrompt { get; init; }
    /// <summary>The pipeline family that made it, by name ("StableDiffusion", "Flux"); "" when an imported file does not say.</summary>
    public string Family { get; init; } = "";
    public string Model { get; init; } = "";
    public long Seed { get; init; }
    public int Steps { get; init; }
    /// <summary>Model steps done when these latents were taken.</summary>
    public int Step { get; init; }
    /// <summary>Model steps in the run: usually <see cref="Steps"/>; PNDM's schedule has one more (its first timestep repeats).</summary>
    public int TotalSteps { get; init; }
    /// <summary>True for the run's result; false for the per-step latents of -IncludeSteps.</summary>
    public bool IsFinal => Step == TotalSteps;
    public double GuidanceScale { get; init; }
    /// <summary>diffusers' guidance_rescale of the run (0: none).</summary>
    public double GuidanceRescale { get; init; }
    public string Scheduler { get; init; } = "";
    /// <summary>img2img: the strength the run started from its init image with (diffusers' strength); null for text-to-image.</summary>
    public double? Strength { get; init; }
    /// <summary>The LoRAs active in the run that made it, "name: hash: scale, ..." (A1111's Lora hashes, with the scales); null: none.</summary>
    public string? Loras { get; init; }
    /// <summary>A1111's name for the scheduler ("PLMS", "Euler a", "DPM++ 2M Karras").</summary>
    public string Sampler { get; init; } = "";
    /// <summary>A1111's short hash of the denoiser's weights; null when they are sharded.</summary>
    public string? ModelHash { get; init; }
    /// <summary>The images denoised together from one generator seeded with <see cref="Seed"/>, and this one's place among them.</summary>
    public int BatchSize { get; init; } = 1;
    public int BatchPosition { get; init; }
    public int Height { get; init; }
    public int Width { get; init; }
    /// <summary>The image size the latents decode to, "WIDTHxHEIGHT".</summary>
    public string Size => $"{Width}x{Height}";
    /// <summary>Seconds the denoise loop took for the batch this image was in.</summary>
    public double Seconds { get; init; }

    private readonly Tensor _latents;

    public DiffusionLatent(Tensor latents) => _latents = Track(latents);

    public Tensor Latents { get { ThrowIfDisposed(); return _latents; } }
    public string Shape => IsDisposed ? "(freed)" : "[" + string.Join(",", _latents.shape) + "]";
    public string Device => IsDisposed ? "(freed)" : Devices.DeviceCatalog.Name(_latents.device);

    protected override IEnumerable<Tensor?> OwnedTensors() => [_latents];

    public override string ToString() => $"Latent #{Index} '{Prompt}' {Shape} seed {Seed}";
}
