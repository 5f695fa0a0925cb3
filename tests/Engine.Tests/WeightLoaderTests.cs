using System.Text.Json;
using Diffusion.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace Diffusion.Engine.Tests;

public class WeightLoaderTests
{
    /// <summary>state_dict keys: fc1.weight [3,4], fc1.bias [3], fc2.weight [2,3], fc2.bias [2].</summary>
    private static nn.Module SmallModel() => nn.Sequential(("fc1", nn.Linear(4, 3)), ("act", nn.ReLU()), ("fc2", nn.Linear(3, 2)));

    private static Dictionary<string, Tensor> Weights(int seed = 7)
    {
        var g = torch.manual_seed(seed);
        return new Dictionary<string, Tensor>
        {
            ["fc1.weight"] = torch.randn(new long[] { 3, 4 }, generator: g),
            ["fc1.bias"] = torch.randn(new long[] { 3 }, generator: g),
            ["fc2.weight"] = torch.randn(new long[] { 2, 3 }, generator: g),
            ["fc2.bias"] = torch.randn(new long[] { 2 }, generator: g),
        };
    }

    private static Dictionary<string, Tensor> Pick(Dictionary<string, Tensor> all, params string[] keys) => keys.ToDictionary(k => k, k => all[k]);

    /// <summary>Writes the weights as two shards plus a diffusers-style index.</summary>
    private static void WriteSharded(string dir, Dictionary<string, Tensor> w, string prefix = "diffusion_pytorch_model")
    {
        var shard1 = $"{prefix}-00001-of-00002.safetensors";
        var shard2 = $"{prefix}-00002-of-00002.safetensors";
        SafeTensorsWriter.Save(Path.Combine(dir, shard1), Pick(w, "fc1.weight", "fc1.bias"));
        SafeTensorsWriter.Save(Path.Combine(dir, shard2), Pick(w, "fc2.weight", "fc2.bias"));
        var index = new
        {
            metadata = new { total_size = w.Values.Sum(t => t.NumberOfElements * t.ElementSize) },
            weight_map = new Dictionary<string, string>
            {
                ["fc1.bias"] = shard1, ["fc1.weight"] = shard1, ["fc2.bias"] = shard2, ["fc2.weight"] = shard2,
            },
        };
        File.WriteAllText(Path.Combine(dir, $"{prefix}.safetensors.index.json"), JsonSerializer.Serialize(index));
    }

    private static void AssertLoaded(nn.Module model, Dictionary<string, Tensor> expected)
    {
        var state = model.state_dict();
        Assert.Equal(expected.Keys.Order(), state.Keys.Order());
        foreach (var (key, value) in expected)
            Assert.True(value.to(ScalarType.Float32).eq(state[key]).all().item<bool>(), $"{key} was not loaded exactly");
    }

    [Fact]
    public void LoadsShardedWeightsThroughTheIndex()
    {
        using var dir = new TempDirectory();
        var w = Weights();
        WriteSharded(dir.Path, w);
        Assert.Equal(2, WeightLoader.FindWeightFiles(dir.Path).Count);
        var model = SmallModel();
        WeightLoader.LoadInto(model, dir.Path, CPU, ScalarType.Float32);
        AssertLoaded(model, w);
        using var x = torch.ones(1, 4);
        using var y = ((nn.Module<Tensor, Tensor>)model).forward(x);
        using var expected = torch.nn.functional.linear(torch.nn.functional.relu(torch.nn.functional.linear(x, w["fc1.weight"], w["fc1.bias"])), w["fc2.weight"], w["fc2.bias"]);
        Fixtures.AssertClose(expected, y, 0, 0, "forward after loading");
    }

