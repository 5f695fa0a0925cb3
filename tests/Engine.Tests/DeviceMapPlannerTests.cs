using Diffusion.Engine.IO;
using System.Collections;
using Diffusion.Engine.Sharding;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// Planner tables: layouts of known sizes x budgets -> the map accelerate's infer_auto_device_map /
/// get_balanced_memory would give (worked out by hand from their code, step by step, in the comments), and the map
/// this module's activation policy gives. Sizes are float32 bytes.
/// </summary>
public class DeviceMapPlannerTests
{
    private static TensorEntry T(string name, long elements) => new(name, "F32", [elements]);

    /// <summary>
    /// A FLUX-shaped transformer: three 20-byte embedders, four 100-byte double blocks, four 48-byte single blocks,
    /// two 20-byte output modules; 692 bytes. Largest layer 100; mean final module 692/13 = 53; balanced buffer
    /// 1.25 x 100 = 125.
    /// </summary>
    internal static ModuleLayout FluxLike() => ModuleLayouts.FromTensors("FluxTransformer2DModel",
    [
        T("time_text_embed.linear.weight", 5), T("context_embedder.weight", 5), T("x_embedder.weight", 5),
        .. Enumerable.Range(0, 4).Select(i => T($"transformer_blocks.{i}.w", 25)),
        .. Enumerable.Range(0, 4).Select(i => T($"single_transformer_blocks.{i}.w", 12)),
        T("norm_out.linear.weight", 5), T("proj_out.weight", 5),
    ], "float32");

    private static IReadOnlyList<DeviceBudget> Budgets(params (object Device, object Size)[] entries)
    {
        var h = new Hashtable();
        foreach (var (d, s) in entries) h[d] = s;
        return DeviceBudgets.FromMaxMemory(h);
    }

    private static ActivationEstimate Act(long bytes) => new(bytes, $"{bytes} bytes (test)");

    private static Dictionary<string, string> Map(ModelDevicePlan plan) => plan.DeviceMap.ToDictionary(kv => kv.Key, kv => kv.Value);

    private static Dictionary<string, string> Expect(params (string Module, string Device)[] entries) => entries.ToDictionary(e => e.Module, e => e.Device);

    [Fact]
    public void LayoutGroupsTensorsIntoUnitsInExecutionOrder()
    {
        var layout = FluxLike();
        Assert.Equal(692, layout.TotalBytes);
        Assert.Equal(53, layout.MeanLeafModuleBytes);
        Assert.Equal(["time_text_embed", "context_embedder", "x_embedder", "transformer_blocks.0", "transformer_blocks.1", "transformer_blocks.2", "transformer_blocks.3",
            "single_transformer_blocks.0", "single_transformer_blocks.1", "single_transformer_blocks.2", "single_transformer_blocks.3", "norm_out", "proj_out"],
            layout.Units.Select(u => u.Path));
        Assert.Equal("FluxTransformerBlock", layout.Find("transformer_blocks.2")!.Kind);
        Assert.Equal("FluxSingleTransformerBlock", layout.Find("single_transformer_blocks.0")!.Kind);
        Assert.Equal(400, layout.Find("transformer_blocks")!.Bytes);
        Assert.Equal("transformer_blocks.1", layout.UnitOf("transformer_blocks.1.w"));
    }

    [Fact]
    public void LayoutSizesFollowTheLoadDtype()
    {
        var tensors = new[] { new TensorEntry("shared.weight", "BF16", [10, 4]), new TensorEntry("encoder.block.0.layer.1.DenseReluDense.wo.weight", "F32", [4, 8]),
            new TensorEntry("encoder.block.0.layer.0.SelfAttention.q.weight", "F32", [4, 4]), new TensorEntry("encoder.final_layer_norm.weight", "F32", [4]) };
        var fp32 = ModuleLayouts.FromTensors("T5EncoderModel", tensors, "float32");
        var fp16 = ModuleLayouts.FromTensors("T5EncoderModel", tensors, "float16");
        Assert.Equal((40 + 32 + 16 + 4) * 4, fp32.TotalBytes); // a bf16 checkpoint loaded in float32 takes 4 bytes per weight
        Assert.Equal((40 + 16 + 4) * 2 + 32 * 4, fp16.TotalBytes); // T5's wo stays float32 in float16, as transformers keeps it
        Assert.Equal(["shared", "encoder.block.0", "encoder.final_layer_norm"], fp16.Units.Select(u => u.Path));
    }

