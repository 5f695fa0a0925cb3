using Diffusion.Bench;
using System.Text.Json;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using Diffusion.Engine.Sharding;
using Diffusion.Engine.SingleFile;
using TorchSharp;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// Single-file checkpoints: each key map turns the fixture file into exactly the tensors of the diffusers folder it was
/// made from (bitwise, key for key, same dtype), layouts and full-size architectures are recognised from headers, and
/// what cannot be converted is refused with the keys it saw.
/// </summary>
public class SingleFileTests
{
    private static string SingleFile(string name) => Fixtures.PathOf("single-file", name);

    private static IModelConfig Config(string folder, string component, string className) =>
        ModelClasses.For(className).ReadConfig(Fixtures.PathOf(folder, component, "config.json"));

    /// <summary>Every tensor the map gives equals the folder's tensor of that key, and the key sets are the same.</summary>
    private static void AssertConvertsToFolder(string file, string className, string folder, string component)
    {
        TorchBackend.EnsureLoaded();
        var checkpoint = SingleFileCheckpoint.Open(SingleFile(file));
        var source = checkpoint.Source(className, Config(folder, component, className));
        var folderFiles = WeightLoader.FindWeightFiles(Fixtures.PathOf(folder, component));
        Func<string, string> moduleKey = className == "CLIPTextModel" ? CLIPTextModel.ModuleKey : k => k;
        using var expected = SafeTensorsFile.Open(folderFiles.Single());
        using var opened = SafeTensorsFile.Open(source.Files.Single());
        var mapped = WeightSource.Index(source.Map([opened]));
        Assert.Equal(expected.Tensors.Keys.Select(moduleKey).Order(StringComparer.Ordinal), mapped.Keys.Order(StringComparer.Ordinal));
        foreach (var key in expected.Tensors.Keys)
        {
            using var want = expected.Load(key);
            using var got = mapped[moduleKey(key)].Load();
            Assert.Equal(want.dtype, got.dtype);
            Assert.Equal(want.shape, got.shape);
            Assert.True(want.equal(got).all().item<bool>(), $"{key}: the converted tensor differs from the folder's");
        }
    }

    [Fact]
    public void LdmUNetConvertsToTheFolderUNet() => AssertConvertsToFolder("sd-tiny.safetensors", "UNet2DConditionModel", "sd-tiny", "unet");

    [Fact]
    public void LdmVaeConvertsToTheFolderVae() => AssertConvertsToFolder("sd-tiny.safetensors", "AutoencoderKL", "sd-tiny", "vae");

    [Fact]
    public void LdmClipConvertsToTheFolderTextEncoder() => AssertConvertsToFolder("sd-tiny.safetensors", "CLIPTextModel", "sd-tiny", "text_encoder");

    [Fact]
    public void BflTransformerConvertsToTheFolderTransformer() =>
        AssertConvertsToFolder("flux-tiny-transformer-bfl.safetensors", "FluxTransformer2DModel", "flux-tiny", "transformer");

    [Fact]
    public void BflAutoencoderConvertsToTheFolderVae() => AssertConvertsToFolder("flux-tiny-ae-bfl.safetensors", "AutoencoderKL", "flux-tiny", "vae");

    [Fact]
    public void RecognisesEachLayoutAndWhatItHolds()
    {
        var sd = SingleFileCheckpoint.Open(SingleFile("sd-tiny.safetensors"));
        Assert.Equal(SingleFileLayout.CompVisLdm, sd.Layout);
        Assert.Equal(["AutoencoderKL", "CLIPTextModel", "UNet2DConditionModel"], sd.Models.Keys.Order(StringComparer.Ordinal));
        var flux = SingleFileCheckpoint.Open(SingleFile("flux-tiny-transformer-bfl.safetensors"));
        Assert.Equal(SingleFileLayout.BflFluxTransformer, flux.Layout);
        Assert.Equal(["FluxTransformer2DModel"], flux.Models.Keys);
        var ae = SingleFileCheckpoint.Open(SingleFile("flux-tiny-ae-bfl.safetensors"));
        Assert.Equal(SingleFileLayout.LdmAutoencoder, ae.Layout);
        Assert.Equal(["AutoencoderKL"], ae.Models.Keys);
        // The tiny models have the layouts but not the published sizes: no config repo is guessed for them.
        Assert.Null(KnownArchitectures.Detect(sd.Header));
        Assert.Null(KnownArchitectures.Detect(flux.Header));
        Assert.Null(KnownArchitectures.Detect(ae.Header));
    }

