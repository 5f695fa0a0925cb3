using Diffusion.Bench;
using Diffusion.Engine.Families;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Placement;
using Diffusion.Engine.Sharding;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Xunit;

namespace Diffusion.Engine.Tests.Architecture;

/// <summary>
/// Placement reaches a model's units from outside: a model written with no thought of devices (its forward calls its
/// units with plain .call) is placed unit by unit and gives exactly the plain output; tensors are moved once per call
/// and device; the model's result goes back to its caller's device; a forward that throws leaves nothing streamed in
/// for long; the VAE (called through Encode/Decode) is placed through its encoder, decoder and quant convs; and the
/// per-block benchmark times units with hooks of its own. This machine has only a CPU, so every unit computes on the
/// CPU: offloaded units stream their weights from CPU memory or the file; moves between devices are checked on the
/// meta device (which moves tensors but computes nothing), not faked as a second GPU.
/// </summary>
public class PlacementFromOutsideTests
{
    private static readonly Device Cpu = torch.CPU;

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>A two-argument block taking a list and a tuple, as a UNet up block takes its skips.</summary>
    private sealed class Mix : nn.Module<Tensor, IReadOnlyList<Tensor>, (Tensor Scale, Tensor Shift), Tensor>
    {
        public readonly Linear proj;

        public Mix() : base(nameof(Mix))
        {
            proj = nn.Linear(16, 16);
            RegisterComponents();
        }

        public override Tensor forward(Tensor hidden, IReadOnlyList<Tensor> skips, (Tensor Scale, Tensor Shift) modulation) =>
            proj.call(hidden + skips[0] + skips[1]) * modulation.Scale + modulation.Shift; // [B, 16]
    }

    /// <summary>A model written plainly: no placement anywhere, each unit called with .call.</summary>
    private sealed class Toy : nn.Module<Tensor, Tensor>
    {
        public readonly Linear first;
        public readonly Mix mix;
        public readonly Linear last;

        public Toy() : base(nameof(Toy))
        {
            first = nn.Linear(8, 16);
            mix = new Mix();
            last = nn.Linear(16, 4);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            var h = first.call(x); // [B, 16]
            var carried = torch.tanh(h);
            h = mix.call(h, [carried, h], (carried, h.mean([1], keepdim: true)));
            return last.call(h); // [B, 4]
        }
    }

    [Fact]
    public void AModelWithNoPlacementCodeIsPlacedUnitByUnitAndEqualsThePlainRun()
    {
        using var dir = new TempDirectory();
        using var noGrad = torch.no_grad();
        torch.manual_seed(5);
        using var plain = new Toy();
        plain.eval();
        var file = dir.File("toy.safetensors");
        SafeTensorsWriter.Save(file, plain.state_dict());

        using var placedToy = new Toy();
        placedToy.eval();
        UnitSpec[] units = [new("first", "disk", true), new("mix", "cpu", true), new("last", "cpu", false)];
        using var placed = ShardedLoader.Load(placedToy, [file], ScalarType.Float32, null, units, Cpu, _ => Cpu);
        // At rest the offloaded units hold nothing: the forward can only work if the hooks stream their weights in.
        Assert.Equal(0, placedToy.first.weight!.numel());
        Assert.All(placedToy.mix.parameters(), p => Assert.Equal(0, p.numel()));

        using var scope = torch.NewDisposeScope();
        var x = torch.randn([3, 8], generator: new Generator(9, Cpu));
        var expected = plain.call(x);
        for (int run = 1; run <= 2; run++)
            Assert.True(Same(expected, placedToy.call(x)), $"run {run}: the placed model's output differs from the plain run");

        var byPath = placed.Placements.ToDictionary(p => p.Path);
        Assert.Equal(["first", "mix", "last"], placed.Placements.Select(p => p.Path));
        Assert.All(byPath.Values, p => Assert.Equal(2, p.Calls));
        Assert.Equal(2, byPath["first"].Streamed!.TimesIn);
        Assert.Equal(2, byPath["mix"].Streamed!.TimesIn);
        Assert.All(new[] { "first", "mix" }, p => Assert.False(byPath[p].Streamed!.IsIn));
        Assert.All(byPath.Values, p => Assert.Equal(0, p.InputsMoved)); // one device: nothing to move

        // Disposing the placement removes its hooks: the model no longer streams anything in.
        placed.Dispose();
        Assert.ThrowsAny<Exception>(() => placedToy.call(x));
    }

