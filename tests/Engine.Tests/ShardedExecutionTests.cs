using Diffusion.Engine.Families;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Placement;
using Diffusion.Engine.Sharding;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// Models placed unit by unit with the dispatch hooks give exactly the unsharded output. This machine has only a
/// CPU, so every unit runs on the CPU: some resident, some offloaded to "cpu" (host copies streamed in for each call)
/// and some to "disk" (read from the safetensors file for each call). Moving activations between two different GPUs
/// needs two GPUs; that is left to a GPU session and not faked here.
/// </summary>
public class ShardedExecutionTests
{
    private static readonly Device Cpu = torch.CPU;

    /// <summary>Same shape and bit-for-bit the same values.</summary>
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static PlacedModel Place<T>(T model, string dir, UnitSpec[] units, Func<string, string>? moduleKey = null) where T : nn.Module
    {
        model.eval();
        return ShardedLoader.Load(model, WeightLoader.FindWeightFiles(dir), ScalarType.Float32, moduleKey, units, Cpu, _ => Cpu);
    }

    /// <summary>Every unit of the layout, with the given ones offloaded (streamed) to the device named.</summary>
    private static UnitSpec[] Units(string dir, string className, Dictionary<string, string> offloaded)
    {
        var layout = ModuleLayouts.FromComponentFolder(dir, className, "float32");
        foreach (var k in offloaded.Keys) Assert.NotNull(layout.Find(k));
        return layout.Units.Select(u => offloaded.TryGetValue(u.Path, out var d) ? new UnitSpec(u.Path, d, true) : new UnitSpec(u.Path, "cpu", false)).ToArray();
    }

    [Fact]
    public void FluxTransformerSplitAcrossCpuAndDiskEqualsTheUnshardedRun()
    {
        var dir = Fixtures.PathOf("flux-tiny", "transformer");
        using var plain = FixtureModels.Load<FluxTransformer2DModel>("flux-tiny", "transformer");
        var config = FluxTransformer2DConfig.Load(Path.Combine(dir, "config.json"));
        using var sharded = new FluxTransformer2DModel(config);
        var units = Units(dir, "FluxTransformer2DModel", new()
        {
            ["x_embedder"] = "disk", ["transformer_blocks.0"] = "cpu", ["transformer_blocks.1"] = "disk",
            ["single_transformer_blocks.1"] = "cpu", ["proj_out"] = "disk",
        });
        using var placed = Place(sharded, dir, units);

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var gen = new Generator(7, Cpu);
        var hidden = torch.randn([2, 16, 64], generator: gen);
        var context = torch.randn([2, 5, 32], generator: gen);
        var pooled = torch.randn([2, 32], generator: gen);
        var t = torch.tensor(new[] { 0.75f, 0.25f });
        var imgIds = FluxLatents.PrepareLatentImageIds(4, 4);
        var txtIds = FluxLatents.TextIds(5);
        var guidance = torch.full([2], 3.5f);

        var expected = plain.forward(hidden, context, pooled, t, imgIds, txtIds, guidance);
        for (int run = 1; run <= 2; run++)
        {
            var actual = sharded.forward(hidden, context, pooled, t, imgIds, txtIds, guidance);
            Assert.True(Same(expected, actual), $"run {run}: sharded output differs, max |diff| {(expected - actual).abs().max().item<float>()}");
        }

        var byPath = placed.Placements.ToDictionary(p => p.Path);
        Assert.Equal(units.Length, byPath.Count);
        foreach (var p in byPath.Values) Assert.Equal(2, p.Calls); // every unit's hook ran once per forward
        foreach (var (path, device) in new[] { ("x_embedder", "disk"), ("transformer_blocks.0", "cpu"), ("transformer_blocks.1", "disk"), ("single_transformer_blocks.1", "cpu"), ("proj_out", "disk") })
        {
            var p = byPath[path];
            Assert.Equal(device, p.Device);
            Assert.NotNull(p.Streamed);
            Assert.Equal(2, p.Streamed!.TimesIn);   // weights came in for each call ...
            Assert.False(p.Streamed.IsIn);           // ... and went out after it
        }
        // Disk units are read ahead on a worker thread while the unit before them computes: every call but the very
        // first of the first disk unit found its weights already read. Host copies (cpu) have nothing to read.
        Assert.Equal(1, byPath["x_embedder"].Streamed!.TimesPrefetched);
        Assert.Equal(2, byPath["transformer_blocks.1"].Streamed!.TimesPrefetched);
        Assert.Equal(2, byPath["proj_out"].Streamed!.TimesPrefetched);
        Assert.Equal(0, byPath["transformer_blocks.0"].Streamed!.TimesPrefetched);
        Assert.Equal(0, byPath["transformer_blocks.1"].Streamed!.HostBytes); // disk: read from the file, no copy in memory
        Assert.True(byPath["transformer_blocks.0"].Streamed!.HostBytes > 0);
        // At rest an offloaded unit's parameters are empty; resident units keep theirs.
        Assert.All(sharded.transformer_blocks[1].parameters(), p => Assert.Equal(0, p.numel()));
        Assert.All(sharded.single_transformer_blocks[1].parameters(), p => Assert.Equal(0, p.numel()));
        Assert.All(sharded.single_transformer_blocks[0].parameters(), p => Assert.True(p.numel() > 0));
        Assert.Equal(0, sharded.x_embedder.weight!.numel());
    }

