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

    /// <summary>
    /// Every id a tokenizer can give must have a row in its text encoder's embedding (tokenizer -> text_encoder,
    /// tokenizer_2 -> text_encoder_2); otherwise the first prompt with such a token fails in libtorch with
    /// "index out of range in self".
    /// </summary>
    public static void TokenizersFitEncoders(DiffusersFolder folder, IReadOnlyDictionary<string, PipelineComponent> loaded)
    {
        foreach (var (tokenizerName, encoderName) in new[] { ("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2") })
        {
            if (!loaded.TryGetValue(tokenizerName, out var tokenizer) || !loaded.TryGetValue(encoderName, out var encoder)) continue;
            int maxId = tokenizer.Instance switch
            {
                Tokenizers.CLIPTokenizer clip => clip.MaxId,
                Tokenizers.T5Tokenizer t5 => t5.MaxId,
                _ => -1,
            };
            long rows = encoder.Instance switch
            {
                Models.CLIPTextModel clip => clip.Config.VocabSize,
                Models.T5EncoderModel t5 => t5.Config.VocabSize,
                _ => long.MaxValue,
            };
            if (maxId >= rows)
                throw new DiffusionException("TokenizerEncoderMismatch", DiffusionErrorKind.InvalidData,
                    $"The tokenizer '{folder.ComponentPath(tokenizerName)}' gives ids up to {maxId}, but the text encoder " +
                    $"'{folder.ComponentPath(encoderName)}' has {rows} embedding rows (vocab_size in its config.json): prompts with " +
                    "the last tokens would fail. The two folders come from different models; download the model's tokenizer or text encoder again.",
                    folder.ComponentPath(tokenizerName));
        }
    }

    /// <summary>
    /// Refuses a run whose latents and activations cannot fit on the pipeline's device (a device-mapped or offloaded
    /// pipeline was planned for its size already). <paramref name="config"/> is the model's typed config.
    /// </summary>
    public static void RunFits(DiffusionPipeline pipe, string className, Models.IModelConfig config, int height, int width, int batch,
        long latentBytes, string stage, int? textLength = null)
    {
        if (pipe.DevicePlan is not null) return;
        var estimate = Sharding.ActivationEstimator.For(className, config, pipe.DType,
            new Models.ActivationRequest(height, width, batch, textLength, pipe.VaeScaleFactor));
        Devices.MemoryCheck.RequireRoom(pipe.TorchDevice, estimate.Bytes + latentBytes, $"{stage} at {width}x{height} (batch {batch})",
            "Use a smaller -Height/-Width or -BatchSize, or spread the model with -DeviceMap or -Offload.");
    }

    /// <summary>guidance_rescale is a mixing weight: 0 (off) to 1 (fully rescaled), as the paper and diffusers use it.</summary>
    public static double GuidanceRescale(double rescale)
    {
        if (!(rescale >= 0 && rescale <= 1))
            throw new DiffusionException("InvalidGuidanceRescale", DiffusionErrorKind.InvalidArgument,
                $"-GuidanceRescale {rescale} is outside 0..1. It mixes the rescaled prediction in: 0 is off, 0.7 is the paper's value, 1 is fully rescaled.", "GuidanceRescale");
        return rescale;
    }

    public static void Steps(int steps)
    {
        if (steps < 1)
            throw new DiffusionException("InvalidSteps", DiffusionErrorKind.InvalidArgument, $"-Steps {steps}: at least 1 step is needed (typical: 20-50).", "Steps");
    }

    /// <summary>A discrete-time schedule has num_train_timesteps timesteps to choose from; diffusers refuses more steps too.</summary>
    public static void StepsWithinTraining(Schedulers.IScheduler scheduler, int steps)
    {
        int trained = scheduler.Config.NumTrainTimesteps;
        if (steps > trained)
            throw new DiffusionException("InvalidSteps", DiffusionErrorKind.InvalidArgument,
                $"-Steps {steps} is more than the {trained} timesteps {scheduler.Name} was trained with (num_train_timesteps in its scheduler_config.json). Use at most {trained} steps.", "Steps");
    }

    /// <summary>
    /// More steps than the schedule has room for puts a timestep past the last trained one (diffusers fails there
    /// with an index error); say so with the limit.
    /// </summary>
    public static void TimestepsInRange(Schedulers.IScheduler scheduler, int steps)
    {
        int trained = scheduler.Config.NumTrainTimesteps;
        if (scheduler.Timesteps.Any(t => t >= trained))
            throw new DiffusionException("InvalidSteps", DiffusionErrorKind.InvalidArgument,
                $"-Steps {steps} is too many for {scheduler.Name} with this configuration: its timesteps would pass the {trained} it was trained on " +
                $"(steps_offset {scheduler.Config.StepsOffset}). Use at most {trained - Math.Max(0, scheduler.Config.StepsOffset)} steps.", "Steps");
    }

    /// <summary>The initial latents for a batch: the user's (checked against the expected shape) or null to draw noise.</summary>
    public static Tensor? InitialLatents(DenoiseOptions o, int batch, long[] expectedItemShape)
    {
        if (o.InitialLatents is null) return null;
        if (o.InitialLatents.Count != batch)
            throw new DiffusionException("InitialLatentCountMismatch", DiffusionErrorKind.InvalidArgument,
                $"-InitialLatent has {o.InitialLatents.Count} latents for {batch} embeddings; give one per embedding.", "InitialLatent");
        foreach (var l in o.InitialLatents)
            if (!l.Latents.shape.SequenceEqual(expectedItemShape))
                throw new DiffusionException("InitialLatentShapeMismatch", DiffusionErrorKind.InvalidArgument,
                    $"-InitialLatent #{l.Index} has shape [{string.Join(",", l.Latents.shape)}] but this size needs [{string.Join(",", expectedItemShape)}]. Use the same -Height/-Width it was made for.", "InitialLatent");
        return torch.cat(o.InitialLatents.Select(l => l.Latents).ToArray(), 0);
    }

    /// <summary>
    /// The seed of a denoise run: -Seed (random when none), plus the prompt's index with SeedPerPrompt. Seeds are taken
    /// modulo 2^64, as torch's manual_seed takes them: a signed seed s is the generator of s + 2^64 when negative, so
    /// long.MaxValue + 1 wraps to long.MinValue, which is torch's seed 2^63.
    /// </summary>
    public static long RunSeed(DenoiseOptions o, IReadOnlyList<DiffusionEmbedding> batch)
    {
        long seed = o.Seed ?? RandomSeed.Next();
        if (!o.SeedPerPrompt) return seed;
        if (batch.Count != 1)
            throw new DiffusionException("SeedPerPromptBatch", DiffusionErrorKind.InvalidArgument,
                $"With a seed per prompt each run takes one prompt, but this batch has {batch.Count}. Denoise the prompts one at a time (no -BatchSize).", "BatchSize");
        return unchecked(seed + batch[0].Index);
    }

    public static Tensor Negative(DiffusionEmbedding e) => e.NegativePromptEmbeds
        ?? throw new DiffusionException("NegativeEmbeddingMissing", DiffusionErrorKind.InvalidArgument,
            $"Embedding #{e.Index} has no negative prompt embeddings, which classifier-free guidance needs. Encode it again, or use -GuidanceScale 1.", "Embedding");
}
