using System.Diagnostics;
using Diffusion.Engine.Families;
using Diffusion.Engine;
using Diffusion.Engine.Devices;
using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Bench;

/// <summary>One benchmark row: median milliseconds, and the diffusers reference (one H100, eager) where there is one.</summary>
public sealed record BenchmarkRow(string Model, string Row, double Milliseconds, double? ReferenceMilliseconds, string Note)
{
    /// <summary>Ours / diffusers': below 1 is faster.</summary>
    public double? Ratio => ReferenceMilliseconds is > 0 ? Math.Round(Milliseconds / ReferenceMilliseconds.Value, 3) : null;
}

/// <summary>
/// The models and shapes a benchmark runs: the real architectures (SD 1.5 and FLUX.1-dev configs, random weights, built
/// directly on the device) or the tiny fixture configs at small shapes, so the same code runs on CPU in CI.
/// </summary>
public sealed class ArchitectureProfile
{
    public string Name { get; init; } = "";
    public bool IsReal { get; init; }
    public UNet2DConditionConfig Unet { get; init; } = new();
    public CLIPTextConfig Clip { get; init; } = new();
    public AutoencoderKLConfig SdVae { get; init; } = new();
    public FluxTransformer2DConfig Flux { get; init; } = new();
    public T5Config T5 { get; init; } = new();
    public AutoencoderKLConfig FluxVae { get; init; } = new();
    public string SdScheduler { get; init; } = "";
    public string FluxScheduler { get; init; } = "";
    public int SdSize { get; init; } = 512;
    public int FluxSize { get; init; } = 1024;
    public int T5Tokens { get; init; } = 512;
    public int SdSteps { get; init; } = 50;
    public int FluxSteps { get; init; } = 28;

    private const string Sd15Scheduler = """
        {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
         "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "clip_sample": false}
        """;
    private const string FluxDevScheduler = """
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096,
         "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": true}
        """;

    /// <summary>SD 1.5 (UNet, CLIP ViT-L text, VAE) and FLUX.1-dev (transformer, T5-XXL, 16-channel VAE): their published configs.</summary>
    public static ArchitectureProfile Real() => new()
    {
        Name = "SD 1.5 + FLUX.1-dev (random weights)", IsReal = true,
        Unet = UNet2DConditionConfig.FromJson(HeaderOnlyCheckpoint.StableDiffusion15Unet, "stable-diffusion-v1-5/unet/config.json"),
        // FLUX.1's CLIP text encoder is SD 1.5's (openai/clip-vit-large-patch14's text tower).
        Clip = CLIPTextConfig.FromJson(HeaderOnlyCheckpoint.FluxDev["text_encoder"].Config, "FLUX.1-dev/text_encoder/config.json"),
        SdVae = AutoencoderKLConfig.FromJson(HeaderOnlyCheckpoint.StableDiffusion15Vae, "stable-diffusion-v1-5/vae/config.json"),
        Flux = FluxTransformer2DConfig.FromJson(HeaderOnlyCheckpoint.FluxDev["transformer"].Config, "FLUX.1-dev/transformer/config.json"),
        T5 = T5Config.FromJson(HeaderOnlyCheckpoint.FluxDev["text_encoder_2"].Config, "FLUX.1-dev/text_encoder_2/config.json"),
        FluxVae = AutoencoderKLConfig.FromJson(HeaderOnlyCheckpoint.FluxDev["vae"].Config, "FLUX.1-dev/vae/config.json"),
        SdScheduler = Sd15Scheduler, FluxScheduler = FluxDevScheduler,
    };

    /// <summary>The tiny fixture pipelines' configs at small shapes (CPU, CI).</summary>
    public static ArchitectureProfile FromFolders(string sdDir, string fluxDir) => new()
    {
        Name = "tiny fixture configs (random weights)",
        Unet = UNet2DConditionConfig.Load(Path.Combine(sdDir, "unet", "config.json")),
        Clip = CLIPTextConfig.Load(Path.Combine(sdDir, "text_encoder", "config.json")),
        SdVae = AutoencoderKLConfig.Load(Path.Combine(sdDir, "vae", "config.json")),
        Flux = FluxTransformer2DConfig.Load(Path.Combine(fluxDir, "transformer", "config.json")),
        T5 = T5Config.Load(Path.Combine(fluxDir, "text_encoder_2", "config.json")),
        FluxVae = AutoencoderKLConfig.Load(Path.Combine(fluxDir, "vae", "config.json")),
        SdScheduler = File.ReadAllText(Path.Combine(sdDir, "scheduler", "scheduler_config.json")),
        FluxScheduler = File.ReadAllText(Path.Combine(fluxDir, "scheduler", "scheduler_config.json")),
        SdSize = 128, FluxSize = 128, T5Tokens = 64, SdSteps = 4, FluxSteps = 4,
    };
}

