using System.Text.Json;
using Diffusion.Engine.Families;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;
using Xunit.Abstractions;

namespace Diffusion.Engine.Tests;

public class FluxTransformerTests
{
    private const int VaeScaleFactor = 8; // 2^(len(block_out_channels) - 1) for flux-tiny's 4-level VAE
    private readonly ITestOutputHelper _output;

    public FluxTransformerTests(ITestOutputHelper output) => _output = output;

    public static IEnumerable<object[]> Runs() =>
        Fixtures.Json("flux-tiny-refs.json").EnumerateArray().Select(r => new object[] { r.GetProperty("file").GetString()! });

    [Theory]
    [MemberData(nameof(Runs))]
    public void DenoisingStepsMatchDiffusers(string file)
    {
        var run = Fixtures.Json("flux-tiny-refs.json").EnumerateArray().Single(r => r.GetProperty("file").GetString() == file);
        int steps = run.GetProperty("steps").GetInt32(), height = run.GetProperty("height").GetInt32(), width = run.GetProperty("width").GetInt32();
        long seed = run.GetProperty("seed").GetInt64();
        float guidanceScale = run.GetProperty("guidance_scale").GetSingle();
        using var scope = torch.NewDisposeScope();
        var refs = Fixtures.Tensors(file);
        var promptEmbeds = refs["prompt_embeds"];
        var pooled = refs["pooled_prompt_embeds"];
        long batch = promptEmbeds.shape[0];
        int textLen = (int)promptEmbeds.shape[1];

        using var model = FixtureModels.Load<FluxTransformer2DModel>("flux-tiny", "transformer");
        using var _ = torch.no_grad();

        var txtIds = FluxLatents.TextIds(textLen);
        Fixtures.AssertClose(refs["text_ids"], txtIds, 0, 0, "text_ids");
        var (latentH, latentW) = FluxLatents.LatentSize(height, width, VaeScaleFactor);
        var imgIds = FluxLatents.PrepareLatentImageIds(latentH / 2, latentW / 2);
        var generator = new Generator((ulong)seed, CPU);
        var latents = FluxLatents.PrepareLatents((int)batch, 16, height, width, VaeScaleFactor, generator);
        Assert.Equal(new long[] { batch, latentH / 2 * (latentW / 2), 64 }, latents.shape);

        var sigmas = FlowMatchSigmas(steps, (int)latents.shape[1]);
        var guidance = torch.full([batch], guidanceScale, dtype: ScalarType.Float32);
        for (int i = 0; i < steps; i++)
        {
            var t = torch.tensor(sigmas[i] * 1000f); // scheduler.timesteps[i], float32: bit-identical to diffusers
            Fixtures.AssertClose(refs[$"step{i}_t"], t.reshape(1), 0, 0, $"{file} step{i}_t");
            var timestep = t.expand(batch) / 1000; // as FluxPipeline passes it
            var velocity = model.forward(latents, promptEmbeds, pooled, timestep, imgIds, txtIds, guidance);
            var next = latents + (sigmas[i + 1] - sigmas[i]) * velocity; // FlowMatchEulerDiscrete step, float32
            var expected = refs[$"step{i}_latents"];
            Report($"{file} step{i}_latents", expected, next);
            Fixtures.AssertClose(expected, next, 1e-4, 1e-5, $"{file} step{i}_latents");
            if (i == steps - 1)
                Fixtures.AssertClose(refs["packed_latents"], next, 1e-4, 1e-5, $"{file} packed_latents");
            latents = expected; // restart from the reference so errors do not accumulate
        }
    }

