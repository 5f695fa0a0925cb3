using Diffusion.Bench;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.Sharding;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// A config.json key that is absent takes diffusers' default (the model's <c>__init__</c>, e.g. diffusers
/// src/diffusers/models/unets/unet_2d_condition.py), and list-valued keys are read per block, by the typed configs,
/// which are the only readers of config.json: the activation estimate reads them too.
/// </summary>
public class ModelConfigDefaultsTests
{
    [Fact]
    public void FluxGuidanceEmbedsIsFalseWhenAbsent()
    {
        Assert.False(FluxTransformer2DConfig.FromJson("{}").GuidanceEmbeds); // diffusers: guidance_embeds: bool = False
        // FLUX.1-dev's config.json (and so the header-only FLUX.1-dev and the flux-tiny fixture) sets it.
        Assert.True(FluxTransformer2DConfig.FromJson(HeaderOnlyCheckpoint.FluxDev["transformer"].Config).GuidanceEmbeds);
        Assert.True(FluxTransformer2DConfig.Load(Fixtures.PathOf("flux-tiny", "transformer", "config.json")).GuidanceEmbeds);
    }

    [Fact]
    public void UNetAbsentKeysTakeDiffusersDefaults()
    {
        var c = UNet2DConditionConfig.FromJson("{}");
        Assert.Null(c.SampleSize);                      // sample_size = None
        Assert.Equal(1280, c.CrossAttentionDim.Single); // cross_attention_dim = 1280
        Assert.Equal(2, c.LayersPerBlock.Single);       // layers_per_block = 2
        Assert.Equal(1, c.TransformerLayersPerBlock.Single);
        Assert.Equal(8, c.AttentionHeadDim.Single);
        Assert.Equal(new[] { 320, 640, 1280, 1280 }, c.BlockOutChannels);
        Assert.Equal("UNetMidBlock2DCrossAttn", c.MidBlockType);
    }

    [Fact]
    public void UNetListValuedLayerCountsAreReadPerBlock()
    {
        var c = UNet2DConditionConfig.FromJson("""{"layers_per_block": [1, 2, 3, 2], "transformer_layers_per_block": [1, 2, 10, 1]}""");
        Assert.Equal(new[] { 1, 2, 3, 2 }, c.LayersPerBlock.PerBlock(4, "layers_per_block", c.SourcePath));
        Assert.Equal(new[] { 1, 2, 10, 1 }, c.TransformerLayersPerBlock.PerBlock(4, "transformer_layers_per_block", c.SourcePath));
        var e = Assert.Throws<DiffusionException>(() => UNet2DConditionConfig.FromJson("""{"layers_per_block": [1, 2]}""", "unet/config.json"));
        Assert.Equal("ConfigListLengthMismatch", e.ErrorId);
    }

    [Fact]
    public void VaeAbsentKeysTakeDiffusersDefaults()
    {
        var c = AutoencoderKLConfig.FromJson("{}");
        Assert.Equal(new[] { 64 }, c.BlockOutChannels);
        Assert.Equal(new[] { "DownEncoderBlock2D" }, c.DownBlockTypes);
        Assert.Equal(new[] { "UpDecoderBlock2D" }, c.UpBlockTypes);
        Assert.Equal((1, 4, 32, 32), (c.LayersPerBlock, c.LatentChannels, c.NormNumGroups, c.SampleSize.Single));
        Assert.Equal((0.18215, (double?)null, true), (c.ScalingFactor, c.ShiftFactor, c.ForceUpcast));
        Assert.Equal(1, c.ScaleFactor); // 2 ** (len(block_out_channels) - 1)
    }

    [Fact]
    public void EveryRegisteredDefaultConfigBuilds()
    {
        TorchBackend.EnsureLoaded();
        foreach (var model in ModelClasses.All.Where(m => m.ClassName != "T5EncoderModel"))
        {
            using var module = Construction.OnMeta(() => model.Build(model.DefaultConfig()));
            Assert.NotEmpty(module.state_dict());
        }
        // transformers' T5Config() is the original T5's ungated "relu" feed-forward, which this engine refuses by name.
        var e = Assert.Throws<DiffusionException>(() => T5Config.FromJson("{}"));
        Assert.Equal("FeedForwardNotSupported", e.ErrorId);
    }

    private static ActivationEstimate UNetAt512(string json) =>
        ActivationEstimator.For("UNet2DConditionModel", UNet2DConditionConfig.FromJson(json), "float16", new ActivationRequest(512, 512));

    [Fact]
    public void UNetActivationsFollowListValuedLayersPerBlock()
    {
        var scalar = UNetAt512("""{"layers_per_block": 2}""");
        Assert.Equal(scalar, UNetAt512("""{"layers_per_block": [2, 2, 2, 2]}""")); // the same model written as a list
        var deeper = UNetAt512("""{"layers_per_block": [3, 2, 2, 2]}""");
        // One more layer at the first level holds two more skip/output tensors of 320 channels x 64x64 latent pixels,
        // batch 2 (guidance), 2 bytes each, times the half-type margin 1.4: 2 * 2 * 320 * 4096 * 2 * 1.4 bytes.
        Assert.Equal(2.0 * 2 * 320 * 4096 * 2 * 1.4, deeper.Bytes - scalar.Bytes, 1.0);
    }

    [Fact]
    public void UNetActivationsFollowTransformerLayersPerBlock()
    {
        var one = UNetAt512("""{"transformer_layers_per_block": 1}""");
        Assert.Equal(one, UNetAt512("""{"transformer_layers_per_block": [1, 1, 1, 1]}"""));
        // 10 transformer layers at the first level: the transformer keeps 9 more layer outputs of 320 x 4096 while its
        // last layer runs, raising the peak from 30 to 39 C·T (batch 2, 2 bytes, margin 1.4).
        var deep = UNetAt512("""{"transformer_layers_per_block": [10, 1, 1, 1]}""");
        Assert.Equal(9.0 * 320 * 4096 * 2 * 2 * 1.4, deep.Bytes - one.Bytes, 1.0);
    }

    [Fact]
    public void FluxActivationsWithoutAConfigAreDiffusersDefaultModel()
    {
        var r = new ActivationRequest(1024, 1024);
        var none = ActivationEstimator.For("FluxTransformer2DModel", null, "bfloat16", r);
        Assert.Equal(ActivationEstimator.For("FluxTransformer2DModel", new FluxTransformer2DConfig(), "bfloat16", r), none);
        Assert.Contains("256 text", none.Note); // no guidance embedder: schnell's 256 T5 tokens
        var dev = ActivationEstimator.For("FluxTransformer2DModel", FluxTransformer2DConfig.FromJson(HeaderOnlyCheckpoint.FluxDev["transformer"].Config), "bfloat16", r);
        Assert.Contains("512 text", dev.Note);
        Assert.Equal(0, ActivationEstimator.For("AutoencoderTiny", null, "float32", r).Bytes);
    }
}
