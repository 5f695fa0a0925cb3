using System.Text.Json;
using System.Text.RegularExpressions;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Diffusion.Engine.Tests;

/// <summary>CLIPTextModel and T5EncoderModel against transformers 5.17's outputs in the sd-tiny / flux-tiny fixtures.</summary>
public class TextEncoderTests(ITestOutputHelper output)
{
    private const double Rtol = 1e-4, Atol = 1e-5;

    private static CLIPTextModel LoadClip(string pipeline, ScalarType dtype = ScalarType.Float32) =>
        FixtureModels.Load<CLIPTextModel>(pipeline, "text_encoder", dtype);

    private static T5EncoderModel LoadT5(ScalarType dtype = ScalarType.Float32) =>
        FixtureModels.Load<T5EncoderModel>("flux-tiny", "text_encoder_2", dtype);

    private static double MaxAbsDiff(Tensor expected, Tensor actual)
    {
        using var diff = (actual.to(ScalarType.Float64) - expected.to(ScalarType.Float64)).abs();
        return diff.max().item<double>();
    }

    private static double MaxAbs(Tensor t)
    {
        using var a = t.to(ScalarType.Float64).abs();
        return a.max().item<double>();
    }

    private void Check(Tensor expected, Tensor actual, string what)
    {
        output.WriteLine($"{what}: max |diff| {MaxAbsDiff(expected, actual):g3} (max |expected| {MaxAbs(expected):g3})");
        Fixtures.AssertClose(expected, actual, Rtol, Atol, what);
    }

    /// <summary>
    /// The runs of sd-tiny-refs.json. Python's json writes bare -Infinity (a scheduler's lambda_min_clipped), which
    /// System.Text.Json refuses, so those literals are read as null: only the run files are needed here.
    /// </summary>
    private static IEnumerable<JsonElement> SdRuns()
    {
        var text = File.ReadAllText(Fixtures.PathOf("sd-tiny-refs.json"));
        text = Regex.Replace(text, @"(?<=[:\[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])", "null");
        return JsonDocument.Parse(text).RootElement.Clone().EnumerateArray();
    }

    [Fact]
    public void ClipLastHiddenStateMatchesSdPromptEmbeds()
    {
        using var _ = torch.no_grad();
        using var clip = LoadClip("sd-tiny");
        int runs = 0;
        foreach (var run in SdRuns())
        {
            var file = run.GetProperty("file").GetString()!;
            var refs = Fixtures.Tensors(file);
            using var result = clip.forward(refs["input_ids"]);
            Check(refs["prompt_embeds"], result.LastHiddenState, $"{file} prompt_embeds");
            foreach (var t in refs.Values) t.Dispose();
            runs++;
        }
        Assert.Equal(6, runs);
    }

    [Theory]
    [InlineData("flux-tiny-ref-a.safetensors")]
    [InlineData("flux-tiny-ref-b.safetensors")]
    public void FluxClipPooledAndT5MatchReferences(string file)
    {
        using var _ = torch.no_grad();
        var refs = Fixtures.Tensors(file);
        using (var clip = LoadClip("flux-tiny"))
        using (var result = clip.forward(refs["clip_input_ids"]))
            Check(refs["pooled_prompt_embeds"], result.PooledOutput, $"{file} pooled_prompt_embeds (CLIP)");
        using (var t5 = LoadT5())
        using (var embeds = t5.forward(refs["t5_input_ids"]))
            Check(refs["prompt_embeds"], embeds, $"{file} prompt_embeds (T5)");
        foreach (var t in refs.Values) t.Dispose();
    }

