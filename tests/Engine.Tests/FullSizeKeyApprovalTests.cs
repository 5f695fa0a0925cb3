using Diffusion.Bench;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// Real models at full size, this engine's module against diffusers' and transformers': the state-dict keys and shapes
/// they build from the published configs (TestData/NAME-keys.json, from TestData/NAME-config.json, both made by
/// bench/approval/full_size_keys.py in the cpuref rig). Both sides are built on the meta device (no weights, no
/// memory), so a renamed, missing or reshaped tensor shows at the real size, not only on the tiny fixtures. The reference
/// lists each tied tensor once, as a saved checkpoint (and so a header-only folder) holds it, with its aliases apart.
/// </summary>
[Collection(nameof(MetaDeviceCollection))]
public sealed class FullSizeKeyApprovalTests
{
    private static string TestData([CallerFilePath] string thisFile = "") => Path.Combine(Path.GetDirectoryName(thisFile)!, "TestData");

    [Theory]
    [InlineData("sd15-unet", "UNet2DConditionModel", 859_520_964L)]
    [InlineData("sd15-vae", "AutoencoderKL", 83_653_863L)]
    [InlineData("clip-l-text", "CLIPTextModel", 123_060_480L)]
    [InlineData("flux-dev-transformer", "FluxTransformer2DModel", 11_901_408_320L)]
    [InlineData("t5-xxl-encoder", "T5EncoderModel", 4_762_310_656L)]
    public void ModelHasTheReferenceKeysAndShapesAtFullSize(string name, string className, long parameters)
    {
        using var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestData(), $"{name}-keys.json")));
        var expected = reference.RootElement.GetProperty("tensors").EnumerateObject()
            .ToDictionary(p => p.Name, p => string.Join(",", p.Value.EnumerateArray().Select(d => d.GetInt64())));
        var ours = HeaderOnlyCheckpoint.Shapes(className, Path.Combine(TestData(), $"{name}-config.json"))
            .ToDictionary(t => t.Name, t => string.Join(",", t.Shape));
        Assert.Empty(expected.Keys.Except(ours.Keys).Order().Take(5)); // keys the reference has that this module lacks
        Assert.Empty(ours.Keys.Except(expected.Keys).Order().Take(5)); // and the other way round
        foreach (var (key, shape) in expected) Assert.True(ours[key] == shape, $"{key}: reference [{shape}], here [{ours[key]}]");
        foreach (var tied in reference.RootElement.GetProperty("tied").EnumerateObject()) // T5: encoder.embed_tokens.weight is shared.weight
            Assert.True(ours.ContainsKey(tied.Value.GetString()!), $"{tied.Name} is tied to {tied.Value}, which this module lacks");
        Assert.Equal(parameters, reference.RootElement.GetProperty("parameters").GetInt64());
        Assert.Equal(parameters, ours.Values.Sum(s => s.Split(',').Aggregate(1L, (a, d) => a * long.Parse(d))));
    }
}
