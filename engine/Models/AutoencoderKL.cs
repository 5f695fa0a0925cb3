using System.Text.Json.Serialization;
using Diffusion.Engine.Models.Blocks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Diffusion.Engine.Models;

/// <summary>
/// The VAE's config.json (diffusers <c>AutoencoderKL</c>); a key that is absent takes diffusers' default (its
/// <c>__init__</c>'s: one level of 64 channels, not SD's four; every published VAE config lists them).
/// <c>scaling_factor</c> and <c>shift_factor</c> are for the pipeline (latents = (z - shift) * scale);
/// <c>force_upcast</c> tells a half-precision pipeline to decode in float32.
/// </summary>
public sealed class AutoencoderKLConfig : IModelConfig
{
    private const string ModelName = "AutoencoderKL";

    [JsonPropertyName("in_channels")] public int InChannels { get; set; } = 3;
    [JsonPropertyName("out_channels")] public int OutChannels { get; set; } = 3;
    [JsonPropertyName("down_block_types")] public string[] DownBlockTypes { get; set; } = ["DownEncoderBlock2D"];
    [JsonPropertyName("up_block_types")] public string[] UpBlockTypes { get; set; } = ["UpDecoderBlock2D"];
    [JsonPropertyName("block_out_channels")] public int[] BlockOutChannels { get; set; } = [64];
    [JsonPropertyName("layers_per_block")] public int LayersPerBlock { get; set; } = 1;
    [JsonPropertyName("act_fn")] public string ActFn { get; set; } = "silu";
    [JsonPropertyName("latent_channels")] public int LatentChannels { get; set; } = 4;
    [JsonPropertyName("norm_num_groups")] public int NormNumGroups { get; set; } = 32;
    [JsonPropertyName("sample_size")] public OneOrList<int> SampleSize { get; set; } = 32;
    [JsonPropertyName("scaling_factor")] public double ScalingFactor { get; set; } = 0.18215;
    [JsonPropertyName("shift_factor")] public double? ShiftFactor { get; set; }
    [JsonPropertyName("latents_mean")] public double[]? LatentsMean { get; set; }
    [JsonPropertyName("latents_std")] public double[]? LatentsStd { get; set; }
    [JsonPropertyName("force_upcast")] public bool ForceUpcast { get; set; } = true;
    [JsonPropertyName("use_quant_conv")] public bool UseQuantConv { get; set; } = true;
    [JsonPropertyName("use_post_quant_conv")] public bool UsePostQuantConv { get; set; } = true;
    [JsonPropertyName("mid_block_add_attention")] public bool MidBlockAddAttention { get; set; } = true;

    /// <summary>Where this config was read from (for error messages); "config.json" when built in code.</summary>
    [JsonIgnore] public string SourcePath { get; private set; } = "config.json";

    /// <summary>How many times the VAE halves the image size: 2^(len(block_out_channels) - 1) (8 for SD and FLUX).</summary>
    [JsonIgnore] public int ScaleFactor => 1 << (BlockOutChannels.Length - 1);

    public static AutoencoderKLConfig Load(string configJsonPath) =>
        Checked(ModelConfigJson.Read<AutoencoderKLConfig>(configJsonPath, ModelName), Path.GetFullPath(configJsonPath));

    /// <summary>A config from its JSON text; <paramref name="source"/> names it in messages.</summary>
    public static AutoencoderKLConfig FromJson(string json, string source = "config.json") =>
        Checked(ModelConfigJson.Parse<AutoencoderKLConfig>(json, source, ModelName), source);

    private static AutoencoderKLConfig Checked(AutoencoderKLConfig config, string source)
    {
        config.SourcePath = source;
        config.Validate();
        return config;
    }