    [Fact]
    public void ACarriedTensorCrossesToADeviceOncePerCall()
    {
        var unit = new UnitPlacement("block", "meta", torch.META, null);
        var session = new PlacementSession([unit]);
        using var t = torch.ones(3);

        session.BeginCall();
        var a = session.MoveTo(t, unit);
        Assert.Equal(DeviceType.META, a.device_type);
        Assert.Same(a, session.MoveTo(t, unit)); // the second unit needing it gets the same copy
        Assert.Same(a, session.MoveTo(a, unit)); // already there
        Assert.Equal(1, unit.InputsMoved);
        a.Dispose(); // gone with an inner dispose scope: made again
        var b = session.MoveTo(t, unit);
        Assert.False(b.IsInvalid);
        Assert.Equal(2, unit.InputsMoved);
        session.EndCall();

        session.BeginCall();
        Assert.NotSame(b, session.MoveTo(t, unit)); // a new call copies afresh (the caller may have changed the tensor in between)
        session.EndCall();
        Assert.NotSame(session.MoveTo(t, unit), session.MoveTo(t, unit)); // outside a call nothing is kept
    }

    [Fact]
    public void UnitHooksMoveEveryTensorInTheArgumentsAndRootHooksHandTheResultBack()
    {
        var unit = new UnitPlacement("block", "meta", torch.META, null);
        var session = new PlacementSession([unit]);
        var hooks = new UnitHooks(session, unit);
        using var scope = torch.NewDisposeScope();
        var t = torch.ones(2); var u = torch.zeros(2);

        session.BeginCall();
        var list = hooks.Input<IReadOnlyList<Tensor>>([t, u]);
        var array = hooks.Input(new[] { u, t });
        var tuple = hooks.Input(((Tensor Cos, Tensor Sin)?)(t, u));
        var eight = hooks.Input((t, u, t, u, t, u, (Tensor?)null, ((Tensor, Tensor)?)(u, t)));
        var shape = hooks.Input(new long[] { 4, 4 });
        session.EndCall();
        Assert.All(list.Concat(array).Append(tuple!.Value.Cos).Append(tuple.Value.Sin).Append(eight.Item8!.Value.Item1),
            x => Assert.Equal(DeviceType.META, x.device_type));
        Assert.Null(eight.Item7);
        Assert.Same(list[0], array[1]); // t crossed once in the call, wherever it was carried
        Assert.Same(list[0], eight.Item1);
        Assert.Equal([4L, 4L], shape);
        Assert.Equal(2, unit.InputsMoved);

        // The model's result goes back to the device of its first tensor argument (accelerate's io_same_device).
        var root = new RootHooks(session, null);
        using var module = nn.Identity();
        root.Enter(module);
        root.Input((list[0], 3));
        var back = root.Exit(module, (t * 2, (Tensor?)null));
        Assert.Equal(DeviceType.META, back.Item1.device_type);
    }

    [Fact]
    public void AForwardThatThrowsLeavesItsStreamedWeightsInOnlyUntilTheNextCall()
    {
        var dir = Fixtures.PathOf("flux-tiny", "transformer");
        using var plain = FixtureModels.Load<FluxTransformer2DModel>("flux-tiny", "transformer");
        var config = FluxTransformer2DConfig.Load(Path.Combine(dir, "config.json"));
        using var model = new FluxTransformer2DModel(config);
        model.eval();
        var layout = ModuleLayouts.FromComponentFolder(dir, "FluxTransformer2DModel", "float32");
        var offloaded = new Dictionary<string, string> { ["x_embedder"] = "disk", ["transformer_blocks.0"] = "cpu", ["proj_out"] = "cpu" };
        var units = layout.Units.Select(u => offloaded.TryGetValue(u.Path, out var d) ? new UnitSpec(u.Path, d, true) : new UnitSpec(u.Path, "cpu", false)).ToArray();
        using var placed = ShardedLoader.Load(model, WeightLoader.FindWeightFiles(dir), ScalarType.Float32, null, units, Cpu, _ => Cpu);
        var byPath = placed.Placements.ToDictionary(p => p.Path);

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(4, Cpu);
        var context = torch.randn([1, 5, 32], generator: gen);
        var pooled = torch.randn([1, 32], generator: gen);
        var t = torch.tensor(new[] { 0.5f });
        var imgIds = FluxLatents.PrepareLatentImageIds(4, 4);
        var txtIds = FluxLatents.TextIds(5);
        var guidance = torch.full([1], 3.5f);
        var wrong = torch.randn([1, 16, 63], generator: gen); // x_embedder takes 64 channels: its forward throws after its weights came in
        Assert.ThrowsAny<Exception>(() => model.forward(wrong, context, pooled, t, imgIds, txtIds, guidance));
        Assert.True(byPath["x_embedder"].Streamed!.IsIn);
        placed.ReleaseStreamed(); // what a caller that stops can do at once
        Assert.False(byPath["x_embedder"].Streamed!.IsIn);

        Assert.ThrowsAny<Exception>(() => model.forward(wrong, context, pooled, t, imgIds, txtIds, guidance));
        Assert.True(byPath["x_embedder"].Streamed!.IsIn);
        var hidden = torch.randn([1, 16, 64], generator: gen);
        var expected = plain.forward(hidden, context, pooled, t, imgIds, txtIds, guidance);
        Assert.True(Same(expected, model.forward(hidden, context, pooled, t, imgIds, txtIds, guidance)), "the call after the failed one differs from the plain run");
        Assert.All(byPath.Values, p => Assert.False(p.Streamed?.IsIn ?? false)); // the next call let the stale weights go
    }

