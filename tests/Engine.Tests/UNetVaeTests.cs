using System.Text.Json;
using System.Text.Json.Nodes;
using Diffusion.Engine.Families;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Diffusion.Engine.Tests;

/// <summary>UNet2DConditionModel and AutoencoderKL against the diffusers reference runs in shared/fixtures.</summary>
public class UNetVaeTests
{
    private readonly ITestOutputHelper _output;

    public UNetVaeTests(ITestOutputHelper output) => _output = output;

    private static readonly Lazy<UNet2DConditionModel> SdUNet = new(() => FixtureModels.Load<UNet2DConditionModel>("sd-tiny", "unet"));
    private static readonly Lazy<AutoencoderKL> SdVae = new(() => FixtureModels.Load<AutoencoderKL>("sd-tiny", "vae"));
    private static readonly Lazy<AutoencoderKL> FluxVae = new(() => FixtureModels.Load<AutoencoderKL>("flux-tiny", "vae"));

    private static double MaxAbsDiff(Tensor expected, Tensor actual)
    {
        using var scope = torch.NewDisposeScope();
        return (actual.to(ScalarType.Float64) - expected.to(ScalarType.Float64)).abs().max().item<double>();
    }

    /// <summary>DDIMScheduler's alphas_cumprod for the SD config, computed as diffusers does (float32 scaled_linear betas, cumprod).</summary>
    private static double[] ScaledLinearAlphasCumprod()
    {
        using var scope = torch.NewDisposeScope();
        var betas = torch.linspace(Math.Sqrt(0.00085), Math.Sqrt(0.012), 1000, dtype: ScalarType.Float32).pow(2);
        var alphasCumprod = torch.cumprod(1.0 - betas, dim: 0);
        return alphasCumprod.to(ScalarType.Float64).data<double>().ToArray();
    }

    /// <summary>
    /// One run of sd-tiny-refs.json. Python's json module wrote the DPM-Solver config's lambda_min_clipped as a bare
    /// -Infinity, which is not JSON, so that token is replaced before parsing (no field read here uses it).
    /// </summary>
    private static JsonElement SdRun(string file)
    {
        var text = File.ReadAllText(Fixtures.PathOf("sd-tiny-refs.json")).Replace("-Infinity", "null");
        return JsonDocument.Parse(text).RootElement.EnumerateArray().Single(r => r.GetProperty("file").GetString() == file).Clone();
    }

    [Fact]
    public void UNetReproducesEveryDdimStepWithGuidance()
    {
        var unet = SdUNet.Value;
        var refs = Fixtures.Tensors("sd-tiny-ref-ddim.safetensors");
        var run = SdRun("sd-tiny-ref-ddim.safetensors");
        int steps = run.GetProperty("steps").GetInt32();
        double guidance = run.GetProperty("guidance_scale").GetDouble();
        var acp = ScaledLinearAlphasCumprod();
        using var textEmbeddings = torch.cat(new[] { refs["negative_prompt_embeds"], refs["prompt_embeds"] }, dim: 0); // [2B, 77, C]
        using var _ = torch.no_grad();

        double worst = 0;
        for (int i = 0; i < steps; i++)
        {
            using var scope = torch.NewDisposeScope();
            var latents = i == 0 ? refs["init_noise"] : refs[$"step{i - 1}_latents"]; // DDIM init_noise_sigma = 1
            var t = refs[$"step{i}_t"];
            int timestep = (int)t.item<float>();

            var noisePred = unet.forward(torch.cat(new[] { latents, latents }, dim: 0), t, textEmbeddings);
            var halves = noisePred.to(ScalarType.Float64).chunk(2, dim: 0);
            var eps = halves[0] + guidance * (halves[1] - halves[0]);

            // DDIM, eta = 0, set_alpha_to_one = false: the final step uses alphas_cumprod[0].
            int prevTimestep = timestep - 1000 / steps;
            double alphaT = acp[timestep];
            double alphaPrev = prevTimestep >= 0 ? acp[prevTimestep] : acp[0];
            var x = latents.to(ScalarType.Float64);
            var predOriginal = (x - Math.Sqrt(1 - alphaT) * eps) / Math.Sqrt(alphaT);
            var prevSample = Math.Sqrt(alphaPrev) * predOriginal + Math.Sqrt(1 - alphaPrev) * eps;

            var expected = refs[$"step{i}_latents"];
            double diff = MaxAbsDiff(expected, prevSample);
            worst = Math.Max(worst, diff);
            _output.WriteLine($"DDIM step {i} (t={timestep}): max |diff| {diff:g3}");
            // The suite's step tolerance: 1e-4 of the tensor's scale (an elementwise rtol fails near zero on some CPUs'
            // kernels: 2.45e-5 at step 0 on an AMD EPYC, where the step-0 latents reach 7.9).
            double scale = expected.abs().max().item<float>();
            Fixtures.AssertClose(expected, prevSample, rtol: 0, atol: 1e-4 * scale, $"DDIM step {i} latents");
        }
        _output.WriteLine($"DDIM steps: worst max |diff| {worst:g3}");
    }