    /// <summary>
    /// accelerate, sequential, {0: 300, 1: 300, cpu: 1000}: cuda:0 keeps the largest layer (100) free, so 200 for
    /// weights: the embedders (60) and block 0 (160); block 1 (260) does not fit; cuda:1 (not a main device, 300):
    /// blocks 1-3 (300); the single blocks (192) do not fit, are split, and go to cpu (1000 less the largest remaining
    /// layer, 48) with the output modules.
    /// </summary>
    [Fact]
    public void SequentialWithAcceleratePolicyMatchesInferAutoDeviceMap()
    {
        var plan = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, 300), (1, 300), ("cpu", 1000)), DeviceMapStrategy.Sequential, Act(30), HeadroomPolicy.Accelerate);
        Assert.Equal(Expect(("time_text_embed", "cuda:0"), ("context_embedder", "cuda:0"), ("x_embedder", "cuda:0"), ("transformer_blocks.0", "cuda:0"),
            ("transformer_blocks.1", "cuda:1"), ("transformer_blocks.2", "cuda:1"), ("transformer_blocks.3", "cuda:1"),
            ("single_transformer_blocks", "cpu"), ("norm_out", "cpu"), ("proj_out", "cpu")), Map(plan));
        Assert.Equal("cuda:0", plan.ExecutionDevice);
        Assert.Equal(100, plan.Devices.Single(d => d.Device == "cuda:0").StreamingBuffer); // the largest layer, reserved
        Assert.Equal(6, plan.OffloadedUnits.Count);
    }

    /// <summary>
    /// The same budgets with this module's policy and 30 bytes of activations: cuda:0 keeps 30 + the largest
    /// offloaded unit. Round 1 (nothing streams yet): 270 on cuda:0 (embedders, blocks 0-1), cuda:1 270 (blocks 2-3,
    /// single 0), the rest to cpu: the largest offloaded unit is 48. Round 2 (cuda:0 222): blocks 0 only... block 3
    /// lands on cpu, so 100 must be kept; round 3 (cuda:0 170) gives the same map, which is final. accelerate's map
    /// above would run out of memory on cuda:1 once activations are counted; this one keeps room for them everywhere.
    /// </summary>
    [Fact]
    public void SequentialWithActivationPolicyKeepsActivationsAndStreamingRoom()
    {
        var plan = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, 300), (1, 300), ("cpu", 1000)), DeviceMapStrategy.Sequential, Act(30));
        Assert.Equal(Expect(("time_text_embed", "cuda:0"), ("context_embedder", "cuda:0"), ("x_embedder", "cuda:0"), ("transformer_blocks.0", "cuda:0"),
            ("transformer_blocks.1", "cuda:1"), ("transformer_blocks.2", "cuda:1"), ("transformer_blocks.3", "cpu"),
            ("single_transformer_blocks", "cpu"), ("norm_out", "cpu"), ("proj_out", "cpu")), Map(plan));
        var gpu0 = plan.Devices.Single(d => d.Device == "cuda:0");
        Assert.Equal((160L, 30L, 100L), (gpu0.Weights, gpu0.ActivationHeadroom, gpu0.StreamingBuffer));
        var gpu1 = plan.Devices.Single(d => d.Device == "cuda:1");
        Assert.Equal((200L, 30L, 0L), (gpu1.Weights, gpu1.ActivationHeadroom, gpu1.StreamingBuffer));
        Assert.All(plan.Devices.Where(d => d.Budget is not null), d => Assert.True(d.Free >= 0, $"{d.Device} over budget"));
    }

    /// <summary>
    /// Two 400-byte GPUs and no cpu budget. accelerate reserves the largest layer (100) on cuda:0 though nothing is
    /// offloaded: cuda:0 takes the embedders and blocks 0-2 (360), cuda:1 block 3 and the single blocks (392), and
    /// norm_out and proj_out go to disk. With 10 bytes of activations this module's plan keeps everything on the GPUs.
    /// </summary>
    [Fact]
    public void ActivationPolicyDoesNotOffloadWhatFits()
    {
        var accelerate = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, 400), (1, 400)), DeviceMapStrategy.Sequential, Act(10), HeadroomPolicy.Accelerate);
        Assert.Equal("disk", accelerate.DeviceMap["norm_out"]);
        Assert.Equal("disk", accelerate.DeviceMap["proj_out"]);
        var ours = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, 400), (1, 400)), DeviceMapStrategy.Sequential, Act(10));
        Assert.Equal(Expect(("time_text_embed", "cuda:0"), ("context_embedder", "cuda:0"), ("x_embedder", "cuda:0"), ("transformer_blocks.0", "cuda:0"),
            ("transformer_blocks.1", "cuda:0"), ("transformer_blocks.2", "cuda:0"), ("transformer_blocks.3", "cuda:1"),
            ("single_transformer_blocks", "cuda:1"), ("norm_out", "cuda:1"), ("proj_out", "cuda:1")), Map(ours));
        Assert.Empty(ours.OffloadedUnits);
        Assert.All(ours.Devices, d => Assert.Equal(0, d.StreamingBuffer));
    }

    /// <summary>
    /// balanced on {0: 1000, 1: 1000}: per GPU 692 / 2 = 346 + 125 = 471, so cuda:0 is capped at 471 (less the
    /// largest layer under accelerate's policy: 371): the embedders and blocks 0-2 (360); the rest goes to cuda:1.
    /// auto is the same plan.
    /// </summary>
    [Theory]
    [InlineData(DeviceMapStrategy.Balanced)]
    [InlineData(DeviceMapStrategy.Auto)]
    public void BalancedMatchesGetBalancedMemory(DeviceMapStrategy strategy)
    {
        var plan = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, 1000), (1, 1000)), strategy, Act(0), HeadroomPolicy.Accelerate);
        Assert.Equal(Expect(("time_text_embed", "cuda:0"), ("context_embedder", "cuda:0"), ("x_embedder", "cuda:0"), ("transformer_blocks.0", "cuda:0"),
            ("transformer_blocks.1", "cuda:0"), ("transformer_blocks.2", "cuda:0"), ("transformer_blocks.3", "cuda:1"),
            ("single_transformer_blocks", "cuda:1"), ("norm_out", "cuda:1"), ("proj_out", "cuda:1")), Map(plan));
        Assert.Equal(471, plan.Devices.Single(d => d.Device == "cuda:0").Cap);
    }

    /// <summary>
    /// balanced_low_0 on three 1000-byte GPUs: per GPU 692 / 2 + 125 = 471 for cuda:1, cuda:2 keeps 1000, and cuda:0
    /// gets max(0, 692 - 1471) = 0: the embedders and double blocks go to cuda:1 (460), the rest to cuda:2.
    /// </summary>
    [Fact]
    public void BalancedLow0LeavesTheFirstGpuEmpty()
    {
        var plan = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, 1000), (1, 1000), (2, 1000)), DeviceMapStrategy.BalancedLow0, Act(0), HeadroomPolicy.Accelerate);
        Assert.Equal(Expect(("time_text_embed", "cuda:1"), ("context_embedder", "cuda:1"), ("x_embedder", "cuda:1"), ("transformer_blocks", "cuda:1"),
            ("single_transformer_blocks", "cuda:2"), ("norm_out", "cuda:2"), ("proj_out", "cuda:2")), Map(plan));
        Assert.Equal("cuda:1", plan.ExecutionDevice);
    }

    /// <summary>A lone GPU with budgets from free memory: accelerate keeps 10% (900 of 1000), the model fits: {"": cuda:0}.</summary>
    [Fact]
    public void WholeModelOnOneDeviceIsTheEmptyPath()
    {
        var plan = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, 1000), ("cpu", 1000)), DeviceMapStrategy.Auto, Act(0), HeadroomPolicy.Accelerate, budgetsFromUser: false);
        Assert.Equal(Expect(("", "cuda:0")), Map(plan));
        Assert.Equal(900, plan.Devices.Single(d => d.Device == "cuda:0").Cap);
        Assert.Equal("{\n  \"\": \"cuda:0\"\n}", plan.ToJson().ReplaceLineEndings("\n"));
    }

    [Fact]
    public void BudgetsWithUnitsPlanLikeBytes()
    {
        var withUnits = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, "0.3KB"), ("cuda:1", "300"), ("cpu", "1KiB")), DeviceMapStrategy.Sequential, Act(30));
        var inBytes = DeviceMapPlanner.Plan(FluxLike(), Budgets((0, 300), (1, 300L), ("cpu", 1024)), DeviceMapStrategy.Sequential, Act(30));
        Assert.Equal(Map(inBytes), Map(withUnits));
        Assert.Equal(1024, withUnits.Devices.Single(d => d.Device == "cpu").Budget);
    }

    [Fact]
    public void WithoutGpusEverythingRunsOnTheCpuAndSpillsToDisk()
    {
        var plan = DeviceMapPlanner.Plan(FluxLike(), Budgets(("cpu", 500)), DeviceMapStrategy.Auto, Act(20));
        // cpu computes: it keeps 20 for activations, then room for the two largest units streamed from disk (the one in
        // use and the next, read ahead).
        Assert.Equal("cpu", plan.ExecutionDevice);
        Assert.All(plan.UnitDevices.Values, d => Assert.Contains(d, new[] { "cpu", "disk" }));
        var cpu = plan.Devices.Single(d => d.Device == "cpu");
        Assert.True(cpu.Weights + cpu.ActivationHeadroom + cpu.StreamingBuffer <= 500);
        Assert.Equal(20, cpu.ActivationHeadroom);
        Assert.True(plan.OffloadedUnits.Count >= 2);
        Assert.Equal(plan.OffloadedUnits.Select(u => plan.Layout.Find(u)!.Bytes).OrderDescending().Take(2).Sum(), cpu.StreamingBuffer);
        Assert.Equal(plan.UnitDevices.Where(kv => kv.Value == "disk").Select(kv => kv.Key), plan.OffloadedUnits);
    }

    [Fact]
    public void UserMapMostSpecificKeyWins()
    {
        var map = new Hashtable { [""] = "cpu", ["transformer_blocks"] = 0, ["transformer_blocks.3"] = "cuda:1" };
        var plan = DeviceMapPlanner.FromUserMap(FluxLike(), map, Budgets((0, 1000), (1, 1000), ("cpu", 1000)), Act(5));
        Assert.Equal("cuda:0", plan.UnitDevices["transformer_blocks.0"]);
        Assert.Equal("cuda:1", plan.UnitDevices["transformer_blocks.3"]);
        Assert.Equal("cpu", plan.UnitDevices["proj_out"]);
        Assert.Equal("cuda:0", plan.ExecutionDevice);
        Assert.Equal(9, plan.OffloadedUnits.Count);
        Assert.Equal(DeviceMapStrategy.User, plan.Strategy);
    }

    [Theory]
    [InlineData("transformer_blocks.9", "DeviceMapUnknownModule", "transformer_blocks.9")]
    [InlineData("vae", "DeviceMapUnknownModule", "top-level modules are: time_text_embed")]
    [InlineData("transformer_blocks.0.attn", "DeviceMapSplitsBlock", "inside 'transformer_blocks.0' (FluxTransformerBlock)")]
    public void UserMapWithAnUnknownModuleIsRefused(string key, string errorId, string message)
    {
        var map = new Hashtable { [""] = "cpu", [key] = 0 };
        var e = Assert.Throws<DiffusionException>(() => DeviceMapPlanner.FromUserMap(FluxLike(), map, Budgets((0, 1000)), Act(0)));
        Assert.Equal(errorId, e.ErrorId);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void UserMapLeavingModulesUnmappedIsRefused()
    {
        var map = new Hashtable { ["time_text_embed"] = 0, ["context_embedder"] = 0, ["x_embedder"] = 0, ["transformer_blocks"] = 0, ["single_transformer_blocks"] = 0, ["norm_out"] = 0 };
        var e = Assert.Throws<DiffusionException>(() => DeviceMapPlanner.FromUserMap(FluxLike(), map, Budgets((0, 1000)), Act(0)));
        Assert.Equal("DeviceMapUnmappedModule", e.ErrorId);
        Assert.Contains("1 module(s) without a device: proj_out", e.Message);
    }

    [Theory]
    [InlineData("cuda:7", "'cuda:7', which is not a device here")]
    [InlineData("gpu", "'gpu' is not a device")]
    [InlineData(-1, "'-1' is not a device")]
    public void UserMapWithAnUnknownDeviceIsRefused(object device, string message)
    {
        var map = new Hashtable { [""] = device };
        var e = Assert.Throws<DiffusionException>(() => DeviceMapPlanner.FromUserMap(FluxLike(), map, Budgets((0, 1000)), Act(0), ["cpu", "cuda:0", "disk"]));
        Assert.Equal("UnknownDevice", e.ErrorId);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void VaeIsOneUnit()
    {
        var layout = ModuleLayouts.FromTensors("AutoencoderKL", [T("decoder.conv_in.weight", 10), T("encoder.conv_in.weight", 10)], "float32");
        Assert.False(layout.IsSplittable);
        var plan = DeviceMapPlanner.Plan(layout, Budgets((0, 50), (1, 100)), DeviceMapStrategy.Sequential, Act(20));
        Assert.Equal(Expect(("", "cuda:1")), Map(plan)); // 80 bytes + 20 activations fit cuda:1 only; the VAE is never split
    }
}