    [Fact]
    public void LoadsASingleFileAndCastsHalfToFloat()
    {
        using var dir = new TempDirectory();
        var half = Weights().ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float16));
        SafeTensorsWriter.Save(dir.File("diffusion_pytorch_model.safetensors"), half);
        var model = SmallModel();
        WeightLoader.LoadInto(model, dir.Path, CPU, ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, model.state_dict()["fc1.weight"].dtype);
        AssertLoaded(model, half);
    }

    [Fact]
    public void PrefersFullPrecisionOverVariants()
    {
        using var dir = new TempDirectory();
        var w = Weights();
        SafeTensorsWriter.Save(dir.File("diffusion_pytorch_model.fp16.safetensors"), w);
        SafeTensorsWriter.Save(dir.File("diffusion_pytorch_model.safetensors"), w);
        Assert.Equal(new[] { dir.File("diffusion_pytorch_model.safetensors") }, WeightLoader.FindWeightFiles(dir.Path));

        using var sharded = new TempDirectory();
        WriteSharded(sharded.Path, w, "diffusion_pytorch_model.fp16"); // sorts before the plain index
        WriteSharded(sharded.Path, w);
        Assert.All(WeightLoader.FindWeightFiles(sharded.Path), f => Assert.DoesNotContain(".fp16", f));

        // diffusers 0.40 without a variant loads only non-variant files: a folder of fp16 files alone is refused, naming -Variant.
        using var onlyVariant = new TempDirectory();
        SafeTensorsWriter.Save(onlyVariant.File("diffusion_pytorch_model.fp16.safetensors"), w);
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.FindWeightFiles(onlyVariant.Path));
        Assert.Equal("WeightsOnlyVariant", e.ErrorId);
        Assert.Contains("-Variant fp16", e.Message);
        Assert.Equal(new[] { onlyVariant.File("diffusion_pytorch_model.fp16.safetensors") }, WeightLoader.FindWeightFiles(onlyVariant.Path, "fp16"));
    }

    [Fact]
    public void MissingShardIsNamed()
    {
        using var dir = new TempDirectory();
        WriteSharded(dir.Path, Weights());
        File.Delete(dir.File("diffusion_pytorch_model-00002-of-00002.safetensors"));
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.LoadInto(SmallModel(), dir.Path, CPU, ScalarType.Float32));
        Assert.Equal("WeightShardNotFound", e.ErrorId);
        Assert.Contains("diffusion_pytorch_model-00002-of-00002.safetensors", e.Message);
    }

    [Theory]
    [InlineData("{\"weight_map\": {}}", "empty")]
    [InlineData("{\"weight_map\": {\"fc1.weight\": \"../elsewhere.safetensors\"}}", "not a file name")]
    [InlineData("{\"weight_map\": {\"fc1.weight\": 3}}", "not a file name")]
    [InlineData("{\"metadata\": {}}", "no \"weight_map\"")]
    [InlineData("[\"weight_map\"]", "no \"weight_map\"")]
    [InlineData("{\"weight_map\": ", "not valid")]
    public void CorruptIndexIsRefused(string json, string because)
    {
        using var dir = new TempDirectory();
        var index = dir.File("diffusion_pytorch_model.safetensors.index.json");
        File.WriteAllText(index, json);
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.FindWeightFiles(dir.Path));
        Assert.Equal("WeightIndexCorrupt", e.ErrorId);
        Assert.Contains(index, e.Message);
        Assert.Contains(because, e.Message);
    }

    [Theory]
    [InlineData("pytorch_model.bin")]
    [InlineData("model.ckpt")]
    public void PickleOnlyFolderIsRefused(string file)
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File(file), [0x80, 0x02]);
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.LoadInto(SmallModel(), dir.Path, CPU, ScalarType.Float32));
        Assert.Equal("PickleWeightsRefused", e.ErrorId);
        Assert.Contains(file, e.Message);
    }

    [Fact]
    public void EmptyFolderHasNoWeights()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.FindWeightFiles(dir.Path));
        Assert.Equal("WeightsNotFound", e.ErrorId);
    }

    [Fact]
    public void MissingAndUnexpectedKeysAreNamed()
    {
        using var dir = new TempDirectory();
        var w = Pick(Weights(), "fc1.weight", "fc1.bias", "fc2.weight");
        w["fc3.weight"] = torch.zeros(1);
        SafeTensorsWriter.Save(dir.File("model.safetensors"), w);
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.LoadInto(SmallModel(), dir.Path, CPU, ScalarType.Float32));
        Assert.Equal("WeightKeysMismatch", e.ErrorId);
        Assert.Contains("missing 1 weight(s): fc2.bias", e.Message);
        Assert.Contains("unexpected 1 weight(s): fc3.weight", e.Message);
    }

    [Fact]
    public void WrongShapeIsNamedAndTheModelIsLeftAsItWas()
    {
        using var dir = new TempDirectory();
        var w = Weights();
        w["fc2.weight"] = torch.zeros(2, 5);
        SafeTensorsWriter.Save(dir.File("model.safetensors"), w);
        var model = SmallModel();
        using var before = model.state_dict()["fc1.weight"].clone();
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.LoadInto(model, dir.Path, CPU, ScalarType.Float32));
        Assert.Equal("WeightShapeMismatch", e.ErrorId);
        Assert.Contains("'fc2.weight'", e.Message);
        Assert.Contains("[2,5]", e.Message);
        Assert.Contains("[2,3]", e.Message);
        Assert.True(before.eq(model.state_dict()["fc1.weight"]).all().item<bool>(), "fc1.weight changed although loading failed");
    }

    [Fact]
    public void IntegerWeightForAFloatParameterIsRefused()
    {
        using var dir = new TempDirectory();
        var w = Weights();
        w["fc1.bias"] = torch.zeros(new long[] { 3 }, ScalarType.Int64);
        SafeTensorsWriter.Save(dir.File("model.safetensors"), w);
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.LoadInto(SmallModel(), dir.Path, CPU, ScalarType.Float32));
        Assert.Equal("WeightDTypeMismatch", e.ErrorId);
        Assert.Contains("'fc1.bias'", e.Message);
    }

    [Fact]
    public void KeyInTwoShardsIsRefused()
    {
        using var dir = new TempDirectory();
        var w = Weights();
        WriteSharded(dir.Path, w);
        SafeTensorsWriter.Save(dir.File("diffusion_pytorch_model-00002-of-00002.safetensors"), Pick(w, "fc1.bias", "fc2.weight", "fc2.bias"));
        var e = Assert.Throws<DiffusionException>(() => WeightLoader.LoadInto(SmallModel(), dir.Path, CPU, ScalarType.Float32));
        Assert.Equal("WeightKeyDuplicated", e.ErrorId);
        Assert.Contains("'fc1.bias'", e.Message);
    }
}
