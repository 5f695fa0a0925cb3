using Diffusion.Engine.Models;
using Diffusion.Engine.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// One pipeline family (diffusers' StableDiffusionPipeline, StableDiffusionXLPipeline, FluxPipeline, ...): what it
/// needs, its defaults, and its three stages. A family is one file under engine/Families, registered by the
/// model_index.json <c>_class_name</c> it runs with <see cref="PipelineFamilyAttribute"/>; the rest of the engine asks
/// <see cref="PipelineFamilies"/> for it and never switches on which family it is.
/// </summary>
internal interface IPipelineFamily
{
    /// <summary>The family's name, as pipelines, embeddings, latents and exported tensors record it ("StableDiffusion", "Flux").</summary>
    string Name { get; }

    /// <summary>What the family is, for messages ("StableDiffusionPipeline (SD 1.x/2.x)").</summary>
    string Description { get; }

    /// <summary>The tokenizers and text encoders the encode stage needs, in load order.</summary>
    IReadOnlyList<string> TextComponents { get; }

    /// <summary>The component the denoise stage runs ("unet", "transformer"); loading it brings the scheduler.</summary>
    string DenoiserComponent { get; }

    int DefaultSteps { get; }
    double DefaultGuidanceScale { get; }

    /// <summary>The image side without -Height/-Width: from the denoiser's config when it says, else the family's default.</summary>
    int DefaultImageSize(DiffusersFolder folder, int vaeScaleFactor);

    /// <summary>Image metadata: the guidance scale is an input of a guidance-distilled model, not classifier-free guidance.</summary>
    bool DistilledGuidance { get; }

    /// <summary>img2img: the image sides must be multiples of this (the VAE's scale, times the latent packing).</summary>
    int ImageSizeMultiple(int vaeScaleFactor);

    /// <summary>img2img: diffusers' get_timesteps t_start (before the scheduler's order), for <paramref name="strength"/> in [0, 1].</summary>
    int StartStep(int steps, double strength);

    /// <summary>img2img: the dtype the VAE encodes the init image in.</summary>
    ScalarType VaeEncodeDType(DiffusionPipeline pipe, AutoencoderKL vae);

    /// <summary>Encodes prompts to one embedding per prompt (negatives expanded to one per prompt, null when not given).</summary>
    IReadOnlyList<DiffusionEmbedding> Encode(DiffusionPipeline pipe, IReadOnlyList<string> prompts, IReadOnlyList<string?> negativePrompts,
        EncodeOptions options, IReadOnlyList<int> indices, Action<PipelineWarning> warn);

    /// <summary>
    /// Everything a denoise run needs before its first step (checks, conditioning, timesteps, initial latents) and its
    /// one denoising step; <see cref="DenoiseLoop"/> runs the steps.
    /// </summary>
    DenoiseSetup PrepareDenoise(DiffusionPipeline pipe, IReadOnlyList<DiffusionEmbedding> batch, DenoiseOptions options, Action<PipelineWarning> warn);

    /// <summary>Refuses a latent this pipeline's VAE cannot decode, saying what it takes.</summary>
    void CheckLatent(DiffusionPipeline pipe, DiffusionLatent latent);

    /// <summary>Decodes a batch of latents of one image size to images [B,3,H,W], float32 on the CPU in [0,1].</summary>
    Tensor Decode(DiffusionPipeline pipe, Tensor latents, int height, int width);
}

/// <summary>Registers a family for the model_index.json <c>_class_name</c> values it runs.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
internal sealed class PipelineFamilyAttribute(string pipelineClassName) : Attribute
{
    public string PipelineClassName { get; } = pipelineClassName;
}

/// <summary>
/// A denoise run ready to start: the initial latents (the loop takes them over), the scheduler with its timesteps set,
/// what the run is, where it starts, and its one step. Disposing frees the conditioning the step uses.
/// </summary>
internal sealed class DenoiseSetup(Tensor latents, IScheduler scheduler, DenoiseRunInfo run, Func<int, Tensor, Tensor> step,
    int firstStep, params IDisposable?[] conditioning) : IDisposable
{
    public Tensor Latents { get; } = latents;
    public IScheduler Scheduler { get; } = scheduler;
    public DenoiseRunInfo Run { get; } = run;
    /// <summary>(step index, current latents [B, ...]) -> next latents.</summary>
    public Func<int, Tensor, Tensor> Step { get; } = step;
    /// <summary>img2img: the first timestep's index (the steps before it are skipped); 0 otherwise.</summary>
    public int FirstStep { get; } = firstStep;

    public void Dispose()
    {
        foreach (var d in conditioning) d?.Dispose();
    }
}