    [Theory]
    [InlineData("sd-tiny-ref-ddim.safetensors")]
    [InlineData("sd-tiny-ref-pndm-nocfg-96x64.safetensors")]
    public void SdVaeDecodesTheReferenceImage(string file)
    {
        var vae = SdVae.Value;
        var refs = Fixtures.Tensors(file);
        int last = refs.Keys.Where(k => k.StartsWith("step") && k.EndsWith("_latents")).Max(k => int.Parse(k["step".Length..k.IndexOf('_')]));
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var decoded = vae.Decode(refs[$"step{last}_latents"] / vae.Config.ScalingFactor);
        var image = (decoded / 2 + 0.5).clamp(0, 1);
        _output.WriteLine($"{file}: image {string.Join("x", image.shape)}, max |diff| {MaxAbsDiff(refs["image"], image):g3}");
        Fixtures.AssertClose(refs["image"], image, rtol: 0, atol: 2e-3, $"{file} decoded image");
    }

    /// <summary>diffusers' FluxPipeline._unpack_latents: [B, (h/2)(w/2), C*4] tokens to [B, C, h, w] latents.</summary>
    private static Tensor UnpackFluxLatents(Tensor packed, int height, int width, int vaeScaleFactor)
    {
        long batch = packed.shape[0], channels = packed.shape[2];
        long h = 2 * (height / (vaeScaleFactor * 2)), w = 2 * (width / (vaeScaleFactor * 2));
        return packed.view(batch, h / 2, w / 2, channels / 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(batch, channels / 4, h, w);
    }

    [Theory]
    [InlineData("flux-tiny-ref-a.safetensors")]
    [InlineData("flux-tiny-ref-b.safetensors")]
    public void FluxVaeDecodesTheReferenceImage(string file)
    {
        var vae = FluxVae.Value;
        Assert.Equal(16, vae.Config.LatentChannels);
        Assert.Null(vae.quant_conv);
        Assert.Null(vae.post_quant_conv);
        var run = Fixtures.Json("flux-tiny-refs.json").EnumerateArray().Single(r => r.GetProperty("file").GetString() == file);
        var refs = Fixtures.Tensors(file);
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var latents = UnpackFluxLatents(refs["packed_latents"], run.GetProperty("height").GetInt32(), run.GetProperty("width").GetInt32(), vae.Config.ScaleFactor);
        var decoded = vae.Decode(latents / vae.Config.ScalingFactor + vae.Config.ShiftFactor!.Value);
        var image = (decoded / 2 + 0.5).clamp(0, 1);
        _output.WriteLine($"{file}: image {string.Join("x", image.shape)}, max |diff| {MaxAbsDiff(refs["image"], image):g3}");
        Fixtures.AssertClose(refs["image"], image, rtol: 0, atol: 2e-3, $"{file} decoded image");
    }

    [Fact]
    public void VaeEncodesToLatentsOfTheRightShape()
    {
        var vae = SdVae.Value;
        var refs = Fixtures.Tensors("sd-tiny-ref-pndm-nocfg-96x64.safetensors");
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var image = refs["image"] * 2 - 1; // [1, 3, 96, 64] in [-1, 1]
        var mean = vae.EncodeMean(image);
        Assert.Equal(new long[] { 1, 4, 12, 8 }, mean.shape);
        Assert.True(torch.isfinite(mean).all().item<bool>());

        var (mean2, logvar) = vae.Encode(image);
        Fixtures.AssertClose(mean, mean2, 0, 0, "EncodeMean vs Encode().Mean");
        Assert.True(logvar.min().item<float>() >= -30f && logvar.max().item<float>() <= 20f, "log-variance is clamped to [-30, 20]");

        // A posterior draw is mean + exp(logvar / 2) * noise, the noise from the generator as torch.randn draws it.
        var sample = vae.EncodeSample(image, new Generator(1234));
        var noise = torch.randn(mean.shape, generator: new Generator(1234));
        Fixtures.AssertClose(mean + torch.exp(0.5 * logvar) * noise, sample, 1e-6, 1e-6, "EncodeSample");

        var roundTrip = vae.Decode(mean);
        Assert.Equal(image.shape, roundTrip.shape);
    }

    [Theory]
    [InlineData("sd-tiny", "unet")]
    [InlineData("sd-tiny", "vae")]
    [InlineData("flux-tiny", "vae")]
    public void ModelStateDictMatchesTheCheckpointExactly(string pipeline, string component)
    {
        var dir = Fixtures.PathOf(pipeline, component);
        using nn.Module model = component == "unet"
            ? new UNet2DConditionModel(UNet2DConditionConfig.Load(Path.Combine(dir, "config.json")))
            : new AutoencoderKL(AutoencoderKLConfig.Load(Path.Combine(dir, "config.json")));
        using var file = SafeTensorsFile.Open(WeightLoader.FindWeightFiles(dir).Single());
        var expected = file.Tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal).Select(t => $"{t.Name} [{string.Join(",", t.Shape)}]").ToList();
        var actual = model.state_dict().OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} [{string.Join(",", kv.Value.shape)}]").ToList();
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void UNetAcceptsScalarSingleAndBatchedTimesteps()
    {
        var unet = SdUNet.Value;
        var refs = Fixtures.Tensors("sd-tiny-ref-ddim.safetensors");
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var latents = refs["init_noise"];
        var text = refs["prompt_embeds"];
        var batched = unet.forward(latents, torch.tensor(new long[] { 801, 801 }), text);
        Fixtures.AssertClose(batched, unet.forward(latents, torch.tensor(801L), text), 0, 0, "0-dim timestep");
        Fixtures.AssertClose(batched, unet.forward(latents, torch.tensor(new[] { 801f }), text), 0, 0, "[1] float timestep");
    }

