using System.Text;
using System.Text.Json;
using Diffusion.Engine;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Bench;

/// <summary>
/// For tests and the benchmark: diffusers folders whose safetensors files have a real model's header (every tensor's
/// name, dtype, shape and offsets, as the model class built from the config has them) and a data section that is a
/// hole in a sparse file, so a 12B-parameter FLUX.1-dev takes no disk space and plans like the real download. The
/// shapes come from building the model on torch's meta device (no memory). Loading such a folder fails: there are
/// no weights, only zeros.
/// </summary>
public static class HeaderOnlyCheckpoint
{
    /// <summary>FLUX.1-dev's configs as published in black-forest-labs/FLUX.1-dev (model_index and the four models).</summary>
    public static readonly IReadOnlyDictionary<string, (string ClassName, string Library, string File, string Config)> FluxDev =
        new Dictionary<string, (string, string, string, string)>
        {
            ["transformer"] = ("FluxTransformer2DModel", "diffusers", "diffusion_pytorch_model.safetensors",
                """{"_class_name":"FluxTransformer2DModel","attention_head_dim":128,"axes_dims_rope":[16,56,56],"guidance_embeds":true,"in_channels":64,"joint_attention_dim":4096,"num_attention_heads":24,"num_layers":19,"num_single_layers":38,"patch_size":1,"pooled_projection_dim":768}"""),
            ["text_encoder"] = ("CLIPTextModel", "transformers", "model.safetensors",
                """{"architectures":["CLIPTextModel"],"attention_dropout":0.0,"bos_token_id":0,"dropout":0.0,"eos_token_id":2,"hidden_act":"quick_gelu","hidden_size":768,"initializer_factor":1.0,"initializer_range":0.02,"intermediate_size":3072,"layer_norm_eps":1e-05,"max_position_embeddings":77,"model_type":"clip_text_model","num_attention_heads":12,"num_hidden_layers":12,"pad_token_id":1,"projection_dim":768,"vocab_size":49408}"""),
            ["text_encoder_2"] = ("T5EncoderModel", "transformers", "model.safetensors",
                """{"architectures":["T5EncoderModel"],"d_ff":10240,"d_kv":64,"d_model":4096,"decoder_start_token_id":0,"dense_act_fn":"gelu_new","dropout_rate":0.1,"eos_token_id":1,"feed_forward_proj":"gated-gelu","initializer_factor":1.0,"is_encoder_decoder":true,"is_gated_act":true,"layer_norm_epsilon":1e-06,"model_type":"t5","num_decoder_layers":24,"num_heads":64,"num_layers":24,"pad_token_id":0,"relative_attention_max_distance":128,"relative_attention_num_buckets":32,"tie_word_embeddings":false,"vocab_size":32128}"""),
            ["vae"] = ("AutoencoderKL", "diffusers", "diffusion_pytorch_model.safetensors",
                """{"_class_name":"AutoencoderKL","act_fn":"silu","block_out_channels":[128,256,512,512],"down_block_types":["DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D"],"force_upcast":true,"in_channels":3,"latent_channels":16,"latents_mean":null,"latents_std":null,"layers_per_block":2,"mid_block_add_attention":true,"norm_num_groups":32,"out_channels":3,"sample_size":1024,"scaling_factor":0.3611,"shift_factor":0.1159,"up_block_types":["UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D"],"use_post_quant_conv":false,"use_quant_conv":false}"""),
        };

    /// <summary>Stable Diffusion 1.5's UNet config as published (stable-diffusion-v1-5/unet/config.json): 860M parameters.</summary>
    public const string StableDiffusion15Unet =
        """{"_class_name":"UNet2DConditionModel","act_fn":"silu","attention_head_dim":8,"block_out_channels":[320,640,1280,1280],"center_input_sample":false,"cross_attention_dim":768,"down_block_types":["CrossAttnDownBlock2D","CrossAttnDownBlock2D","CrossAttnDownBlock2D","DownBlock2D"],"downsample_padding":1,"flip_sin_to_cos":true,"freq_shift":0,"in_channels":4,"layers_per_block":2,"mid_block_scale_factor":1,"norm_eps":1e-05,"norm_num_groups":32,"out_channels":4,"sample_size":64,"up_block_types":["UpBlock2D","CrossAttnUpBlock2D","CrossAttnUpBlock2D","CrossAttnUpBlock2D"]}""";