    [Fact]
    public void TheVaeIsPlacedThroughItsEncoderDecoderAndQuantConvs()
    {
        var dir = Fixtures.PathOf("sd-tiny", "vae");
        using var plain = FixtureModels.Load<AutoencoderKL>("sd-tiny", "vae");
        using var vae = new AutoencoderKL(AutoencoderKLConfig.Load(Path.Combine(dir, "config.json")));
        vae.eval();
        using var placed = ShardedLoader.Load(vae, WeightLoader.FindWeightFiles(dir), ScalarType.Float32, null, [new UnitSpec("", "disk", true)], Cpu, _ => Cpu);
        var byPath = placed.Placements.ToDictionary(p => p.Path);
        Assert.Equal(new[] { "decoder", "encoder", "post_quant_conv", "quant_conv" }.Where(p => vae.named_children().Any(c => c.name == p)).Order(),
            byPath.Keys.Order());
        Assert.All(vae.parameters(), p => Assert.Equal(0, p.numel()));

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var gen = new Generator(2, Cpu);
        var z = torch.randn([1, 4, 8, 8], generator: gen);
        var image = torch.rand([1, 3, 64, 64], generator: gen) * 2 - 1;
        Assert.True(Same(plain.Decode(z), vae.Decode(z)), "the placed VAE decodes differently");
        var (mean, logvar) = vae.Encode(image);
        var (plainMean, plainLogvar) = plain.Encode(image);
        Assert.True(Same(plainMean, mean) && Same(plainLogvar, logvar), "the placed VAE encodes differently");
        Assert.Equal(1, byPath["decoder"].Calls);
        Assert.Equal(1, byPath["encoder"].Calls);
        Assert.All(byPath.Values, p => Assert.False(p.Streamed!.IsIn));
    }

    [Fact]
    public void T5WithAnAttentionMaskPlacedAcrossCpuAndDiskEqualsThePlainRun()
    {
        var dir = Fixtures.PathOf("flux-tiny", "text_encoder_2");
        var config = T5Config.Load(Path.Combine(dir, "config.json"));
        using var plain = new T5EncoderModel(config);
        WeightLoader.LoadInto(plain, dir, Cpu, ScalarType.Float32);
        using var t5 = new T5EncoderModel(config);
        var layout = ModuleLayouts.FromComponentFolder(dir, "T5EncoderModel", "float32");
        var units = layout.Units.Select(u => new UnitSpec(u.Path, u.Path == "encoder.block.0" ? "disk" : "cpu", u.Path is "encoder.block.0" or "shared")).ToArray();
        using var placed = ShardedLoader.Load(t5, WeightLoader.FindWeightFiles(dir), ScalarType.Float32, null, units, Cpu, _ => Cpu);

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var ids = torch.tensor(new long[] { 3, 17, 40, 2, 0, 0, 5, 9, 1, 0 }, [2, 5]);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 0, 0, 1, 1, 1, 1 }, [2, 5]);
        Assert.True(Same(plain.forward(ids, mask), t5.forward(ids, mask)), "the placed T5 differs with an attention mask");
        Assert.Equal(1, placed.Placements.Single(p => p.Path == "encoder.block.0").Streamed!.TimesIn); // the position bias came from block 0 while it was in
    }

    [Fact]
    public void BlockTimingsTimesEachUnitWithHooksOfItsOwnAndRemovesThem()
    {
        using var pipe = DiffusionPipeline.Load(Fixtures.PathOf("sd-tiny"), new PipelineLoadOptions { Device = "cpu" });
        var first = BlockTimings.Measure(pipe, 32, 32, repeats: 1).Select(kv => kv.Key).ToList();
        var unet = pipe.Require<UNet2DConditionModel>("unet", "test");
        string[] units = ["time_embedding", "conv_in", .. unet.down_blocks.Select((_, i) => $"down_blocks.{i}"), "mid_block",
            .. unet.up_blocks.Select((_, i) => $"up_blocks.{i}"), "conv_norm_out", "conv_out"];
        Assert.Equal([.. units, "(model call)", "(scheduler step)"], first);
        // Measured again: the same units once each, so the first measurement's hooks are gone.
        Assert.Equal(first, BlockTimings.Measure(pipe, 32, 32, repeats: 1).Select(kv => kv.Key));
    }
}