    [Fact]
    public void UNetHandlesLatentSizesThatAreNotMultiplesOfItsDownscale()
    {
        var unet = SdUNet.Value;
        var refs = Fixtures.Tensors("sd-tiny-ref-ddim.safetensors");
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var latents = refs["init_noise"][.., .., ..10, ..6]; // 10x6: the up path must upsample to the skip sizes (5x3 -> 10x6)
        var output = unet.forward(latents, refs["step0_t"], refs["prompt_embeds"]);
        Assert.Equal(latents.shape, output.shape);
        Assert.True(torch.isfinite(output).all().item<bool>());
    }

    [Theory]
    [InlineData(ScalarType.Float16, 1e-2)]
    [InlineData(ScalarType.BFloat16, 1e-1)]
    public void HalfPrecisionUNetStaysCloseToFloat32(ScalarType dtype, double atol)
    {
        var reference = SdUNet.Value;
        using var half = FixtureModels.Load<UNet2DConditionModel>("sd-tiny", "unet", dtype);
        var refs = Fixtures.Tensors("sd-tiny-ref-ddim.safetensors");
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var latents = refs["init_noise"];
        var text = refs["prompt_embeds"];
        var t = refs["step0_t"];
        var expected = reference.forward(latents, t, text);
        var actual = half.forward(latents.to(dtype), t, text.to(dtype));
        Assert.Equal(dtype, actual.dtype);
        double diff = MaxAbsDiff(expected, actual);
        _output.WriteLine($"{dtype} UNet forward: max |diff| {diff:g3} vs float32 (output max |x| {expected.abs().max().item<float>():g3})");
        Fixtures.AssertClose(expected, actual, rtol: 0, atol: atol, $"{dtype} UNet forward");
    }