    /// <summary>Stable Diffusion 1.5's VAE config as published (stable-diffusion-v1-5/vae/config.json; scaling_factor is diffusers' default 0.18215).</summary>
    public const string StableDiffusion15Vae =
        """{"_class_name":"AutoencoderKL","act_fn":"silu","block_out_channels":[128,256,512,512],"down_block_types":["DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D"],"in_channels":3,"latent_channels":4,"layers_per_block":2,"norm_num_groups":32,"out_channels":3,"sample_size":512,"up_block_types":["UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D"]}""";

    /// <summary>A pipeline folder holding only SD 1.5's UNet (float32 header, as published), for load benchmarks.</summary>
    public static string WriteStableDiffusion15Unet(string folder)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "model_index.json"),
            """{"_class_name":"StableDiffusionPipeline","unet":["diffusers","UNet2DConditionModel"]}""");
        WriteComponent(Path.Combine(folder, "unet"), "UNet2DConditionModel", StableDiffusion15Unet, "diffusion_pytorch_model.safetensors", "F32");
        return folder;
    }

    private const string FluxDevScheduler =
        """{"_class_name":"FlowMatchEulerDiscreteScheduler","base_image_seq_len":256,"base_shift":0.5,"max_image_seq_len":4096,"max_shift":1.15,"num_train_timesteps":1000,"shift":3.0,"use_dynamic_shifting":true}""";

    /// <summary>Writes a FLUX.1-dev folder (bfloat16 headers, as published) under <paramref name="folder"/> and returns its path.</summary>
    public static string WriteFluxDev(string folder, string dtype = "BF16")
    {
        Directory.CreateDirectory(folder);
        var index = new Dictionary<string, object?[]>
        {
            ["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            ["text_encoder"] = ["transformers", "CLIPTextModel"], ["text_encoder_2"] = ["transformers", "T5EncoderModel"],
            ["tokenizer"] = ["transformers", "CLIPTokenizer"], ["tokenizer_2"] = ["transformers", "T5TokenizerFast"],
            ["transformer"] = ["diffusers", "FluxTransformer2DModel"], ["vae"] = ["diffusers", "AutoencoderKL"],
        };
        var json = new Dictionary<string, object> { ["_class_name"] = "FluxPipeline" };
        foreach (var (k, v) in index) json[k] = v;
        File.WriteAllText(Path.Combine(folder, "model_index.json"), JsonSerializer.Serialize(json));
        Directory.CreateDirectory(Path.Combine(folder, "scheduler"));
        File.WriteAllText(Path.Combine(folder, "scheduler", "scheduler_config.json"), FluxDevScheduler);
        foreach (var (name, (className, _, file, config)) in FluxDev)
            WriteComponent(Path.Combine(folder, name), className, config, file, dtype);
        return folder;
    }

    /// <summary>Writes config.json and a header-only safetensors file for the model <paramref name="className"/> built from <paramref name="configJson"/>.</summary>
    public static void WriteComponent(string dir, string className, string configJson, string fileName, string dtype = "BF16")
    {
        Directory.CreateDirectory(dir);
        var configPath = Path.Combine(dir, "config.json");
        File.WriteAllText(configPath, configJson);
        var tensors = Shapes(className, configPath);
        WriteSparse(Path.Combine(dir, fileName), tensors.Select(t => (t.Name, dtype, t.Shape)));
    }

    /// <summary>The state_dict names and shapes of the model built from a config, on the meta device.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> Shapes(string className, string configPath)
    {
        TorchBackend.EnsureLoaded();
        var model = ModelClasses.For(className);
        var config = model.ReadConfig(configPath);
        using var module = Construction.OnMeta(() => model.Build(config));
        return module.state_dict().Select(kv => (kv.Key, kv.Value.shape)).ToList();
    }

    /// <summary>A safetensors file whose data section is a hole: the header is written, the file is extended to its full length.</summary>
    public static void WriteSparse(string path, IEnumerable<(string Name, string DType, long[] Shape)> tensors)
    {
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var (name, dtype, shape) in tensors)
        {
            long bytes = shape.Aggregate(1L, (a, b) => a * b) * DTypes.ElementSize(dtype);
            header[name] = new { dtype, shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var headerBytes = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - headerBytes.Length % 8) % 8; // safetensors pads the header with spaces to 8 bytes
        headerBytes = [.. headerBytes, .. Enumerable.Repeat((byte)' ', pad)];
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        fs.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
        fs.Write(headerBytes);
        fs.SetLength(8 + headerBytes.Length + offset);
    }
}