/// <summary>
/// Times each model of the real architectures the way diffusers' pipelines call them (issue 6's table): SD 1.5 UNet
/// step (batch 2 with CFG, fp16), CLIP encode, VAE decode; FLUX.1-dev transformer step (bf16), T5-XXL encode, 16-channel
/// VAE decode; whole images. Median of <c>repeat</c> runs after a warm-up, synchronized on CUDA.
/// </summary>
public static class ArchitectureBenchmark
{
    // diffusers 0.40 eager, PyTorch 2.11, SDPA, one H100 80GB (from the issue), milliseconds.
    private static readonly Dictionary<string, double> H100Reference = new()
    {
        ["UNet step"] = 25.2, ["CLIP encode"] = 3.9, ["VAE decode (SD)"] = 23.4,
        ["transformer step"] = 180.7, ["T5 encode"] = 25.9, ["VAE decode (FLUX)"] = 90.4, ["whole image (FLUX)"] = 6710,
    };

    public static IEnumerable<BenchmarkRow> Run(ArchitectureProfile p, Device device, int repeat = 5, Action<string>? log = null)
    {
        bool cuda = device.type == DeviceType.CUDA;
        var sdType = cuda ? ScalarType.Float16 : ScalarType.Float32;
        var fluxType = cuda ? ScalarType.BFloat16 : ScalarType.Float32;
        var rows = new List<BenchmarkRow>();
        string sd = p.IsReal ? "SD 1.5" : "sd-tiny", flux = p.IsReal ? "FLUX.1-dev" : "flux-tiny";
        void Add(string model, string row, double ms, string note = "") =>
            rows.Add(new BenchmarkRow(model, row, Math.Round(ms, 2), p.IsReal && cuda && H100Reference.TryGetValue(row, out var r) ? r : null, note));
        using var noGrad = torch.no_grad();

        // Stable Diffusion 1.5: UNet, CLIP, VAE.
        log?.Invoke("building the SD models");
        using (var unet = Build(() => new UNet2DConditionModel(p.Unet), device, sdType))
        using (var clip = Build(() => new CLIPTextModel(p.Clip), device, sdType))
        using (var vae = Build(() => new AutoencoderKL(p.SdVae), device, sdType))
        {
            int h = p.SdSize / 8;
            using var sample = torch.randn([2, p.Unet.InChannels, h, h], sdType, device);
            using var context = torch.randn([2, 77, p.Clip.HiddenSize], sdType, device);
            using var t = torch.tensor(500f, ScalarType.Float32, device);
            using var ids = torch.randint(0, p.Clip.VocabSize, [1, 77], ScalarType.Int64, device);
            using var z = torch.randn([1, p.SdVae.LatentChannels, h, h], sdType, device);
            Add(sd, "UNet step", Median(() => unet.forward(sample, t, context), device, repeat), $"{p.SdSize}x{p.SdSize}, batch 2 (CFG), {DTypeNames.Name(sdType)}");
            Add(sd, "CLIP encode", Median(() => clip.forward(ids).LastHiddenState, device, repeat), "77 tokens");
            Add(sd, "VAE decode (SD)", Median(() => vae.Decode(z), device, repeat), $"{p.SdSize}x{p.SdSize}");
            var scheduler = SchedulerFactory.Create(SchedulerConfig.FromJson(p.SdScheduler, "benchmark"));
            Add(sd, "whole image (SD)", Median(() => SdImage(unet, clip, vae, scheduler, p, device, sdType), device, Math.Min(repeat, 3)),
                $"{p.SdSteps} steps, CFG, encode + denoise + decode");
        }
        MemoryCleaner.Flush();

        // FLUX.1-dev: transformer, T5, VAE.
        log?.Invoke("building the FLUX models");
        using (var transformer = Build(() => new FluxTransformer2DModel(p.Flux), device, fluxType))
        using (var t5 = Build(() => new T5EncoderModel(p.T5), device, fluxType))
        using (var vae = Build(() => new AutoencoderKL(p.FluxVae), device, fluxType))
        {
            int grid = p.FluxSize / 16; // packed 2x2 patches of the 8x-downscaled latents
            long tokens = grid * grid;
            using var hidden = torch.randn([1, tokens, p.Flux.InChannels], fluxType, device);
            using var context = torch.randn([1, p.T5Tokens, p.Flux.JointAttentionDim], fluxType, device);
            using var pooled = torch.randn([1, p.Flux.PooledProjectionDim], fluxType, device);
            using var t = torch.full([1], 0.5, fluxType, device);
            using var guidance = torch.full([1], 3.5, fluxType, device);
            using var imgIds = FluxLatents.PrepareLatentImageIds(grid, grid).to(device);
            using var txtIds = FluxLatents.TextIds(p.T5Tokens).to(device);
            using var ids = torch.randint(0, p.T5.VocabSize, [1, p.T5Tokens], ScalarType.Int64, device);
            using var z = torch.randn([1, p.FluxVae.LatentChannels, p.FluxSize / 8, p.FluxSize / 8], fluxType, device);
            var g = p.Flux.GuidanceEmbeds ? guidance : null;
            var rotary = transformer.RotaryEmbedding(imgIds, txtIds); // once per image, as the pipeline does
            using var rotaryCos = rotary.Cos; using var rotarySin = rotary.Sin;
            Add(flux, "transformer step", Median(() => transformer.forward(hidden, context, pooled, t, imgIds, txtIds, g, rotary), device, repeat),
                $"{tokens} image + {p.T5Tokens} text tokens, {DTypeNames.Name(fluxType)}");
            Add(flux, "T5 encode", Median(() => t5.forward(ids), device, repeat), $"{p.T5Tokens} tokens");
            Add(flux, "VAE decode (FLUX)", Median(() => vae.Decode(z), device, repeat), $"{p.FluxSize}x{p.FluxSize}, 16 channels");
            var scheduler = SchedulerFactory.Create(SchedulerConfig.FromJson(p.FluxScheduler, "benchmark"));
            Add(flux, "whole image (FLUX)", Median(() =>
                FluxImage(transformer, vae, scheduler, p, context, pooled, g, imgIds, txtIds, device, fluxType), device, Math.Min(repeat, 3)),
                $"{p.FluxSteps} steps, denoise + decode (text embeddings given)");
        }
        MemoryCleaner.Flush();
        return rows;
    }

