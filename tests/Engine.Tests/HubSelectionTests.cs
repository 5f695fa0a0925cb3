using Diffusion.Engine;
using Diffusion.Engine.Hub;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>DownloadSelection against real repos' file lists: only what a load reads, as diffusers' DiffusionPipeline.download.</summary>
public class HubSelectionTests
{
    private const string FluxIndex = """
        {"_class_name": "FluxPipeline", "_diffusers_version": "0.30.0.dev0",
         "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
         "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
         "tokenizer_2": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "FluxTransformer2DModel"],
         "vae": ["diffusers", "AutoencoderKL"]}
        """;

    // black-forest-labs/FLUX.1-dev's siblings.
    private static readonly string[] FluxDev =
    [
        ".gitattributes", "LICENSE.md", "README.md", "ae.safetensors", "dev_grid.jpg", "flux1-dev.safetensors", "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors",
        "text_encoder_2/config.json", "text_encoder_2/model-00001-of-00002.safetensors", "text_encoder_2/model-00002-of-00002.safetensors",
        "text_encoder_2/model.safetensors.index.json",
        "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
        "tokenizer_2/special_tokens_map.json", "tokenizer_2/spiece.model", "tokenizer_2/tokenizer.json", "tokenizer_2/tokenizer_config.json",
        "transformer/config.json", "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
        "transformer/diffusion_pytorch_model-00002-of-00003.safetensors", "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.json",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    ];

    private const string SdIndex = """
        {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
         "feature_extractor": ["transformers", "CLIPImageProcessor"], "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
         "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
         "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
        """;

    // stable-diffusion-v1-5/stable-diffusion-v1-5's siblings (fp32, fp16 and non_ema weights in each format).
    private static readonly string[] Sd15 =
    [
        ".gitattributes", "README.md", "model_index.json", "v1-5-pruned-emaonly.ckpt", "v1-5-pruned-emaonly.safetensors", "v1-5-pruned.ckpt",
        "v1-5-pruned.safetensors", "v1-inference.yaml",
        "feature_extractor/preprocessor_config.json",
        "safety_checker/config.json", "safety_checker/model.fp16.safetensors", "safety_checker/model.safetensors",
        "safety_checker/pytorch_model.bin", "safety_checker/pytorch_model.fp16.bin",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.fp16.safetensors", "text_encoder/model.safetensors",
        "text_encoder/pytorch_model.bin", "text_encoder/pytorch_model.fp16.bin",
        "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
        "unet/config.json", "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.bin",
        "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.non_ema.bin",
        "unet/diffusion_pytorch_model.non_ema.safetensors", "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.fp16.bin",
        "vae/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.safetensors",
    ];

    private static DownloadPlan Select(string index, string[] files, string[]? components = null, string? variant = null) =>
        DownloadSelection.Select(files, DownloadSelection.ParseModelIndex(index, "model_index.json"), components, variant, "org/model");

    [Fact]
    public void FluxDevWholePipeline_ConfigsTokenizersAndShards_NoRootCheckpoints()
    {
        var plan = Select(FluxIndex, FluxDev);
        Assert.Equal("model_index.json", plan.Files[0]);
        var expected = FluxDev.Where(f => f.Contains('/')).Append("model_index.json").Order(StringComparer.Ordinal);
        Assert.Equal(expected, plan.Files.Order(StringComparer.Ordinal));
        Assert.DoesNotContain("flux1-dev.safetensors", plan.Files);
        Assert.DoesNotContain("ae.safetensors", plan.Files);
        Assert.Empty(plan.Warnings);
    }

    [Fact]
    public void FluxDevTextEncoders_BringTheirTokenizers_Only()
    {
        var plan = Select(FluxIndex, FluxDev, ["text_encoder", "text_encoder_2"]);
        Assert.Equal(["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"], plan.Components.Order(StringComparer.Ordinal));
        Assert.All(plan.Files.Skip(1), f => Assert.Matches("^(text_encoder|text_encoder_2|tokenizer|tokenizer_2)/", f));
        Assert.Contains("text_encoder_2/model.safetensors.index.json", plan.Files);
        Assert.Contains("text_encoder_2/model-00002-of-00002.safetensors", plan.Files);
        Assert.Contains("tokenizer_2/spiece.model", plan.Files);
    }

    [Fact]
    public void FluxDevTransformer_BringsTheScheduler()
    {
        var plan = Select(FluxIndex, FluxDev, ["transformer"]);
        Assert.Equal(["model_index.json", "scheduler/scheduler_config.json", "transformer/config.json",
            "transformer/diffusion_pytorch_model-00001-of-00003.safetensors", "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
            "transformer/diffusion_pytorch_model-00003-of-00003.safetensors", "transformer/diffusion_pytorch_model.safetensors.index.json",
            "vae/config.json"], // the latents' size follows the VAE's config
            plan.Files.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Sd15_PlainWeights_NoPickleNoOtherVariants()
    {
        var plan = Select(SdIndex, Sd15);
        var weights = plan.Files.Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal)).Order(StringComparer.Ordinal);
        Assert.Equal(["safety_checker/model.safetensors", "text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"], weights);
        Assert.DoesNotContain(plan.Files, f => f.EndsWith(".bin", StringComparison.Ordinal) || f.EndsWith(".ckpt", StringComparison.Ordinal) || !f.Contains('/') && f != "model_index.json");
        Assert.Contains("feature_extractor/preprocessor_config.json", plan.Files);
    }

