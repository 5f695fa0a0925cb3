using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>What a denoise run was, shared by every latent object it hands out.</summary>
internal sealed record DenoiseRunInfo(string Family, string Model, long Seed, int Steps, int TotalSteps, double GuidanceScale,
    string Scheduler, int Height, int Width)
{
    public double GuidanceRescale { get; init; }
    /// <summary>img2img: diffusers' strength; null for text-to-image.</summary>
    public double? Strength { get; init; }
    /// <summary>The LoRAs active in the run, "name: hash: scale, ..." (null: none).</summary>
    public string? Loras { get; init; }
    /// <summary>A1111's name for the scheduler (see <see cref="Schedulers.SamplerNames"/>).</summary>
    public string Sampler { get; init; } = Scheduler;
    /// <summary>A1111's short hash of the denoiser's weights (see <see cref="ModelIdentity.Hash"/>).</summary>
    public string? ModelHash { get; init; }

    /// <summary>One latent object per image of the batch latents <paramref name="all"/> [B,...], copied to the CPU.</summary>
    public List<DiffusionLatent> Split(Tensor all, IReadOnlyList<DiffusionEmbedding> items, int stepsDone, double seconds = 0) =>
        items.Select((e, k) => new DiffusionLatent(all.narrow(0, k, 1).to(torch.CPU).contiguous())
        {
            Index = e.Index, Prompt = e.Prompt, NegativePrompt = e.NegativePrompt, Family = Family, Model = Model, Seed = Seed,
            Steps = Steps, Step = stepsDone, TotalSteps = TotalSteps, GuidanceScale = GuidanceScale, GuidanceRescale = GuidanceRescale, Strength = Strength, Loras = Loras, Scheduler = Scheduler,
            Height = Height, Width = Width, Seconds = seconds,
            Sampler = Sampler, ModelHash = ModelHash, BatchSize = items.Count, BatchPosition = k,
        }).ToList();
}