    /// <summary>Builds a module directly on <paramref name="device"/> in <paramref name="dtype"/> (no CPU copy of a 12B model).</summary>
    private static T Build<T>(Func<T> make, Device device, ScalarType dtype) where T : nn.Module
    {
        using (Construction.On(device, dtype))
        {
            var module = make();
            module.to(device).to(dtype).eval();
            return module;
        }
    }

    private static double Median(Func<Tensor> run, Device device, int repeat)
    {
        void Once()
        {
            using var scope = torch.NewDisposeScope();
            run();
            if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
        }
        Once(); // warm-up
        var times = new List<double>();
        for (int i = 0; i < Math.Max(1, repeat); i++)
        {
            var clock = Stopwatch.StartNew();
            Once();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    private static Tensor SdImage(UNet2DConditionModel unet, CLIPTextModel clip, AutoencoderKL vae, IScheduler scheduler,
        ArchitectureProfile p, Device device, ScalarType dtype)
    {
        var ids = torch.randint(0, p.Clip.VocabSize, [2, 77], ScalarType.Int64, device);
        var context = clip.forward(ids).LastHiddenState; // [neg, pos]
        scheduler.SetTimesteps(p.SdSteps);
        var latents = torch.randn([1, p.Unet.InChannels, p.SdSize / 8, p.SdSize / 8], dtype, device) * scheduler.InitNoiseSigma;
        for (int i = 0; i < scheduler.Timesteps.Length; i++)
        {
            using var step = torch.NewDisposeScope();
            var input = scheduler.ScaleModelInput(torch.cat([latents, latents], 0), i);
            var noise = unet.forward(input, torch.full([], scheduler.Timesteps[i], ScalarType.Float32, device), context).chunk(2, 0);
            latents = scheduler.Step(noise[0] + 7.5 * (noise[1] - noise[0]), i, latents).MoveToOuterDisposeScope();
        }
        return vae.Decode(latents / p.SdVae.ScalingFactor);
    }

    private static Tensor FluxImage(FluxTransformer2DModel transformer, AutoencoderKL vae, IScheduler scheduler, ArchitectureProfile p,
        Tensor context, Tensor pooled, Tensor? guidance, Tensor imgIds, Tensor txtIds, Device device, ScalarType dtype)
    {
        long tokens = imgIds.shape[0];
        var latents = torch.randn([1, tokens, p.Flux.InChannels], dtype, device);
        var cfg = scheduler.Config;
        scheduler.SetTimesteps(p.FluxSteps, FlowMatchEulerDiscreteScheduler.CalculateShift((int)tokens, cfg.BaseImageSeqLen, cfg.MaxImageSeqLen, cfg.BaseShift, cfg.MaxShift));
        var rotary = transformer.RotaryEmbedding(imgIds, txtIds);
        using var rotaryCos = rotary.Cos; using var rotarySin = rotary.Sin;
        for (int i = 0; i < scheduler.Timesteps.Length; i++)
        {
            using var step = torch.NewDisposeScope();
            var t = torch.full([1], scheduler.Timesteps[i] / 1000f, dtype, device);
            latents = scheduler.Step(transformer.forward(latents, context, pooled, t, imgIds, txtIds, guidance, rotary), i, latents).MoveToOuterDisposeScope();
        }
        var unpacked = FluxLatents.UnpackLatents(latents, p.FluxSize, p.FluxSize, 8);
        return vae.Decode(unpacked / p.FluxVae.ScalingFactor + (p.FluxVae.ShiftFactor ?? 0));
    }
}
