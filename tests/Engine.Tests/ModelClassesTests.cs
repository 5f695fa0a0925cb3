using Diffusion.Bench;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Sharding;
using Diffusion.Engine.SingleFile;
using TorchSharp;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// The model-class registry: every model class the fixtures' model_index.json files name resolves and builds, from its
/// typed config, exactly the tensors of the folder's weight files; an unknown class is refused with the loader's error.
/// </summary>
public class ModelClassesTests
{
    /// <summary>The fixture pipelines and the variant of their weight files (the single file's -Config folder has only fp16 ones).</summary>
    public static TheoryData<string, string?> FixtureFolders => new()
    {
        { "sd-tiny", null }, { "sdxl-tiny", null }, { "flux-tiny", null }, { "single-file/sd-tiny-fp16", "fp16" },
    };

    private static bool IsModelComponent(ComponentSpec s) =>
        !s.ClassName.EndsWith("Scheduler", StringComparison.Ordinal) && !s.ClassName.Contains("Tokenizer", StringComparison.Ordinal);

    [Theory]
    [MemberData(nameof(FixtureFolders))]
    public void EveryModelClassOfAFixtureResolvesAndBuildsItsFolderTensors(string fixture, string? variant)
    {
        TorchBackend.EnsureLoaded();
        var folder = DiffusersFolder.Open(Fixtures.PathOf(fixture.Split('/')));
        var models = folder.Components.Values.Where(IsModelComponent).ToList();
        Assert.NotEmpty(models);
        foreach (var spec in models)
        {
            var model = ModelClasses.Find(spec.ClassName);
            Assert.True(model is not null, $"{fixture}/{spec.Name}: {spec.ClassName} has no registration");
            Assert.Equal(spec.Library, model!.Library);
            var config = model.ReadConfig(folder.ComponentFile(spec.Name, "config.json"));
            Assert.IsType(model.ConfigType, config);
            using var module = Construction.OnMeta(() => model.Build(config));
            var built = module.state_dict().ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.shape));
            var files = WeightLoader.FindWeightFiles(folder.ComponentPath(spec.Name), variant);
            var stored = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var f in files)
            {
                using var file = SafeTensorsFile.Open(f);
                foreach (var (key, info) in file.Tensors) stored[model.ModuleKey?.Invoke(key) ?? key] = string.Join(",", info.Shape);
            }
            stored.Remove("embeddings.position_ids"); // a non-persistent buffer older transformers saved
            Assert.Equal(stored.OrderBy(kv => kv.Key, StringComparer.Ordinal), built.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        }
    }

    [Fact]
    public void RegistrationsAreUniqueAndComplete()
    {
        Assert.Equal(
            new[] { "AutoencoderKL", "CLIPTextModel", "CLIPTextModelWithProjection", "FluxTransformer2DModel", "T5EncoderModel", "UNet2DConditionModel" },
            ModelClasses.Names.Order(StringComparer.Ordinal));
        Assert.Equal(ModelClasses.Names, ComponentLoader.ModelClasses);
        Assert.Same(CLIPTextModel.Registration, ModelClasses.For("CLIPTextModel"));
        Assert.NotNull(ComponentWeights.ModuleKeyOf("CLIPTextModelWithProjection"));
        Assert.Null(ComponentWeights.ModuleKeyOf("UNet2DConditionModel"));
        Assert.Null(ComponentWeights.ModuleKeyOf("CLIPTokenizer"));
        Assert.False(ModelClasses.IsModel("PNDMScheduler"));
    }

    [Fact]
    public void AnUnknownClassGivesTheLoadersClearError()
    {
        var e = Assert.Throws<DiffusionException>(() => ModelClasses.For("AutoencoderTiny", "vae"));
        Assert.Equal("UnknownComponentClass", e.ErrorId);
        Assert.Contains("'vae' is a AutoencoderTiny, which this module cannot load", e.Message);
        Assert.Contains("UNet2DConditionModel", e.Message);

        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("model_index.json"), """{"_class_name":"StableDiffusionPipeline","vae":["diffusers","AutoencoderTiny"]}""");
        Directory.CreateDirectory(dir.File("vae"));
        File.WriteAllText(dir.File("vae", "config.json"), """{"_class_name":"AutoencoderTiny"}""");
        var weights = ComponentWeights.Open(dir.Path, new PipelineLoadOptions());
        var load = Assert.Throws<DiffusionException>(() => ComponentLoader.Load(weights, weights.Folder.Components["vae"], torch.CPU, torch.ScalarType.Float32));
        Assert.Equal("UnknownComponentClass", load.ErrorId);
        Assert.Contains("diffusers.AutoencoderTiny, which this module cannot load", load.Message);
        // Every registered class is named, found by reflection (sorted): none is listed by hand.
        Assert.Contains("Supported: AutoencoderKL, CLIPTextModel, CLIPTextModelWithProjection, FluxTransformer2DModel, T5EncoderModel, UNet2DConditionModel,", load.Message);
    }

    [Fact]
    public void AnotherClassesConfigIsRefusedByName()
    {
        var e = Assert.Throws<ArgumentException>(() => UNet2DConditionModel.Registration.Build(new AutoencoderKLConfig()));
        Assert.Contains("UNet2DConditionConfig, not a AutoencoderKLConfig", e.Message);
    }

    [Fact]
    public void HeaderOnlyCheckpointsBuildEveryRegisteredClass()
    {
        using var dir = new TempDirectory();
        var config = dir.File("config.json");
        File.WriteAllText(config, HeaderOnlyCheckpoint.FluxDev["text_encoder"].Config);
        var plain = HeaderOnlyCheckpoint.Shapes("CLIPTextModel", config).Select(t => t.Name).ToHashSet();
        var projected = HeaderOnlyCheckpoint.Shapes("CLIPTextModelWithProjection", config).ToDictionary(t => t.Name, t => t.Shape);
        Assert.Equal(new[] { "text_projection.weight" }, projected.Keys.Except(plain));
        Assert.Equal(new long[] { 768, 768 }, projected["text_projection.weight"]); // projection_dim x hidden_size
        Assert.Equal("UnknownComponentClass", Assert.Throws<DiffusionException>(() => HeaderOnlyCheckpoint.Shapes("AutoencoderTiny", config)).ErrorId);
    }

    [Fact]
    public void TheVaeScaleFactorIsDiffusersFromTheTypedConfig()
    {
        // vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1): sd-tiny's VAE has 4 levels.
        Assert.Equal(8, DiffusionPipeline.VaeScaleFactorOf(DiffusersFolder.Open(Fixtures.PathOf("sd-tiny"))));
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("model_index.json"), """{"_class_name":"StableDiffusionPipeline","vae":["diffusers","AutoencoderKL"]}""");
        Directory.CreateDirectory(dir.File("vae"));
        File.WriteAllText(dir.File("vae", "config.json"), """{"block_out_channels":[32,64],"down_block_types":["DownEncoderBlock2D","DownEncoderBlock2D"],"up_block_types":["UpDecoderBlock2D","UpDecoderBlock2D"]}""");
        Assert.Equal(2, DiffusionPipeline.VaeScaleFactorOf(DiffusersFolder.Open(dir.Path)));
        File.WriteAllText(dir.File("vae", "config.json"), "{}"); // diffusers' default: one level
        Assert.Equal(1, DiffusionPipeline.VaeScaleFactorOf(DiffusersFolder.Open(dir.Path)));
    }

    [Fact]
    public void AnLdmSingleFileRefusesLevelsOfDifferentDepths()
    {
        // sd-tiny's UNet has 3 levels of 2 layers; LDM's input_blocks numbering has one layers_per_block for all.
        var json = File.ReadAllText(Fixtures.PathOf("sd-tiny", "unet", "config.json")).Replace("\"layers_per_block\": 2", "\"layers_per_block\": [2, 1, 2]");
        Assert.Contains("[2, 1, 2]", json);
        var config = UNet2DConditionConfig.FromJson(json);
        var checkpoint = SingleFileCheckpoint.Open(Fixtures.PathOf("single-file", "sd-tiny.safetensors"));
        var e = Assert.Throws<DiffusionException>(() => checkpoint.Source("UNet2DConditionModel", config));
        Assert.Equal("ModelConfigNotSupported", e.ErrorId);
        Assert.Contains("layers_per_block", e.Message);
    }
}