    [Fact]
    public void Sd15Fp16_TheVariantsFiles()
    {
        var plan = Select(SdIndex, Sd15, ["unet", "text_encoder", "vae"], "fp16");
        var weights = plan.Files.Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal)).Order(StringComparer.Ordinal);
        Assert.Equal(["text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors"], weights);
        Assert.Contains("unet/config.json", plan.Files);
        Assert.Contains("scheduler/scheduler_config.json", plan.Files);
        Assert.Contains("tokenizer/vocab.json", plan.Files);
        Assert.DoesNotContain("unet/diffusion_pytorch_model.non_ema.safetensors", plan.Files);
    }

    [Fact]
    public void VariantMissingForOneComponent_FallsBackToPlain_WithAWarning()
    {
        var files = Sd15.Where(f => f != "vae/diffusion_pytorch_model.fp16.safetensors").ToArray();
        var plan = Select(SdIndex, files, ["vae"], "fp16");
        Assert.Contains("vae/diffusion_pytorch_model.safetensors", plan.Files);
        Assert.Contains(plan.Warnings, w => w.Contains("fp16") && w.Contains("vae"));
    }

    [Fact]
    public void ShardedVariant_IndexAndShards()
    {
        string[] files =
        [
            "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors.index.json",
            "unet/diffusion_pytorch_model-00001-of-00002.safetensors", "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
            "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
            "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors", "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        ];
        var fp16 = Select(SdIndex, files, ["unet"], "fp16").Files.Where(f => f.StartsWith("unet/", StringComparison.Ordinal)).Order(StringComparer.Ordinal);
        Assert.Equal(["unet/config.json", "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors", "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
            "unet/diffusion_pytorch_model.safetensors.index.fp16.json"], fp16);
        var plain = Select(SdIndex, files, ["unet"]).Files.Where(f => f.StartsWith("unet/", StringComparison.Ordinal)).Order(StringComparer.Ordinal);
        Assert.Equal(["unet/config.json", "unet/diffusion_pytorch_model-00001-of-00002.safetensors", "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
            "unet/diffusion_pytorch_model.safetensors.index.json"], plain);
    }

    [Fact]
    public void ModelFolders_BringConfigJsonAndWeightsOnly()
    {
        var files = Sd15.Append("text_encoder/generation_config.json").Append("unet/README.md").ToArray();
        var plan = Select(SdIndex, files, ["text_encoder"]);
        Assert.Equal(["model_index.json", "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/merges.txt",
            "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json"], plan.Files.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void VariantNoComponentHas_IsAnError()
    {
        var e = Assert.Throws<DiffusionException>(() => Select(FluxIndex, FluxDev, ["transformer"], "fp16"));
        Assert.Equal("HubVariantNotFound", e.ErrorId);
    }

    [Fact]
    public void LegacyVariantIndex_IsTheVariants()
    {
        string[] files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors.fp16.index.json",
            "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors", "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
            "unet/diffusion_pytorch_model.safetensors"];
        var plan = Select(SdIndex, files, ["unet"], "fp16");
        Assert.Equal(["unet/config.json", "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors", "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors",
            "unet/diffusion_pytorch_model.safetensors.fp16.index.json"], plan.Files.Where(f => f.StartsWith("unet/", StringComparison.Ordinal)).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void OnlyVariantWeights_WithoutVariant_AsksForIt()
    {
        string[] files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"];
        var e = Assert.Throws<DiffusionException>(() => Select(SdIndex, files, ["unet"]));
        Assert.Equal("HubVariantRequired", e.ErrorId);
        Assert.Contains("-Variant fp16", e.Message);
    }

    [Fact]
    public void OnlyPickleWeights_Refused()
    {
        string[] files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin"];
        var e = Assert.Throws<DiffusionException>(() => Select(SdIndex, files, ["unet"]));
        Assert.Equal("HubNoSafetensors", e.ErrorId);
        Assert.Contains("unet/diffusion_pytorch_model.bin", e.Message);
        Assert.Contains("safetensors only", e.Message);
    }

    [Fact]
    public void UndeclaredComponent_Refused()
    {
        var e = Assert.Throws<DiffusionException>(() => Select(FluxIndex, FluxDev, ["unet"]));
        Assert.Equal("ComponentNotDeclared", e.ErrorId);
    }

    [Fact]
    public void NoModelIndex_NotADiffusersRepo()
    {
        var e = Assert.Throws<DiffusionException>(() => Select(FluxIndex, ["flux1-dev.safetensors", "ae.safetensors"]));
        Assert.Equal("HubNoModelIndex", e.ErrorId);
    }

    [Theory]
    [InlineData("black-forest-labs/FLUX.1-dev", true)]
    [InlineData("gpt2", true)]
    [InlineData("stable-diffusion-v1-5/stable-diffusion-v1-5", true)]
    [InlineData("org/../x", false)]
    [InlineData("../x", false)]
    [InlineData("/abs/path", false)]
    [InlineData("org\\name", false)]
    [InlineData("a/b/c", false)]
    [InlineData("org/na--me", false)]
    [InlineData("org/-name", false)]
    [InlineData("", false)]
    public void RepoIdRules(string id, bool valid) => Assert.Equal(valid, RepoIds.IsValid(id));

    [Fact]
    public void CacheFolderNames_AsHuggingfaceHub()
    {
        Assert.Equal("models--black-forest-labs--FLUX.1-dev", HubCache.FolderName("black-forest-labs/FLUX.1-dev"));
        Assert.Equal("black-forest-labs/FLUX.1-dev", HubCache.RepoIdOf("models--black-forest-labs--FLUX.1-dev"));
        Assert.Null(HubCache.RepoIdOf("datasets--org--name"));
        Assert.Equal("abc", HubClient.Normalize("W/\"abc\""));
        Assert.Equal("abc", HubClient.Normalize("\"abc\""));
    }
}