    [Fact]
    public void Bf16ForwardIsCloseToFloat32()
    {
        using var scope = torch.NewDisposeScope();
        var refs = Fixtures.Tensors("flux-tiny-ref-a.safetensors");
        using var fp32 = FixtureModels.Load<FluxTransformer2DModel>("flux-tiny", "transformer");
        using var bf16 = FixtureModels.Load<FluxTransformer2DModel>("flux-tiny", "transformer", ScalarType.BFloat16);
        using var _ = torch.no_grad();
        var hidden = refs["step0_latents"];
        var imgIds = FluxLatents.PrepareLatentImageIds(8, 8);
        // t/1000 = 0.5 and guidance 4.0 stay exact through the model's bf16 "x.to(bf16) * 1000" (500, 4000), so both
        // runs see the same conditioning and the difference is bf16 arithmetic alone. (With a schedule timestep and
        // guidance 3.5, diffusers' own bf16 rounding of t·1000 and 3500 adds more: relative L2 about 5% on this model.)
        var timestep = torch.full([1], 0.5f);
        var guidance = torch.full([1], 4.0f);

        var expected = fp32.forward(hidden, refs["prompt_embeds"], refs["pooled_prompt_embeds"], timestep, imgIds, refs["text_ids"], guidance);
        var actual = bf16.forward(hidden, refs["prompt_embeds"], refs["pooled_prompt_embeds"], timestep, imgIds, refs["text_ids"], guidance);
        Assert.Equal(ScalarType.BFloat16, actual.dtype);
        Report("bf16 vs fp32 forward", expected, actual);
        // bf16 keeps 8 significant bits (relative step 2^-8 ≈ 0.4%); measured: relative L2 0.63%, max |diff| 0.77% of max |output|.
        var diff = actual.to(ScalarType.Float32) - expected;
        double relativeL2 = diff.norm().item<float>() / expected.norm().item<float>();
        Assert.True(relativeL2 < 0.015, $"bf16 forward: relative L2 error {relativeL2:g4} >= 0.015");
        Fixtures.AssertClose(expected, actual, 0, 0.02 * expected.abs().max().item<float>(), "bf16 forward");
    }

