using Diffusion.Bench;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>Models built on the meta device and filled from their files: no memory until loaded, then exactly the file's weights.</summary>
public class MetaModulesTests
{
    /// <summary>
    /// The ways a module holds a tensor: a Parameter field, TorchSharp's property-backed Linear, a buffer field and a buffer
    /// reached through the registry only. (Non-persistent buffers are left out: TorchSharp 0.107's named_buffers never
    /// lists them, so its own Module.to does not move them either; the engine's models have none.)
    /// </summary>
    private sealed class Holder : nn.Module<Tensor, Tensor>
    {
        public readonly Parameter weight;
        public readonly Linear proj;
        public Tensor offset;

        public Holder() : base(nameof(Holder))
        {
            // As the engine's models do: every tensor made where Construction says.
            weight = new Parameter(torch.ones(3, device: Construction.Device));
            proj = nn.Linear(3, 2, device: Construction.Device);
            offset = torch.zeros(2, device: Construction.Device);
            RegisterComponents();
            register_buffer("steps", torch.zeros(1, device: Construction.Device));
        }

        public override Tensor forward(Tensor x) => proj.forward(x * weight) + offset + get_buffer("steps")!;
    }

    private static IEnumerable<Tensor> AllTensors(nn.Module m) => m.parameters().Cast<Tensor>().Concat(m.buffers());

    [Fact]
    public void BuildAllocatesNothingAndReplaceFillsEveryKindOfTensor()
    {
        using var _ = torch.no_grad();
        using var m = Construction.OnMeta(() => new Holder());
        Assert.All(AllTensors(m), t => Assert.Equal(DeviceType.META, t.device_type));
        Assert.True(MetaModules.HasMetaTensors(m));

        var values = new Dictionary<string, Tensor>
        {
            ["weight"] = torch.tensor(new[] { 1f, 2f, 3f }),
            ["proj.weight"] = torch.arange(6, dtype: ScalarType.Float32).reshape(2, 3),
            ["proj.bias"] = torch.tensor(new[] { 1f, -1f }),
            ["offset"] = torch.tensor(new[] { 10f, 20f }),
            ["steps"] = torch.tensor(new[] { 100f }),
        };
        var seen = new List<string>();
        MetaModules.Replace(m, (key, old, isParameter) =>
        {
            seen.Add(key);
            Assert.Equal(key is "weight" or "proj.weight" or "proj.bias", isParameter);
            return values[key].clone();
        });

        Assert.Equal(values.Keys.Order(), seen.Order());
        Assert.False(MetaModules.HasMetaTensors(m));
        Assert.Equal(values.Keys.Order(StringComparer.Ordinal), m.state_dict().Keys.Order(StringComparer.Ordinal));
        // forward reads the new tensors through the field, the Linear's property and the registry.
        using var y = m.forward(torch.ones(1, 3));
        // x*weight = [1,2,3]; proj: [0·1+1·2+2·3, 3·1+4·2+5·3] + [1,-1] = [9, 25]; + offset + steps = [119, 145]
        Assert.Equal(new[] { 119f, 145f }, y.data<float>().ToArray());
        Assert.Same(m.weight, m.get_parameter("weight"));
        Assert.Equal(DeviceType.CPU, m.proj.weight.device_type);
    }

    [Fact]
    public void BuildingOnMetaLeavesOtherThreadsOnTheirDevice()
    {
        DeviceType elsewhere = DeviceType.META;
        using var m = Construction.OnMeta(() =>
        {
            // Another thread creating tensors while this one builds (a second runspace generating, say).
            elsewhere = Task.Run(() => { using var t = torch.zeros(4); using var l = nn.Linear(2, 2); return l.weight.device_type; }).Result;
            return new Holder();
        });
        Assert.Equal(DeviceType.CPU, elsewhere);
        Assert.Equal(DeviceType.CPU, torch.get_default_device().type);
        Assert.All(AllTensors(m), t => Assert.Equal(DeviceType.META, t.device_type));
    }

    [Fact]
    public void ReplaceRefusesAWrongShapeAndNamesTheKey()
    {
        using var m = Construction.OnMeta(() => new Holder());
        var e = Assert.Throws<InvalidOperationException>(() =>
            MetaModules.Replace(m, (key, old, _) => key == "proj.weight" ? torch.zeros(3, 2) : torch.zeros(old.shape)));
        Assert.Contains("proj.weight", e.Message);
        Assert.Contains("[3,2]", e.Message);
    }

    [Fact]
    public void FluxDevTransformerBuildsOnMetaWithoutMemory()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("config.json"), HeaderOnlyCheckpoint.FluxDev["transformer"].Config);
        var config = FluxTransformer2DConfig.Load(dir.File("config.json"));
        long before = Environment.WorkingSet;
        using var model = Construction.OnMeta(() => new FluxTransformer2DModel(config));
        long grew = Environment.WorkingSet - before;
        long parameters = model.parameters().Sum(p => p.numel());
        Assert.InRange(parameters, 11_800_000_000L, 12_000_000_000L); // FLUX.1-dev: 11.9B (47.6 GB in float32)
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        Assert.True(grew < 512L << 20, $"building on meta grew the working set by {grew >> 20} MiB");
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float32)]
    public void MetaBuiltUNetLoadsTheFileExactlyInTheRequestedDtype(ScalarType dtype)
    {
        using var _ = torch.no_grad();
        var dir = Fixtures.PathOf("sd-tiny", "unet");
        using var model = FixtureModels.Load<UNet2DConditionModel>("sd-tiny", "unet", dtype);
        Assert.False(MetaModules.HasMetaTensors(model));
        using var file = SafeTensorsFile.Open(Path.Combine(dir, "diffusion_pytorch_model.safetensors"));
        var state = model.state_dict();
        Assert.Equal(file.Tensors.Keys.Order(StringComparer.Ordinal), state.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, actual) in state)
        {
            using var stored = file.Load(key);
            using var expected = stored.to(dtype);
            Assert.Equal(dtype, actual.dtype);
            Assert.Equal(DeviceType.CPU, actual.device_type);
            Assert.True(expected.equal(actual).all().item<bool>(), $"{key} differs from the file");
        }
    }
}
