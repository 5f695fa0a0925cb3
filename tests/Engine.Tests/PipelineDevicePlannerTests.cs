using Diffusion.Engine.IO;
using System.Collections;
using Diffusion.Engine.Sharding;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// Pipeline-level 'balanced': diffusers' _assign_components_to_devices where every component fits a GPU, and
/// better where one does not (diffusers sends it to the CPU; this planner splits it by blocks across the GPUs).
/// </summary>
public class PipelineDevicePlannerTests
{
    private static TensorEntry T(string name, long elements) => new(name, "F32", [elements]);

    /// <summary>transformer 692 bytes (FLUX-shaped), text_encoder_2 264 (T5-shaped), vae 80 (one unit), text_encoder 64 (CLIP-shaped).</summary>
    private static List<ComponentForPlan> Components(long transformerActivations = 0, long t5Activations = 0) =>
    [
        new("text_encoder", ModuleLayouts.FromTensors("CLIPTextModel",
            [T("embeddings.token_embedding.weight", 5), T("encoder.layers.0.w", 5), T("encoder.layers.1.w", 5), T("final_layer_norm.weight", 1)], "float32"), new(0, "")),
        new("text_encoder_2", ModuleLayouts.FromTensors("T5EncoderModel",
            [T("shared.weight", 5), .. Enumerable.Range(0, 4).Select(i => T($"encoder.block.{i}.w", 15)), T("encoder.final_layer_norm.weight", 1)], "float32"), new(t5Activations, "")),
        new("transformer", DeviceMapPlannerTests.FluxLike(), new(transformerActivations, "")),
        new("vae", ModuleLayouts.FromTensors("AutoencoderKL", [T("decoder.w", 10), T("encoder.w", 10)], "float32"), new(0, "")),
    ];

    private static IReadOnlyList<DeviceBudget> Budgets(params (object Device, object Size)[] entries)
    {
        var h = new Hashtable();
        foreach (var (d, s) in entries) h[d] = s;
        return DeviceBudgets.FromMaxMemory(h);
    }

    private static Dictionary<string, string> Map(PipelineDevicePlan plan) => plan.DeviceMap.ToDictionary(kv => kv.Key, kv => kv.Value);

    [Fact]
    public void SizesAreWhatTheTablesAssume() =>
        Assert.Equal([64L, 264L, 692L, 80L], Components().Select(c => c.Layout.TotalBytes));

    /// <summary>
    /// {0: 2000, 1: 1000}: GPUs by memory (cuda:0, cuda:1), cycle 0, 1, 1, 0; components by size: transformer -> cuda:0,
    /// T5 -> cuda:1, VAE -> cuda:1, CLIP -> cuda:0. With {0: 1000, 1: 2000} the cycle starts at cuda:1.
    /// </summary>
    [Theory]
    [InlineData(HeadroomPolicy.Accelerate, 2000, 1000, "cuda:0", "cuda:1", "cuda:1", "cuda:0")]
    [InlineData(HeadroomPolicy.Activations, 2000, 1000, "cuda:0", "cuda:1", "cuda:1", "cuda:0")]
    [InlineData(HeadroomPolicy.Accelerate, 1000, 2000, "cuda:1", "cuda:0", "cuda:0", "cuda:1")]
    public void ComponentsThatFitAreDealtAsDiffusersDoes(HeadroomPolicy policy, int gpu0, int gpu1, string transformer, string t5, string vae, string clip)
    {
        var plan = PipelineDevicePlanner.Balanced(Components(), Budgets((0, gpu0), (1, gpu1)), policy);
        Assert.Equal(new Dictionary<string, string> { ["text_encoder"] = clip, ["text_encoder_2"] = t5, ["transformer"] = transformer, ["vae"] = vae }, Map(plan));
        Assert.Equal("cuda:0", plan.MainDevice);
    }

    /// <summary>
    /// {0: 600, 1: 600}: the 692-byte transformer fits no GPU. diffusers: transformer -> cpu (the cycle does not move),
    /// T5 -> cuda:0, VAE -> cuda:1, CLIP -> cuda:1.
    /// </summary>
    [Fact]
    public void DiffusersSendsWhatFitsNoGpuToTheCpu()
    {
        var plan = PipelineDevicePlanner.Balanced(Components(), Budgets((0, 600), (1, 600), ("cpu", 5000)), HeadroomPolicy.Accelerate);
        Assert.Equal(new Dictionary<string, string> { ["text_encoder"] = "cuda:1", ["text_encoder_2"] = "cuda:0", ["transformer"] = "cpu", ["vae"] = "cuda:1" }, Map(plan));
    }