    private static string WriteConfig(string sourceDir, Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(sourceDir, "config.json")))!.AsObject();
        edit(json);
        var path = Path.Combine(Path.GetTempPath(), $"config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    [Theory]
    [InlineData("class_embed_type", "\"timestep\"")]
    [InlineData("addition_embed_type", "\"text_image\"")]
    [InlineData("num_attention_heads", "8")]
    [InlineData("dual_cross_attention", "true")]
    [InlineData("time_cond_proj_dim", "256")]
    [InlineData("encoder_hid_dim_type", "\"text_proj\"")]
    [InlineData("down_block_types", "[\"SimpleCrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"]")]
    public void UnsupportedUNetConfigFeaturesAreRefusedByName(string key, string valueJson)
    {
        var path = WriteConfig(Fixtures.PathOf("sd-tiny", "unet"), c => c[key] = JsonNode.Parse(valueJson));
        try
        {
            var e = Assert.Throws<DiffusionException>(() => UNet2DConditionConfig.Load(path));
            Assert.Equal(DiffusionErrorKind.NotSupported, e.Kind);
            Assert.Contains($"'{key}'", e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void VaeConfigErrorsNameTheFileAndKey()
    {
        var missing = Assert.Throws<DiffusionException>(() => AutoencoderKLConfig.Load(Path.Combine(Path.GetTempPath(), "no-such-vae", "config.json")));
        Assert.Equal(DiffusionErrorKind.ObjectNotFound, missing.Kind);

        var path = WriteConfig(Fixtures.PathOf("sd-tiny", "vae"),
            c => c["down_block_types"] = JsonNode.Parse("[\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"]"));
        try
        {
            var e = Assert.Throws<DiffusionException>(() => AutoencoderKLConfig.Load(path));
            Assert.Equal(DiffusionErrorKind.NotSupported, e.Kind);
            Assert.Contains("'down_block_types'", e.Message);
            Assert.Contains("AttnDownEncoderBlock2D", e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void AttentionHeadDimMayBeAListWithOneValuePerBlock()
    {
        var dir = Fixtures.PathOf("sd-tiny", "unet");
        var listPath = WriteConfig(dir, c => c["attention_head_dim"] = JsonNode.Parse("[8, 8, 8]"));
        var wrongPath = WriteConfig(dir, c => c["attention_head_dim"] = JsonNode.Parse("[8, 8]"));
        try
        {
            var wrong = Assert.Throws<DiffusionException>(() => UNet2DConditionConfig.Load(wrongPath));
            Assert.Equal(DiffusionErrorKind.InvalidData, wrong.Kind);
            Assert.Contains("'attention_head_dim'", wrong.Message);

            using var listed = new UNet2DConditionModel(UNet2DConditionConfig.Load(listPath));
            WeightLoader.LoadInto(listed, dir, CPU, ScalarType.Float32);
            listed.eval();
            var refs = Fixtures.Tensors("sd-tiny-ref-ddim.safetensors");
            using var _ = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            var expected = SdUNet.Value.forward(refs["init_noise"], refs["step0_t"], refs["prompt_embeds"]);
            var actual = listed.forward(refs["init_noise"], refs["step0_t"], refs["prompt_embeds"]);
            Fixtures.AssertClose(expected, actual, 0, 0, "attention_head_dim [8, 8, 8] vs 8");
        }
        finally { File.Delete(listPath); File.Delete(wrongPath); }
    }
}