    /// <summary>Throws a <see cref="DiffusionException"/> naming the first key this engine cannot run (NotSupported) or that is inconsistent (InvalidData).</summary>
    public void Validate()
    {
        DiffusionException Unsupported(string key, object? value, string detail)
            => ModelConfigJson.Unsupported(ModelName, SourcePath, key, value, detail);

        foreach (var type in DownBlockTypes)
            if (type != "DownEncoderBlock2D") throw Unsupported("down_block_types", type, "only DownEncoderBlock2D is implemented.");
        foreach (var type in UpBlockTypes)
            if (type != "UpDecoderBlock2D") throw Unsupported("up_block_types", type, "only UpDecoderBlock2D is implemented.");
        if (ActFn is not ("silu" or "swish")) throw Unsupported("act_fn", ActFn, "only \"silu\" is implemented.");
        if (DownBlockTypes.Length != BlockOutChannels.Length || UpBlockTypes.Length != BlockOutChannels.Length)
            throw new DiffusionException("ModelConfigInconsistent", DiffusionErrorKind.InvalidData,
                $"The {ModelName} config '{SourcePath}' has {DownBlockTypes.Length} down_block_types, {UpBlockTypes.Length} up_block_types and " +
                $"{BlockOutChannels.Length} block_out_channels; they must have the same length. Restore the model's original config.json.", SourcePath);
        var rules = new ConfigRules(ModelName, SourcePath);
        rules.Positive("in_channels", InChannels);
        rules.Positive("out_channels", OutChannels);
        rules.Positive("latent_channels", LatentChannels);
        rules.Positive("layers_per_block", LayersPerBlock);
        if (BlockOutChannels.Length == 0) throw rules.Invalid("block_out_channels", "[]", "it must list at least one block");
        rules.Positive("block_out_channels", BlockOutChannels);
        rules.Divides("norm_num_groups", NormNumGroups, "block_out_channels", BlockOutChannels.Select(c => (long)c));
        rules.FiniteNonZero("scaling_factor", ScalingFactor);
    }
}

/// <summary>
/// diffusers' <c>AutoencoderKL</c> (the VAE of Stable Diffusion and FLUX): an <see cref="Encoder"/> to the moments
/// of a diagonal Gaussian over latents (through <c>quant_conv</c> when the config has one) and a <see cref="Decoder"/>
/// back to pixels (after <c>post_quant_conv</c> when present). Images are [B, 3, H, W] in [-1, 1].
/// </summary>
public sealed partial class AutoencoderKL : nn.Module
{
    public readonly Encoder encoder;
    public readonly Decoder decoder;
    public readonly Conv2d? quant_conv;
    public readonly Conv2d? post_quant_conv;

    public AutoencoderKLConfig Config { get; }

    public AutoencoderKL(AutoencoderKLConfig config)
        : base(nameof(AutoencoderKL))
    {
        config.Validate();
        Config = config;
        var channels = config.BlockOutChannels.Select(c => (long)c).ToArray();
        encoder = new Encoder(config.InChannels, config.LatentChannels, channels, config.LayersPerBlock, config.NormNumGroups, config.MidBlockAddAttention);
        decoder = new Decoder(config.LatentChannels, config.OutChannels, channels, config.LayersPerBlock, config.NormNumGroups, config.MidBlockAddAttention);
        if (config.UseQuantConv) quant_conv = nn.Conv2d(2 * config.LatentChannels, 2 * config.LatentChannels, kernel_size: 1, device: Construction.Device, dtype: Construction.DType);
        if (config.UsePostQuantConv) post_quant_conv = nn.Conv2d(config.LatentChannels, config.LatentChannels, kernel_size: 1, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <summary>The posterior's mean and clamped log-variance (diffusers' <c>encode(x).latent_dist</c>).</summary>
    /// <param name="x">[B, in_channels, H, W] image in [-1, 1]</param>
    /// <returns>each [B, latent_channels, H/f, W/f], unscaled (apply (z - shift) * scaling_factor for the denoiser)</returns>
    public (Tensor Mean, Tensor LogVar) Encode(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var moments = encoder.call(x);
        if (quant_conv is not null) moments = quant_conv.call(moments);
        var (mean, logvar) = DiagonalGaussian.Split(moments);
        return scope.MoveToOuter(mean, logvar);
    }

    /// <summary>The posterior's mode (diffusers' <c>latent_dist.mode()</c>), unscaled.</summary>
    /// <param name="x">[B, in_channels, H, W] image in [-1, 1]</param>
    /// <returns>[B, latent_channels, H/f, W/f]</returns>
    public Tensor EncodeMean(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return scope.MoveToOuter(Encode(x).Mean);
    }

    /// <summary>A draw from the posterior (diffusers' <c>latent_dist.sample(generator)</c>), unscaled.</summary>
    /// <param name="x">[B, in_channels, H, W] image in [-1, 1]</param>
    /// <returns>[B, latent_channels, H/f, W/f]</returns>
    public Tensor EncodeSample(Tensor x, Generator? generator)
    {
        using var scope = torch.NewDisposeScope();
        var (mean, logvar) = Encode(x);
        return scope.MoveToOuter(DiagonalGaussian.Sample(mean, logvar, generator));
    }

    /// <param name="z">[B, latent_channels, h, w] latents, already unscaled by the caller (latents / scaling_factor + shift_factor)</param>
    /// <returns>[B, out_channels, h*f, w*f] image in about [-1, 1]</returns>
    public Tensor Decode(Tensor z)
    {
        using var scope = torch.NewDisposeScope();
        if (post_quant_conv is not null) z = post_quant_conv.call(z);
        return scope.MoveToOuter(decoder.call(z));
    }
}