    [Fact]
    public void UNetSplitAcrossCpuAndDiskEqualsTheUnshardedRun()
    {
        var dir = Fixtures.PathOf("sd-tiny", "unet");
        using var plain = FixtureModels.Load<UNet2DConditionModel>("sd-tiny", "unet");
        using var sharded = new UNet2DConditionModel(UNet2DConditionConfig.Load(Path.Combine(dir, "config.json")));
        var units = Units(dir, "UNet2DConditionModel", new()
        {
            ["conv_in"] = "disk", ["down_blocks.1"] = "cpu", ["mid_block"] = "disk", ["up_blocks.0"] = "cpu", ["up_blocks.2"] = "disk",
        });
        using var placed = Place(sharded, dir, units);

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var gen = new Generator(11, Cpu);
        var latents = torch.randn([2, 4, 16, 16], generator: gen);
        var text = torch.randn([2, 77, 64], generator: gen);
        var t = torch.tensor(new long[] { 801, 401 });
        var expected = plain.forward(latents, t, text);
        var actual = sharded.forward(latents, t, text);
        Assert.True(Same(expected, actual), $"sharded UNet output differs, max |diff| {(expected - actual).abs().max().item<float>()}");
        var byPath = placed.Placements.ToDictionary(p => p.Path);
        Assert.All(byPath.Values, p => Assert.Equal(1, p.Calls));
        Assert.Equal(1, byPath["mid_block"].Streamed!.TimesIn);
        Assert.False(byPath["up_blocks.0"].Streamed!.IsIn);
        Assert.All(sharded.mid_block!.parameters(), p => Assert.Equal(0, p.numel()));
    }

    [Fact]
    public void TextEncodersSplitAcrossCpuAndDiskEqualTheUnshardedRun()
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var ids = torch.tensor(new long[] { 3, 17, 40, 2, 0, 0, 5, 9, 1, 0 }, [2, 5]);

        var t5Dir = Fixtures.PathOf("flux-tiny", "text_encoder_2");
        var t5Config = T5Config.Load(Path.Combine(t5Dir, "config.json"));
        using var t5Plain = new T5EncoderModel(t5Config);
        WeightLoader.LoadInto(t5Plain, t5Dir, Cpu, ScalarType.Float32);
        using var t5 = new T5EncoderModel(t5Config);
        using var t5Placed = Place(t5, t5Dir, Units(t5Dir, "T5EncoderModel", new() { ["encoder.block.0"] = "disk", ["encoder.final_layer_norm"] = "cpu" }));
        Assert.True(Same(t5Plain.forward(ids), t5.forward(ids)), "sharded T5 output differs");

