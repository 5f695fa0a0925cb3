using Diffusion.Bench;
using System.Collections;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Sharding;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// The full-size tests (FLUX.1-dev, SDXL base, the key approvals): they run one at a time, the largest module trees the
/// engine tests build. Building on the meta device is per thread (<see cref="Models.Construction"/>), not torch's
/// process-wide default device, so this is about load on a small machine, not about other tests' tensors.
/// </summary>
[CollectionDefinition(nameof(MetaDeviceCollection), DisableParallelization = true)]
public sealed class MetaDeviceCollection;

/// <summary>
/// Plans for FLUX.1-dev at full size (12B transformer, T5-XXL), from a folder whose safetensors headers are the real
/// model's and whose data are holes in sparse files. Budgets name GPUs this machine does not have: planning needs
/// none (loading would).
/// </summary>
[Collection(nameof(MetaDeviceCollection))]
public sealed class FluxDevPlanTests : IClassFixture<FluxDevPlanTests.Folder>
{
    public sealed class Folder : IDisposable
    {
        public TempDirectory Temp { get; } = new();
        public string Path { get; }
        public Folder() => Path = HeaderOnlyCheckpoint.WriteFluxDev(Temp.File("FLUX.1-dev"));
        public void Dispose() => Temp.Dispose();
    }

    private readonly Folder _folder;
    public FluxDevPlanTests(Folder folder) => _folder = folder;

    private PipelineDevicePlan Plan(object deviceMap, Hashtable maxMemory, string[]? components = null, HeadroomPolicy policy = HeadroomPolicy.Activations) =>
        DiffusionPipeline.PlanDevices(_folder.Path, new PipelineLoadOptions
        {
            DType = "bfloat16", Components = components, DeviceMap = deviceMap, MaxMemory = maxMemory, HeadroomPolicy = policy,
        })!;

    [Fact]
    public void HeadersDescribeTheRealModelSizes()
    {
        var layout = ModuleLayouts.FromComponentFolder(System.IO.Path.Combine(_folder.Path, "transformer"), "FluxTransformer2DModel", "bfloat16");
        Assert.Equal(11_901_408_320L, layout.Elements); // FLUX.1-dev's transformer: 11.9B parameters
        Assert.Equal(2 * layout.Elements, layout.TotalBytes);
        Assert.Equal(19 + 38 + 5, layout.Units.Count);
        Assert.Equal(4_762_310_656L, ModuleLayouts.FromComponentFolder(System.IO.Path.Combine(_folder.Path, "text_encoder_2"), "T5EncoderModel", "bfloat16").Elements);
    }

    /// <summary>The guide's case: the transformer on one 16 GB GPU, the rest of its blocks in CPU memory, streamed in.</summary>
    [Fact]
    public void TransformerOnOne16GbGpuOffloadsTheBlocksThatDoNotFit()
    {
        var plan = Plan("auto", new Hashtable { [0] = "16GB", ["cpu"] = "64GB" }, ["transformer"]);
        Assert.True(plan.ModelLevel);
        var t = plan.Components["transformer"];
        Assert.Equal("cuda:0", t.ExecutionDevice);
        var gpu = t.Devices.Single(d => d.Device == "cuda:0");
        Assert.True(gpu.Weights > 12_000_000_000L, $"only {gpu.Weights} bytes of weights on the GPU");
        Assert.True(gpu.Weights + gpu.ActivationHeadroom + gpu.StreamingBuffer <= 16_000_000_000L);
        Assert.True(gpu.ActivationHeadroom > 500_000_000L, $"activation head-room {gpu.ActivationHeadroom} for 1024x1024 bf16"); // 4608 tokens x 3072 x ~60 bytes counted, x1.4 margin
        Assert.Equal(t.OffloadedUnits.Max(u => t.Layout.Find(u)!.Bytes), gpu.StreamingBuffer);
        Assert.DoesNotContain("disk", t.UnitDevices.Values);
        Assert.All(t.OffloadedUnits, u => Assert.Equal("cpu", t.UnitDevices[u]));
        Assert.Contains("head-room for activations: FluxTransformer2DModel at 1024x1024", t.ToString());
        Assert.Empty(plan.Warnings);
    }

    /// <summary>A larger image needs more head-room, so fewer blocks stay on the GPU.</summary>
    [Fact]
    public void HeadRoomFollowsTheRequestedImageSize()
    {
        var small = Plan("auto", new Hashtable { [0] = "16GB", ["cpu"] = "64GB" }, ["transformer"]).Components["transformer"];
        var large = DiffusionPipeline.PlanDevices(_folder.Path, new PipelineLoadOptions
        {
            DType = "bfloat16", Components = ["transformer"], DeviceMap = "auto", MaxMemory = new Hashtable { [0] = "16GB", ["cpu"] = "64GB" }, Height = 2048, Width = 2048,
        })!.Components["transformer"];
        Assert.True(large.Activations.Bytes > 3 * small.Activations.Bytes);
        Assert.True(large.OffloadedUnits.Count > small.OffloadedUnits.Count);
    }

    /// <summary>
    /// Pipeline balanced on two 16 GB GPUs: the 23.8 GB transformer fits neither; diffusers sends it to the CPU, this
    /// planner splits it by blocks across both. (T5 then spills partly to CPU memory and the VAE, whose 1024x1024 decode
    /// needs 3 GiB of activations, runs on the CPU: 31 GiB of weights do not fit 2 x 14.9 GiB.)
    /// </summary>
    [Fact]
    public void PipelineBalancedSplitsTheTransformerWhereDiffusersSendsItToTheCpu()
    {
        var budgets = new Hashtable { [0] = "16GB", [1] = "16GB", ["cpu"] = "64GB" };
        var diffusers = Plan("balanced", budgets, policy: HeadroomPolicy.Accelerate);
        Assert.Equal("cpu", diffusers.DeviceMap["transformer"]);
        var plan = Plan("balanced", budgets);
        Assert.Equal("cuda:0,cuda:1", plan.DeviceMap["transformer"]);
        Assert.Equal("cuda:0", plan.DeviceMap["text_encoder"]);
        var transformer = plan.Components["transformer"];
        Assert.Empty(transformer.OffloadedUnits);
        Assert.All(plan.Devices.Where(d => d.Device.StartsWith("cuda")), d => Assert.True(d.Weights + d.ActivationHeadroom <= 16_000_000_000L, $"{d.Device} over budget"));
    }

    [Fact]
    public void ModelOffloadPlanKeepsEverythingInCpuMemory()
    {
        var plan = DiffusionPipeline.PlanDevices(_folder.Path, new PipelineLoadOptions { DType = "bfloat16", Offload = "model", Device = "cuda" })!;
        Assert.Equal("cuda:0", plan.MainDevice);
        Assert.All(plan.Components.Values, c => Assert.All(c.UnitDevices.Values, d => Assert.Equal("cpu", d)));
        var gpu = plan.Devices.Single(d => d.Device == "cuda:0");
        Assert.Equal(plan.Components["transformer"].TotalBytes, gpu.StreamingBuffer); // the largest model must fit while it runs
    }
}