    /// <summary>
    /// The same budgets, this planner: the transformer is split by blocks, balanced over both GPUs (cuda:0 capped at
    /// 346 + 125 = 471: the embedders and double blocks, 460; cuda:1 the rest, 232). T5 (264) then fits cuda:1 only
    /// (232 + 264 = 496); the VAE goes to cuda:0 (540) and CLIP to cuda:1 (560). Nothing runs on the CPU.
    /// </summary>
    [Fact]
    public void AComponentThatFitsNoGpuIsSplitAcrossGpus()
    {
        var plan = PipelineDevicePlanner.Balanced(Components(), Budgets((0, 600), (1, 600), ("cpu", 5000)));
        Assert.Equal(new Dictionary<string, string> { ["text_encoder"] = "cuda:1", ["text_encoder_2"] = "cuda:1", ["transformer"] = "cuda:0,cuda:1", ["vae"] = "cuda:0" }, Map(plan));
        var transformer = plan.Components["transformer"];
        Assert.Equal("cuda:0", transformer.DeviceMap["transformer_blocks"]);
        Assert.Equal("cuda:1", transformer.DeviceMap["single_transformer_blocks"]);
        Assert.Empty(transformer.OffloadedUnits);
        Assert.Equal([540L, 560L], plan.Devices.Where(d => d.Device.StartsWith("cuda")).Select(d => d.Weights));
    }

    /// <summary>
    /// {0: 800, 1: 800} with 200 bytes of transformer activations: diffusers would put the transformer (692) whole on
    /// cuda:0 and leave 108 for activations it needs 200 of; this planner keeps 200 free, so the transformer is split
    /// (cuda:0: 460 + 200, cuda:1: 232 + 200) and T5, which needs 50, joins cuda:1 (232 + 264 + 200 = 696).
    /// </summary>
    [Fact]
    public void ActivationHeadRoomIsKeptPerGpu()
    {
        var diffusers = PipelineDevicePlanner.Balanced(Components(200, 50), Budgets((0, 800), (1, 800)), HeadroomPolicy.Accelerate);
        Assert.Equal("cuda:0", diffusers.DeviceMap["transformer"]);
        var plan = PipelineDevicePlanner.Balanced(Components(200, 50), Budgets((0, 800), (1, 800)));
        Assert.Equal("cuda:0,cuda:1", plan.DeviceMap["transformer"]);
        Assert.Equal("cuda:1", plan.DeviceMap["text_encoder_2"]);
        Assert.All(plan.Devices.Where(d => d.Device.StartsWith("cuda")), d =>
        {
            Assert.Equal(200, d.ActivationHeadroom);
            Assert.True(d.Weights + d.ActivationHeadroom <= 800, $"{d.Device}: {d.Weights} + {d.ActivationHeadroom} > 800");
        });
    }

    [Fact]
    public void WithoutGpusEverythingIsOnTheCpu()
    {
        var plan = PipelineDevicePlanner.Balanced(Components(), Budgets(("cpu", 5000)));
        Assert.All(plan.DeviceMap.Values, d => Assert.Equal("cpu", d));
        Assert.Equal("cpu", plan.MainDevice);
    }

    [Fact]
    public void UserPipelineMapTakesComponentsAndModuleMaps()
    {
        var map = new Hashtable
        {
            ["transformer"] = new Hashtable { [""] = 0, ["single_transformer_blocks"] = 1 },
            ["text_encoder_2"] = "cuda:1", ["text_encoder"] = 1, ["vae"] = "cpu",
        };
        var plan = PipelineDevicePlanner.FromUserMap(Components(), map, Budgets((0, 1000), (1, 1000)));
        Assert.Equal(new Dictionary<string, string> { ["text_encoder"] = "cuda:1", ["text_encoder_2"] = "cuda:1", ["transformer"] = "cuda:0,cuda:1", ["vae"] = "cpu" }, Map(plan));
        Assert.Equal("cuda:0", plan.MainDevice);
    }

    [Fact]
    public void UserPipelineMapErrorsNameTheComponent()
    {
        var unknown = Assert.Throws<DiffusionException>(() => PipelineDevicePlanner.FromUserMap(Components(), new Hashtable { ["unet"] = 0 }, Budgets((0, 1000))));
        Assert.Equal("DeviceMapUnknownComponent", unknown.ErrorId);
        Assert.Contains("'unet'", unknown.Message);
        var unmapped = Assert.Throws<DiffusionException>(() => PipelineDevicePlanner.FromUserMap(Components(),
            new Hashtable { ["transformer"] = 0, ["text_encoder"] = 0, ["text_encoder_2"] = 0 }, Budgets((0, 1000))));
        Assert.Equal("DeviceMapUnmappedModule", unmapped.ErrorId);
        Assert.Contains("leaves vae without a device", unmapped.Message);
        var device = Assert.Throws<DiffusionException>(() => PipelineDevicePlanner.FromUserMap(Components(),
            new Hashtable { ["transformer"] = 0, ["text_encoder"] = 0, ["text_encoder_2"] = 0, ["vae"] = "cuda:5" }, Budgets((0, 1000)), ["cpu", "cuda:0", "disk"]));
        Assert.Equal("UnknownDevice", device.ErrorId);
        Assert.Contains("'vae' on 'cuda:5'", device.Message);
    }
}