        var clipDir = Fixtures.PathOf("flux-tiny", "text_encoder");
        var clipConfig = CLIPTextConfig.Load(Path.Combine(clipDir, "config.json"));
        using var clipPlain = new CLIPTextModel(clipConfig);
        WeightLoader.LoadInto(clipPlain, clipDir, Cpu, ScalarType.Float32, CLIPTextModel.ModuleKey);
        using var clip = new CLIPTextModel(clipConfig);
        using var clipPlaced = Place(clip, clipDir, Units(clipDir, "CLIPTextModel", new() { ["embeddings"] = "disk", ["encoder.layers.1"] = "cpu" }), CLIPTextModel.ModuleKey);
        var clipIds = torch.tensor(new long[] { 49406, 320, 1125, 49407, 49407, 49406, 1929, 49407, 49407, 49407 }, [2, 5]) % clipConfig.VocabSize;
        var expected = clipPlain.forward(clipIds);
        var actual = clip.forward(clipIds);
        Assert.True(Same(expected.LastHiddenState, actual.LastHiddenState), "sharded CLIP hidden states differ");
        Assert.True(Same(expected.PooledOutput, actual.PooledOutput), "sharded CLIP pooled output differs");
    }

    [Fact]
    public void ModelOffloadBringsTheWholeModelInAndSendsThePreviousOneBack()
    {
        var dir = Fixtures.PathOf("flux-tiny", "transformer");
        using var plain = FixtureModels.Load<FluxTransformer2DModel>("flux-tiny", "transformer");
        using var model = new FluxTransformer2DModel(FluxTransformer2DConfig.Load(Path.Combine(dir, "config.json")));
        model.eval();
        var chain = new OffloadChain();
        var layout = ModuleLayouts.FromComponentFolder(dir, "FluxTransformer2DModel", "float32");
        using var placed = ShardedLoader.LoadWhole(model, WeightLoader.FindWeightFiles(dir), ScalarType.Float32, null, Cpu, layout.Units.Select(u => u.Path), chain);
        Assert.Equal(0, model.proj_out.weight!.numel());
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(3, Cpu);
        var args = (torch.randn([1, 16, 64], generator: gen), torch.randn([1, 4, 32], generator: gen), torch.randn([1, 32], generator: gen));
        var t = torch.tensor(new[] { 0.5f });
        var imgIds = FluxLatents.PrepareLatentImageIds(4, 4);
        var txtIds = FluxLatents.TextIds(4);
        var g = torch.full([1], 3.5f);
        Assert.True(Same(plain.forward(args.Item1, args.Item2, args.Item3, t, imgIds, txtIds, g),
            model.forward(args.Item1, args.Item2, args.Item3, t, imgIds, txtIds, g)));
        // The first unit brought the whole model in, and it stays for the next call (no streaming per step).
        Assert.Same(chain.Active!.Whole, placed.Whole);
        Assert.True(placed.Whole!.IsIn);
        Assert.True(model.proj_out.weight!.numel() > 0);
        model.forward(args.Item1, args.Item2, args.Item3, t, imgIds, txtIds, g);
        Assert.Equal(1, placed.Whole.TimesIn);
        // Another model of the chain taking over sends this one back.
        using var other = new FluxTransformer2DModel(FluxTransformer2DConfig.Load(Path.Combine(dir, "config.json")));
        other.eval();
        using var otherPlaced = ShardedLoader.LoadWhole(other, WeightLoader.FindWeightFiles(dir), ScalarType.Float32, null, Cpu, layout.Units.Select(u => u.Path), chain);
        other.forward(args.Item1, args.Item2, args.Item3, t, imgIds, txtIds, g);
        Assert.False(placed.Whole.IsIn);
        Assert.All(model.parameters(), p => Assert.Equal(0, p.numel()));
    }
}