    [Fact]
    public void StateDictMatchesCheckpointHeader()
    {
        var dir = Fixtures.PathOf("flux-tiny", "transformer");
        using var model = new FluxTransformer2DModel(FluxTransformer2DConfig.Load(Path.Combine(dir, "config.json")));
        using var file = SafeTensorsFile.Open(Path.Combine(dir, "diffusion_pytorch_model.safetensors"));
        var actual = model.state_dict().ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.shape));
        var expected = file.Tensors.ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.Shape));
        Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal), actual.OrderBy(kv => kv.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void SchnellConfigHasNoGuidanceEmbedder()
    {
        var config = FluxTransformer2DConfig.Load(Fixtures.PathOf("flux-tiny", "transformer", "config.json"));
        config.GuidanceEmbeds = false;
        using var model = new FluxTransformer2DModel(config);
        var keys = model.state_dict().Keys.ToList();
        Assert.DoesNotContain(keys, k => k.Contains("guidance_embedder"));
        Assert.Contains("time_text_embed.timestep_embedder.linear_1.weight", keys);
        Assert.Contains("time_text_embed.text_embedder.linear_2.bias", keys);
    }

    [Fact]
    public void GuidanceMustMatchTheModel()
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var config = FluxTransformer2DConfig.Load(Fixtures.PathOf("flux-tiny", "transformer", "config.json"));
        using var dev = new FluxTransformer2DModel(config);
        config.GuidanceEmbeds = false;
        using var schnell = new FluxTransformer2DModel(config);
        var (hidden, text, pooled, t) = (torch.randn(1, 4, 64), torch.randn(1, 3, 32), torch.randn(1, 32), torch.full([1], 0.5f));
        var (imgIds, txtIds, guidance) = (FluxLatents.PrepareLatentImageIds(2, 2), FluxLatents.TextIds(3), torch.full([1], 3.5f));

        Assert.Equal(new long[] { 1, 4, 64 }, schnell.forward(hidden, text, pooled, t, imgIds, txtIds, null).shape);
        Assert.Equal("GuidanceNotSupported", Assert.Throws<DiffusionException>(() => schnell.forward(hidden, text, pooled, t, imgIds, txtIds, guidance)).ErrorId);
        Assert.Equal("GuidanceRequired", Assert.Throws<DiffusionException>(() => dev.forward(hidden, text, pooled, t, imgIds, txtIds, null)).ErrorId);
    }

    [Fact]
    public void DefaultConfigIsDiffusers()
    {
        // diffusers' FluxTransformer2DModel defaults: FLUX.1's shape, guidance_embeds false (FLUX.1-dev's config.json sets it).
        var config = JsonSerializer.Deserialize<FluxTransformer2DConfig>("{}")!;
        Assert.Equal((1, 64, 19, 38, 128, 24, 4096, 768, false), (config.PatchSize, config.InChannels, config.NumLayers, config.NumSingleLayers,
            config.AttentionHeadDim, config.NumAttentionHeads, config.JointAttentionDim, config.PooledProjectionDim, config.GuidanceEmbeds));
        Assert.Equal(new[] { 16, 56, 56 }, config.AxesDimsRope);
        Assert.Equal(3072, config.InnerDim);
    }

    [Fact]
    public void InvalidConfigIsReported()
    {
        var path = Path.Combine(Path.GetTempPath(), $"flux-config-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """{"attention_head_dim": 16, "axes_dims_rope": [4, 4, 4]}""");
        try
        {
            var e = Assert.Throws<DiffusionException>(() => FluxTransformer2DConfig.Load(path));
            Assert.Equal("ModelConfigInvalid", e.ErrorId);
            Assert.Contains("attention_head_dim", e.Message);
        }
        finally { File.Delete(path); }
        Assert.Equal("ModelConfigNotFound", Assert.Throws<DiffusionException>(() => FluxTransformer2DConfig.Load(path)).ErrorId);
    }

    [Fact]
    public void PackAndUnpackRoundTrip()
    {
        var latents = torch.randn(2, 16, 8, 12, generator: new Generator(7));
        var packed = FluxLatents.PackLatents(latents);
        Assert.Equal(new long[] { 2, 4 * 6, 64 }, packed.shape);
        // Token (r, c) holds the 2x2 patch at rows 2r..2r+1, columns 2c..2c+1, channel-major: index ch*4 + dy*2 + dx.
        Assert.Equal(latents[1, 5, 2 * 3 + 1, 2 * 4 + 0].item<float>(), packed[1, 3 * 6 + 4, 5 * 4 + 1 * 2 + 0].item<float>());
        var unpacked = FluxLatents.UnpackLatents(packed, 8 * VaeScaleFactor, 12 * VaeScaleFactor, VaeScaleFactor);
        Fixtures.AssertClose(latents, unpacked, 0, 0, "unpack(pack(x))");
        Assert.Throws<DiffusionException>(() => FluxLatents.UnpackLatents(packed, 64, 64, VaeScaleFactor));
    }

    [Fact]
    public void LatentImageIdsAreRowAndColumn()
    {
        var ids = FluxLatents.PrepareLatentImageIds(2, 3);
        var expected = torch.tensor(new float[] { 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2 }).reshape(6, 3);
        Fixtures.AssertClose(expected, ids, 0, 0, "image ids");
        Assert.Equal(new long[] { 5, 3 }, FluxLatents.TextIds(5).shape);
    }

    [Theory]
    [InlineData(1024, 1024, 1024, 1024, false)]
    [InlineData(128, 64, 128, 64, false)]
    [InlineData(1000, 1030, 992, 1024, true)]
    [InlineData(31, 17, 16, 16, true)]
    public void RoundSizeFloorsToMultiplesOf16(int height, int width, int expectedH, int expectedW, bool expectedChanged)
    {
        var (h, w) = FluxLatents.RoundSize(height, width, VaeScaleFactor, out bool changed);
        Assert.Equal((expectedH, expectedW, expectedChanged), (h, w, changed));
        Assert.Equal((h / VaeScaleFactor, w / VaeScaleFactor), FluxLatents.LatentSize(height, width, VaeScaleFactor));
    }

    [Fact]
    public void RoundSizeRejectsTooSmallImages()
    {
        var e = Assert.Throws<DiffusionException>(() => FluxLatents.RoundSize(15, 64, VaeScaleFactor, out _));
        Assert.Equal("ImageSizeTooSmall", e.ErrorId);
    }

    /// <summary>
    /// FlowMatchEulerDiscreteScheduler.set_timesteps as FluxPipeline calls it: sigmas = linspace(1, 1/N, N) cast to
    /// float32, exponential time shift with mu = calculate_shift(image_seq_len, 256, 4096, 0.5, 1.15) computed in float32
    /// (numpy), then a final 0.
    /// </summary>
    private static float[] FlowMatchSigmas(int steps, int imageSeqLen)
    {
        double m = (1.15 - 0.5) / (4096 - 256);
        double b = 0.5 - m * 256;
        double mu = imageSeqLen * m + b;
        float expMu = (float)Math.Exp(mu);
        double step = steps > 1 ? (1.0 / steps - 1.0) / (steps - 1) : 0;
        var sigmas = new float[steps + 1];
        for (int i = 0; i < steps; i++)
        {
            float s = (float)(i == steps - 1 && steps > 1 ? 1.0 / steps : i * step + 1.0); // numpy linspace
            sigmas[i] = expMu / (expMu + (1f / s - 1f));
        }
        return sigmas;
    }

    private void Report(string what, Tensor expected, Tensor actual)
    {
        using var e = expected.to(ScalarType.Float64);
        using var a = actual.to(ScalarType.Float64);
        using var diff = (a - e).abs();
        double maxAbs = diff.max().item<double>();
        double scale = e.abs().max().item<double>();
        double relL2 = ((a - e).norm().item<double>()) / e.norm().item<double>();
        _output.WriteLine($"{what}: max |diff| {maxAbs:g4}, max |expected| {scale:g4}, relative L2 {relL2:g4}");
    }
}
