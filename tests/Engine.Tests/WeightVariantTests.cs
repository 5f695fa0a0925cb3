using Diffusion.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>diffusers' variant file naming and choice (variant_compatible_siblings, _add_variant) in a component folder.</summary>
public class WeightVariantTests
{
    private static readonly Dictionary<string, Tensor> W = new() { ["a"] = torch.zeros(2) };

    /// <summary>Writes weight files; an index (*.json) names the shard that precedes it in the list.</summary>
    private static void Touch(TempDirectory dir, params string[] names)
    {
        for (int i = 0; i < names.Length; i++)
            if (names[i].EndsWith(".json", StringComparison.Ordinal))
                File.WriteAllText(dir.File(names[i]), "{\"weight_map\": {\"a\": \"" + names[i - 1] + "\"}}");
            else
                SafeTensorsWriter.Save(dir.File(names[i]), W);
    }

    [Theory]
    [InlineData("diffusion_pytorch_model.safetensors", "fp16", "diffusion_pytorch_model.fp16.safetensors")]
    [InlineData("model.safetensors", "fp16", "model.fp16.safetensors")]
    [InlineData("diffusion_pytorch_model.safetensors.index.json", "fp16", "diffusion_pytorch_model.safetensors.index.fp16.json")]
    [InlineData("model.safetensors", null, "model.safetensors")]
    public void AddVariantPutsTheVariantBeforeTheLastExtension(string name, string? variant, string expected) =>
        Assert.Equal(expected, WeightVariants.AddVariant(name, variant));

    [Fact]
    public void VariantPicksItsFilesAndFallsBackToFullPrecisionPerComponent()
    {
        TorchBackend.EnsureLoaded();
        using var both = new TempDirectory();
        Touch(both, "model.safetensors", "model.fp16.safetensors");
        Assert.Equal([both.File("model.fp16.safetensors")], WeightLoader.FindWeightFiles(both.Path, "fp16"));
        Assert.Equal([both.File("model.safetensors")], WeightLoader.FindWeightFiles(both.Path));
        using var plain = new TempDirectory();
        Touch(plain, "diffusion_pytorch_model.safetensors");
        Assert.Equal([plain.File("diffusion_pytorch_model.safetensors")], WeightLoader.FindWeightFiles(plain.Path, "fp16"));
    }

    [Fact]
    public void ShardedVariantsUseDiffusersIndexNamesNewAndLegacy()
    {
        TorchBackend.EnsureLoaded();
        using var sharded = new TempDirectory();
        Touch(sharded, "diffusion_pytorch_model-00001-of-00001.safetensors", "diffusion_pytorch_model.safetensors.index.json",
            "diffusion_pytorch_model.fp16-00001-of-00001.safetensors", "diffusion_pytorch_model.safetensors.index.fp16.json");
        Assert.Equal([sharded.File("diffusion_pytorch_model.fp16-00001-of-00001.safetensors")], WeightLoader.FindWeightFiles(sharded.Path, "fp16"));
        Assert.Equal([sharded.File("diffusion_pytorch_model-00001-of-00001.safetensors")], WeightLoader.FindWeightFiles(sharded.Path));
        using var legacy = new TempDirectory();
        Touch(legacy, "model-00001-of-00001.fp16.safetensors", "model.safetensors.fp16.index.json");
        Assert.Equal([legacy.File("model-00001-of-00001.fp16.safetensors")], WeightLoader.FindWeightFiles(legacy.Path, "fp16"));
        Assert.Equal("WeightsOnlyVariant", Assert.Throws<DiffusionException>(() => WeightLoader.FindWeightFiles(legacy.Path)).ErrorId);
    }

    [Fact]
    public void AVariantNoComponentHasIsRefusedNamingTheOnesThereAre()
    {
        TorchBackend.EnsureLoaded();
        using var a = new TempDirectory();
        using var b = new TempDirectory();
        Touch(a, "model.safetensors", "model.fp16.safetensors");
        Touch(b, "diffusion_pytorch_model.safetensors");
        WeightVariants.RequireSomewhere("model", [a.Path, b.Path], "fp16");
        var e = Assert.Throws<DiffusionException>(() => WeightVariants.RequireSomewhere("model", [a.Path, b.Path], "bf16"));
        Assert.Equal("VariantNotFound", e.ErrorId);
        Assert.Contains("fp16", e.Message);
    }
}
