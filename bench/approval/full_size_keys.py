"""State-dict keys and shapes of real models at full size, as diffusers / transformers build them from the published configs.

Run in the cpuref rig (../shared/tools/cpuref: diffusers 0.40.0.dev0 at 58eb52c0, transformers 5.12.1, torch 2.6):
    ../shared/tools/cpuref/run.sh python3 bench/approval/full_size_keys.py tests/Engine.Tests/TestData [NAME ...]
For each NAME (default: all) it writes TestData/NAME-keys.json (sorted key -> shape as a checkpoint holds them, tied aliases apart, the parameter
count, the source) and
TestData/NAME-config.json (the config the model was built from, which the xunit approval tests build this engine's model
from). Every model is built on torch's meta device: no weights, no memory, no download.

The configs are the published config.json files, written out here because the rig has no network to the Hub. They were
copied from the model repos (values as published; keys that only record provenance, such as _diffusers_version and
_name_or_path, left out, as they do not change the model):
  sd15-unet              stable-diffusion-v1-5/stable-diffusion-v1-5  unet/config.json
  sd15-vae               stable-diffusion-v1-5/stable-diffusion-v1-5  vae/config.json
  clip-l-text            openai/clip-vit-large-patch14's text model (= SD 1.5's and FLUX.1-dev's text_encoder/config.json)
  flux-dev-transformer   black-forest-labs/FLUX.1-dev                 transformer/config.json
  t5-xxl-encoder         google/t5-v1_1-xxl (= FLUX.1-dev's text_encoder_2/config.json), as T5EncoderModel
"""
import json, os, sys
import torch

DOWN4 = ["DownEncoderBlock2D"] * 4
UP4 = ["UpDecoderBlock2D"] * 4

MODELS = {
    "sd15-unet": ("diffusers", "UNet2DConditionModel", "stable-diffusion-v1-5/stable-diffusion-v1-5 unet/config.json", {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    }),
    "sd15-vae": ("diffusers", "AutoencoderKL", "stable-diffusion-v1-5/stable-diffusion-v1-5 vae/config.json", {
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": DOWN4, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
        "out_channels": 3, "sample_size": 512, "up_block_types": UP4,
    }),
    "clip-l-text": ("transformers", "CLIPTextModel", "openai/clip-vit-large-patch14 text_config (SD 1.5 text_encoder/config.json)", {
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2,
        "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0, "initializer_range": 0.02,
        "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
        "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "vocab_size": 49408,
    }),
    "flux-dev-transformer": ("diffusers", "FluxTransformer2DModel", "black-forest-labs/FLUX.1-dev transformer/config.json", {
        "_class_name": "FluxTransformer2DModel", "attention_head_dim": 128, "axes_dims_rope": [16, 56, 56],
        "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
        "num_layers": 19, "num_single_layers": 38, "patch_size": 1, "pooled_projection_dim": 768,
    }),
    "t5-xxl-encoder": ("transformers", "T5EncoderModel", "google/t5-v1_1-xxl config.json (FLUX.1-dev text_encoder_2/config.json)", {
        "architectures": ["T5EncoderModel"], "d_ff": 10240, "d_kv": 64, "d_model": 4096, "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new", "dropout_rate": 0.1, "eos_token_id": 1, "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0, "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-06,
        "model_type": "t5", "num_decoder_layers": 24, "num_heads": 64, "num_layers": 24, "pad_token_id": 0,
        "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32, "tie_word_embeddings": False,
        "vocab_size": 32128,
    }),
}


def build(library, class_name, config):
    if library == "diffusers":
        import diffusers
        return getattr(diffusers, class_name).from_config(config)
    import transformers
    cls = getattr(transformers, class_name)
    return cls(cls.config_class(**{k: v for k, v in config.items() if k != "architectures"}))


def main():
    out_dir, names = sys.argv[1], sys.argv[2:] or list(MODELS)
    import diffusers, transformers
    for name in names:
        library, class_name, source, config = MODELS[name]
        with torch.device("meta"):
            model = build(library, class_name, config)
        # A tied tensor (T5's encoder.embed_tokens.weight is shared.weight) is in state_dict twice but in a saved
        # checkpoint once, under its first name, as save_pretrained writes it: the layout a header-only folder has.
        state, tied, seen = {}, {}, {}
        for k, v in model.state_dict(keep_vars=True).items():
            if id(v) in seen:
                tied[k] = seen[id(v)]
            else:
                seen[id(v)] = k
                state[k] = list(v.shape)
        params = sum(p.numel() for p in model.parameters())
        version = f"diffusers {diffusers.__version__}" if library == "diffusers" else f"transformers {transformers.__version__}"
        with open(os.path.join(out_dir, f"{name}-keys.json"), "w") as f:
            json.dump({"source": f"{class_name} built from {source} on torch's meta device", "library": version,
                       "torch": torch.__version__, "parameters": params, "tensors": state, "tied": tied}, f, indent=0, sort_keys=True)
        with open(os.path.join(out_dir, f"{name}-config.json"), "w") as f:
            json.dump(config, f, indent=1)
        print(f"{name}: {len(state)} tensors, {params} parameters")


main()