    /// <summary>bfloat16 keeps 8 mantissa bits (relative step 2^-8), float16 keeps 11 (2^-11); a few layers add a few steps.</summary>
    [Theory]
    [InlineData(ScalarType.BFloat16, 2e-2)]
    [InlineData(ScalarType.Float16, 4e-3)]
    public void ClipInReducedPrecisionStaysNearFloat32(ScalarType dtype, double toleranceOfScale)
    {
        using var _ = torch.no_grad();
        var refs = Fixtures.Tensors("sd-tiny-ref-pndm.safetensors");
        using var full = LoadClip("sd-tiny");
        using var reduced = LoadClip("sd-tiny", dtype);
        using var expected = full.forward(refs["input_ids"]);
        using var actual = reduced.forward(refs["input_ids"]);
        Assert.Equal(dtype, actual.LastHiddenState.dtype);
        foreach (var (name, e, a) in new[] { ("last_hidden_state", expected.LastHiddenState, actual.LastHiddenState), ("pooled", expected.PooledOutput, actual.PooledOutput) })
        {
            double diff = MaxAbsDiff(e, a), scale = MaxAbs(e);
            output.WriteLine($"CLIP {dtype} {name}: max |diff| {diff:g3} = {diff / scale:g3} of max |float32| {scale:g3}");
            Assert.True(diff <= toleranceOfScale * scale, $"CLIP {dtype} {name}: max |diff| {diff:g3} exceeds {toleranceOfScale} x {scale:g3}");
        }
        foreach (var t in refs.Values) t.Dispose();
    }

    [Theory]
    [InlineData(ScalarType.BFloat16, 2e-2)]
    [InlineData(ScalarType.Float16, 4e-3)]
    public void T5InReducedPrecisionStaysNearFloat32(ScalarType dtype, double toleranceOfScale)
    {
        using var _ = torch.no_grad();
        var refs = Fixtures.Tensors("flux-tiny-ref-b.safetensors");
        using var full = LoadT5();
        using var reduced = LoadT5(dtype);
        // transformers keeps the feed-forward output projection (wo) in float32 when loading T5 in float16, not in bfloat16.
        var woDtype = reduced.encoder.block[0].layer[1].state_dict()["DenseReluDense.wo.weight"].dtype;
        Assert.Equal(dtype == ScalarType.Float16 ? ScalarType.Float32 : dtype, woDtype);
        using var expected = full.forward(refs["t5_input_ids"]);
        using var actual = reduced.forward(refs["t5_input_ids"]);
        Assert.Equal(dtype, actual.dtype);
        double diff = MaxAbsDiff(expected, actual), scale = MaxAbs(expected);
        output.WriteLine($"T5 {dtype}: max |diff| {diff:g3} = {diff / scale:g3} of max |float32| {scale:g3}");
        Assert.True(diff <= toleranceOfScale * scale, $"T5 {dtype}: max |diff| {diff:g3} exceeds {toleranceOfScale} x {scale:g3}");
        foreach (var t in refs.Values) t.Dispose();
    }

    /// <summary>clip skip n gives final_layer_norm of the output n layers before the last: a model cut to N - n layers with the same weights.</summary>
    [Fact]
    public void ClipSkipEqualsFinalNormOfEarlierLayer()
    {
        using var _ = torch.no_grad();
        var refs = Fixtures.Tensors("sd-tiny-ref-pndm.safetensors");
        using var clip = LoadClip("sd-tiny");
        var dir = Fixtures.PathOf("sd-tiny", "text_encoder");
        var cutConfig = CLIPTextConfig.Load(Path.Combine(dir, "config.json"));
        cutConfig.NumHiddenLayers -= 1;
        using var cut = new CLIPTextModel(cutConfig);
        var source = clip.state_dict();
        foreach (var (key, dst) in cut.state_dict())
            dst.copy_(source[key]);
        cut.eval();

        using var skipped = clip.forward(refs["input_ids"], clipSkip: 1);
        using var shorter = cut.forward(refs["input_ids"]);
        using var plain = clip.forward(refs["input_ids"]);
        Fixtures.AssertClose(shorter.LastHiddenState, skipped.LastHiddenState, 0, 0, "clip skip 1 vs a model without its last layer");
        Fixtures.AssertClose(plain.PooledOutput, skipped.PooledOutput, 0, 0, "pooled output with clip skip");
        Assert.True(MaxAbsDiff(plain.LastHiddenState, skipped.LastHiddenState) > 1e-3, "clip skip 1 should change the hidden state");
        foreach (var t in refs.Values) t.Dispose();
    }