    [Fact]
    public void UnknownLayoutIsRefusedNamingItsKeysAndTheKnownLayouts()
    {
        // A diffusers model file is not a single-file layout (its folder is loaded instead).
        var e = Assert.Throws<DiffusionException>(() => SingleFileCheckpoint.Open(Fixtures.PathOf("sd-tiny", "unet", "diffusion_pytorch_model.safetensors")));
        Assert.Equal("SingleFileLayoutUnknown", e.ErrorId);
        Assert.Contains("conv_in.bias", e.Message);
        Assert.Contains("CompVis/LDM", e.Message);
        Assert.Contains("Black Forest Labs FLUX.1 transformer", e.Message);
    }

    [Fact]
    public void PickleAndOtherFilesAreRefused()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("model.ckpt"), "not read");
        Assert.Equal("PickleWeightsRefused", Assert.Throws<DiffusionException>(() => SingleFileCheckpoint.Open(dir.File("model.ckpt"))).ErrorId);
        File.WriteAllText(dir.File("model.gguf"), "not read");
        Assert.Equal("SingleFileNotSafetensors", Assert.Throws<DiffusionException>(() => SingleFileCheckpoint.Open(dir.File("model.gguf"))).ErrorId);
    }

    [Fact]
    public void KeyInsideAModelPrefixThatTheMapDoesNotKnowIsRefused()
    {
        TorchBackend.EnsureLoaded();
        using var dir = new TempDirectory();
        var path = dir.File("odd.safetensors");
        using (var sd = SafeTensorsFile.Open(SingleFile("sd-tiny.safetensors")))
        {
            var tensors = sd.Tensors.Keys.Where(k => k.StartsWith("model.diffusion_model.", StringComparison.Ordinal)).ToDictionary(k => k, sd.Load);
            tensors["model.diffusion_model.input_blocks.1.7.weight"] = torch.zeros(2);
            SafeTensorsWriter.Save(path, tensors);
        }
        var e = Assert.Throws<DiffusionException>(() => SingleFileCheckpoint.Open(path).Source("UNet2DConditionModel", Config("sd-tiny", "unet", "UNet2DConditionModel")));
        Assert.Equal("SingleFileKeyUnknown", e.ErrorId);
        Assert.Contains("model.diffusion_model.input_blocks.1.7.weight", e.Message);
    }

    // ---- full-size headers (no data): the maps and the detection on the published architectures ----

    /// <summary>This test's own inverse of diffusers' LDM UNet conversion for SD 1.5's block layout (3 layers per block incl. the sampler).</summary>
    private static string ToLdmUNet(string key)
    {
        string Resnet(string r) => r.Replace("norm1", "in_layers.0").Replace("conv1", "in_layers.2").Replace("norm2", "out_layers.0")
            .Replace("conv2", "out_layers.3").Replace("time_emb_proj", "emb_layers.1").Replace("conv_shortcut", "skip_connection");
        var p = key.Split('.');
        string Tail(int from) => string.Join('.', p.Skip(from));
        return p[0] switch
        {
            "conv_in" => $"input_blocks.0.0.{p[1]}",
            "time_embedding" => $"time_embed.{(p[1] == "linear_1" ? 0 : 2)}.{p[2]}",
            "conv_norm_out" => $"out.0.{p[1]}",
            "conv_out" => $"out.2.{p[1]}",
            "down_blocks" when p[2] == "resnets" => $"input_blocks.{1 + int.Parse(p[1]) * 3 + int.Parse(p[3])}.0.{Resnet(Tail(4))}",
            "down_blocks" when p[2] == "attentions" => $"input_blocks.{1 + int.Parse(p[1]) * 3 + int.Parse(p[3])}.1.{Tail(4)}",
            "down_blocks" => $"input_blocks.{1 + int.Parse(p[1]) * 3 + 2}.0.op.{Tail(5)}",
            "mid_block" when p[1] == "resnets" => $"middle_block.{int.Parse(p[2]) * 2}.{Resnet(Tail(3))}",
            "mid_block" => $"middle_block.1.{Tail(3)}",
            "up_blocks" when p[2] == "resnets" => $"output_blocks.{int.Parse(p[1]) * 3 + int.Parse(p[3])}.0.{Resnet(Tail(4))}",
            "up_blocks" when p[2] == "attentions" => $"output_blocks.{int.Parse(p[1]) * 3 + int.Parse(p[3])}.1.{Tail(4)}",
            "up_blocks" => $"output_blocks.{int.Parse(p[1]) * 3 + 2}.{(p[1] == "0" ? 1 : 2)}.conv.{Tail(5)}", // SD 1.5: up block 0 has no attentions
            _ => throw new ArgumentException(key),
        };
    }

    /// <summary>SD 1.5 as A1111's single file names it: the published UNet's and CLIP ViT-L's tensors under LDM names, header only.</summary>
    private static (string Path, IReadOnlyList<(string Name, long[] Shape)> UNet) WriteSd15(TempDirectory dir)
    {
        var unetConfig = dir.File("unet.json");
        File.WriteAllText(unetConfig, HeaderOnlyCheckpoint.StableDiffusion15Unet);
        var clipConfig = dir.File("clip.json");
        File.WriteAllText(clipConfig, HeaderOnlyCheckpoint.FluxDev["text_encoder"].Config); // FLUX.1's CLIP is SD 1.5's: ViT-L/14, 768 wide
        var unet = HeaderOnlyCheckpoint.Shapes("UNet2DConditionModel", unetConfig);
        var clip = HeaderOnlyCheckpoint.Shapes("CLIPTextModel", clipConfig);
        var tensors = unet.Select(t => ("model.diffusion_model." + ToLdmUNet(t.Name), "F16", t.Shape))
            .Concat(clip.Select(t => ("cond_stage_model.transformer.text_model." + t.Name, "F16", t.Shape)));
        var path = dir.File("v1-5-pruned-emaonly.safetensors");
        HeaderOnlyCheckpoint.WriteSparse(path, tensors);
        return (path, unet);
    }

    [Fact]
    public void FullSizeSd15IsRecognisedAndItsUNetMapsToThePublishedModel()
    {
        using var dir = new TempDirectory();
        var (path, unet) = WriteSd15(dir);
        var checkpoint = SingleFileCheckpoint.Open(path);
        Assert.Equal(new KnownArchitecture("Stable Diffusion 1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5", SingleFileLayout.CompVisLdm),
            KnownArchitectures.Detect(checkpoint.Header));
        var config = UNet2DConditionConfig.FromJson(HeaderOnlyCheckpoint.StableDiffusion15Unet);
        var entries = checkpoint.Source("UNet2DConditionModel", config).Describe();
        Assert.Equal(unet.Select(t => $"{t.Name} [{string.Join(",", t.Shape)}]").Order(StringComparer.Ordinal),
            entries.Select(t => $"{t.Name} [{string.Join(",", t.Shape)}]").Order(StringComparer.Ordinal));
        // Planned from the single file's header as from a folder: the same units and bytes as the published UNet.
        var layout = ModuleLayouts.FromSource(checkpoint.Source("UNet2DConditionModel", config), "UNet2DConditionModel", "float16", config);
        var folderLayout = ModuleLayouts.FromTensors("UNet2DConditionModel", unet.Select(t => new TensorEntry(t.Name, "F32", t.Shape)), "float16", config);
        Assert.Equal(folderLayout.TotalBytes, layout.TotalBytes);
        Assert.Equal(folderLayout.Units.Select(u => $"{u.Path} {u.Bytes}"), layout.Units.Select(u => $"{u.Path} {u.Bytes}"));
    }

    /// <summary>This test's own inverse of diffusers' FLUX conversion: each diffusers tensor's BFL key and its place among the fused rows.</summary>
    private static (string Key, int Slot) ToBfl(string key)
    {
        var dot = key.LastIndexOf('.');
        string module = key[..dot], param = key[(dot + 1)..];
        var top = new Dictionary<string, string>
        {
            ["time_text_embed.timestep_embedder.linear_1"] = "time_in.in_layer", ["time_text_embed.timestep_embedder.linear_2"] = "time_in.out_layer",
            ["time_text_embed.text_embedder.linear_1"] = "vector_in.in_layer", ["time_text_embed.text_embedder.linear_2"] = "vector_in.out_layer",
            ["time_text_embed.guidance_embedder.linear_1"] = "guidance_in.in_layer", ["time_text_embed.guidance_embedder.linear_2"] = "guidance_in.out_layer",
            ["context_embedder"] = "txt_in", ["x_embedder"] = "img_in", ["proj_out"] = "final_layer.linear", ["norm_out.linear"] = "final_layer.adaLN_modulation.1",
        };
        if (top.TryGetValue(module, out var t)) return ($"{t}.{param}", 0);
        var p = module.Split('.', 3);
        string scale = param == "weight" ? "scale" : param;
        if (p[0] == "transformer_blocks")
        {
            var b = $"double_blocks.{p[1]}.";
            return p[2] switch
            {
                "attn.to_q" => ($"{b}img_attn.qkv.{param}", 0), "attn.to_k" => ($"{b}img_attn.qkv.{param}", 1), "attn.to_v" => ($"{b}img_attn.qkv.{param}", 2),
                "attn.add_q_proj" => ($"{b}txt_attn.qkv.{param}", 0), "attn.add_k_proj" => ($"{b}txt_attn.qkv.{param}", 1), "attn.add_v_proj" => ($"{b}txt_attn.qkv.{param}", 2),
                "norm1.linear" => ($"{b}img_mod.lin.{param}", 0), "norm1_context.linear" => ($"{b}txt_mod.lin.{param}", 0),
                "attn.norm_q" => ($"{b}img_attn.norm.query_norm.{scale}", 0), "attn.norm_k" => ($"{b}img_attn.norm.key_norm.{scale}", 0),
                "attn.norm_added_q" => ($"{b}txt_attn.norm.query_norm.{scale}", 0), "attn.norm_added_k" => ($"{b}txt_attn.norm.key_norm.{scale}", 0),
                "ff.net.0.proj" => ($"{b}img_mlp.0.{param}", 0), "ff.net.2" => ($"{b}img_mlp.2.{param}", 0),
                "ff_context.net.0.proj" => ($"{b}txt_mlp.0.{param}", 0), "ff_context.net.2" => ($"{b}txt_mlp.2.{param}", 0),
                "attn.to_out.0" => ($"{b}img_attn.proj.{param}", 0), "attn.to_add_out" => ($"{b}txt_attn.proj.{param}", 0),
                _ => throw new ArgumentException(key),
            };
        }
        var s = $"single_blocks.{p[1]}.";
        return p[2] switch
        {
            "attn.to_q" => ($"{s}linear1.{param}", 0), "attn.to_k" => ($"{s}linear1.{param}", 1), "attn.to_v" => ($"{s}linear1.{param}", 2), "proj_mlp" => ($"{s}linear1.{param}", 3),
            "norm.linear" => ($"{s}modulation.lin.{param}", 0), "attn.norm_q" => ($"{s}norm.query_norm.{scale}", 0), "attn.norm_k" => ($"{s}norm.key_norm.{scale}", 0),
            "proj_out" => ($"{s}linear2.{param}", 0),
            _ => throw new ArgumentException(key),
        };
    }

    /// <summary>FLUX.1 as BFL's flux1-dev.safetensors names it (header only), from the published transformer config.</summary>
    private static (string Path, IReadOnlyList<(string Name, long[] Shape)> Model) WriteFlux1(TempDirectory dir, bool guidance)
    {
        var configJson = HeaderOnlyCheckpoint.FluxDev["transformer"].Config;
        if (!guidance) configJson = configJson.Replace("\"guidance_embeds\":true", "\"guidance_embeds\":false");
        var config = dir.File($"flux-{guidance}.json");
        File.WriteAllText(config, configJson);
        var model = HeaderOnlyCheckpoint.Shapes("FluxTransformer2DModel", config);
        var fused = model.GroupBy(t => ToBfl(t.Name).Key).Select(g =>
        {
            var parts = g.OrderBy(t => ToBfl(t.Name).Slot).ToList();
            return (g.Key, "BF16", (long[])[parts.Sum(t => t.Shape[0]), .. parts[0].Shape.Skip(1)]);
        });
        var path = dir.File(guidance ? "flux1-dev.safetensors" : "flux1-schnell.safetensors");
        HeaderOnlyCheckpoint.WriteSparse(path, fused);
        return (path, model);
    }

    [Theory]
    [InlineData(true, "FLUX.1-dev", "black-forest-labs/FLUX.1-dev")]
    [InlineData(false, "FLUX.1-schnell", "black-forest-labs/FLUX.1-schnell")]
    public void FullSizeFlux1IsRecognisedAndMapsToThePublishedModel(bool guidance, string name, string repo)
    {
        using var dir = new TempDirectory();
        var (path, model) = WriteFlux1(dir, guidance);
        var checkpoint = SingleFileCheckpoint.Open(path);
        Assert.Equal(new KnownArchitecture(name, repo, SingleFileLayout.BflFluxTransformer), KnownArchitectures.Detect(checkpoint.Header));
        var entries = checkpoint.Source("FluxTransformer2DModel", default).Describe();
        Assert.Equal(model.Select(t => $"{t.Name} [{string.Join(",", t.Shape)}]").Order(StringComparer.Ordinal),
            entries.Select(t => $"{t.Name} [{string.Join(",", t.Shape)}]").Order(StringComparer.Ordinal));
    }
}
