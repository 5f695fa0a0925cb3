using Diffusion.Bench;
using System.Collections;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Sharding;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// SDXL 1.0 base's UNet at full size (2.6B parameters): this engine's module against diffusers' (the state-dict keys and
/// shapes diffusers builds from the published config, TestData/sdxl-base-unet-keys.json, made by
/// bench/approval/sdxl_base_unet_keys.py in the cpuref rig), and device-map plans from a header-only folder.
/// </summary>
[Collection(nameof(MetaDeviceCollection))]
public sealed class SdxlBasePlanTests : IClassFixture<SdxlBasePlanTests.Folder>
{
    public sealed class Folder : IDisposable
    {
        public TempDirectory Temp { get; } = new();
        public string Path { get; }
        public Folder()
        {
            Path = Temp.File("sdxl-base-unet");
            Directory.CreateDirectory(Path);
            File.WriteAllText(System.IO.Path.Combine(Path, "model_index.json"), """{"_class_name":"StableDiffusionXLPipeline","unet":["diffusers","UNet2DConditionModel"]}""");
            HeaderOnlyCheckpoint.WriteComponent(System.IO.Path.Combine(Path, "unet"), "UNet2DConditionModel", File.ReadAllText(ConfigPath()),
                "diffusion_pytorch_model.safetensors", "F16");
        }
        public void Dispose() => Temp.Dispose();
    }

    private readonly Folder _folder;
    public SdxlBasePlanTests(Folder folder) => _folder = folder;

    private static string TestData([CallerFilePath] string thisFile = "") => System.IO.Path.Combine(System.IO.Path.GetDirectoryName(thisFile)!, "TestData");
    private static string ConfigPath() => System.IO.Path.Combine(TestData(), "sdxl-base-unet-config.json");

    [Fact]
    public void UNetHasDiffusersKeysAndShapesAtFullSize()
    {
        using var reference = JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(TestData(), "sdxl-base-unet-keys.json")));
        var expected = reference.RootElement.GetProperty("tensors").EnumerateObject()
            .ToDictionary(p => p.Name, p => string.Join(",", p.Value.EnumerateArray().Select(d => d.GetInt64())));
        var ours = HeaderOnlyCheckpoint.Shapes("UNet2DConditionModel", ConfigPath()).ToDictionary(t => t.Name, t => string.Join(",", t.Shape));
        Assert.Empty(expected.Keys.Except(ours.Keys).Take(5)); // keys diffusers has that this module lacks
        Assert.Empty(ours.Keys.Except(expected.Keys).Take(5)); // and the other way round
        foreach (var (key, shape) in expected) Assert.True(ours[key] == shape, $"{key}: diffusers [{shape}], here [{ours[key]}]");
        long parameters = ours.Values.Sum(s => s.Split(',').Aggregate(1L, (a, d) => a * long.Parse(d)));
        Assert.Equal(reference.RootElement.GetProperty("parameters").GetInt64(), parameters);
        Assert.Equal(2_567_463_684L, parameters);
    }

    /// <summary>
    /// The fp16 UNet (5.1 GB) on a 5 GB GPU: its blocks in order until the GPU is full, keeping room for the activations at
    /// 1024x1024 and for streaming the largest offloaded block (up_blocks.0, 2.4 GB: three blocks of ten transformer layers);
    /// SDXL's add_embedding is a unit of its own.
    /// </summary>
    [Fact]
    public void UNetOnOne5GbGpuOffloadsTheBlocksThatDoNotFit()
    {
        var plan = DiffusionPipeline.PlanDevices(_folder.Path, new PipelineLoadOptions
        {
            DType = "float16", Components = ["unet"], DeviceMap = "auto", MaxMemory = new Hashtable { [0] = "5GB", ["cpu"] = "32GB" },
        })!;
        var unet = plan.Components["unet"];
        Assert.Equal(2L * 2_567_463_684L, unet.Layout.TotalBytes);
        Assert.Equal("cuda:0", unet.ExecutionDevice);
        var gpu = unet.Devices.Single(d => d.Device == "cuda:0");
        Assert.True(gpu.Weights + gpu.ActivationHeadroom + gpu.StreamingBuffer <= 5_000_000_000L);
        Assert.Equal(unet.Layout.Find("up_blocks.0")!.Bytes, gpu.StreamingBuffer);
        Assert.True(gpu.Weights > 1_500_000_000L, $"only {gpu.Weights} bytes of weights on the GPU");
        Assert.Equal("cuda:0", unet.UnitDevices["add_embedding"]);
        Assert.Equal("cuda:0", unet.UnitDevices["down_blocks.2"]); // 1.5 GB: its ten-layer transformers
        Assert.Equal("cpu", unet.UnitDevices["mid_block"]);
        Assert.Contains("up_blocks.0", unet.OffloadedUnits);
    }
}