    /// <summary>With the padded tail masked out, the kept positions equal a run on the unpadded prefix (the relative bias depends only on distance).</summary>
    [Fact]
    public void T5AttentionMaskHidesPadding()
    {
        using var _ = torch.no_grad();
        var refs = Fixtures.Tensors("flux-tiny-ref-a.safetensors");
        using var t5 = LoadT5();
        var ids = refs["t5_input_ids"]; // [1, 64], padded with 0 after the EOS (1)
        long kept = ids[0].eq(1).nonzero()[0, 0].item<long>() + 1;
        Assert.True(kept < ids.shape[1], "the fixture should have padding");
        using var mask = torch.arange(ids.shape[1]).lt(kept).to(ScalarType.Int64).unsqueeze(0);
        using var masked = t5.forward(ids, mask);
        using var prefix = t5.forward(ids[.., ..(int)kept]);
        Fixtures.AssertClose(prefix, masked[.., ..(int)kept], Rtol, Atol, "masked T5 vs the unpadded prefix");
        using var unmasked = t5.forward(ids);
        Assert.True(MaxAbsDiff(prefix, unmasked[.., ..(int)kept]) > 1e-4, "without a mask the padding should be attended to");
        foreach (var t in refs.Values) t.Dispose();
    }

    [Theory]
    [InlineData("sd-tiny", "text_encoder")]
    [InlineData("flux-tiny", "text_encoder")]
    [InlineData("flux-tiny", "text_encoder_2")]
    public void StateDictKeysAndShapesEqualCheckpoint(string pipeline, string component)
    {
        var dir = Fixtures.PathOf(pipeline, component);
        var configPath = Path.Combine(dir, "config.json");
        using nn.Module model = component == "text_encoder_2"
            ? new T5EncoderModel(T5Config.Load(configPath))
            : new CLIPTextModel(CLIPTextConfig.Load(configPath));
        var modelEntries = model.state_dict().ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.shape));
        using var file = SafeTensorsFile.Open(WeightLoader.FindWeightFiles(dir).Single());
        var fileEntries = file.Tensors.ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.Shape));
        Assert.Equal(fileEntries.OrderBy(kv => kv.Key, StringComparer.Ordinal), modelEntries.OrderBy(kv => kv.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void ConfigsDefaultToTransformersDefaultsAndRejectBadFiles()
    {
        // transformers' CLIPTextConfig() and T5Config() (openai/clip-vit-base-patch32's text tower, t5-small).
        var clip = new CLIPTextConfig();
        Assert.Equal((49408L, 512L, 2048L, 512L, 12, 8, "quick_gelu"), (clip.VocabSize, clip.HiddenSize, clip.IntermediateSize, clip.ProjectionDim, clip.NumHiddenLayers, clip.NumAttentionHeads, clip.HiddenAct));
        Assert.Equal((1L, 49406L, 49407L), (clip.PadTokenId, clip.BosTokenId, clip.EosTokenId));
        var t5 = new T5Config();
        Assert.Equal((32128L, 512L, 2048L, 64L, 8L, 6), (t5.VocabSize, t5.DModel, t5.DFf, t5.DKv, t5.NumHeads, t5.NumLayers));
        Assert.Equal(("relu", "relu", false), (t5.FeedForwardProj, t5.DenseActFn, t5.IsGatedAct));

        var missing = Path.Combine(Path.GetTempPath(), $"no-such-{Guid.NewGuid():N}", "config.json");
        Assert.Equal("ModelConfigNotFound", Assert.Throws<DiffusionException>(() => CLIPTextConfig.Load(missing)).ErrorId);
        Assert.Equal("ModelConfigNotFound", Assert.Throws<DiffusionException>(() => T5Config.Load(missing)).ErrorId);
        var bad = Path.GetTempFileName();
        try
        {
            File.WriteAllText(bad, "{ \"hidden_size\": \"wide\" }");
            Assert.Equal("ModelConfigInvalid", Assert.Throws<DiffusionException>(() => CLIPTextConfig.Load(bad)).ErrorId);
            File.WriteAllText(bad, "{ \"feed_forward_proj\": \"relu\" }");
            Assert.Equal("FeedForwardNotSupported", Assert.Throws<DiffusionException>(() => T5Config.Load(bad)).ErrorId);
        }
        finally
        {
            File.Delete(bad);
        }
    }
}
