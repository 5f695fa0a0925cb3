"""State-dict keys and shapes of SDXL 1.0 base's UNet, as diffusers builds it from the published config.

Run in the cpuref rig (../shared/tools/cpuref, diffusers 0.40.0.dev0 at 58eb52c0):
    ../shared/tools/cpuref/run.sh python3 bench/approval/sdxl_base_unet_keys.py tests/Engine.Tests/TestData/sdxl-base-unet-keys.json
The model is built on torch's meta device (no weights, no memory). The config is stabilityai/stable-diffusion-xl-base-1.0's
unet/config.json as published (copied into tests/Engine.Tests/TestData/sdxl-base-unet-config.json by this script).
"""
import json, os, sys
import torch
from diffusers import UNet2DConditionModel

CONFIG = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280], "center_input_sample": False, "class_embed_type": None,
    "class_embeddings_concat": False, "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 2048,
    "cross_attention_norm": None, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": None, "num_class_embeds": None,
    "only_cross_attention": False, "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False, "resnet_time_scale_shift": "default",
    "sample_size": 128, "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": False,
    "use_linear_projection": True,
}

out = sys.argv[1]
with torch.device("meta"):
    model = UNet2DConditionModel.from_config(CONFIG)
state = {k: list(v.shape) for k, v in model.state_dict().items()}
params = sum(p.numel() for p in model.parameters())
with open(out, "w") as f:
    json.dump({"source": "diffusers UNet2DConditionModel.from_config(stabilityai/stable-diffusion-xl-base-1.0 unet/config.json) on meta",
               "diffusers": __import__("diffusers").__version__, "parameters": params, "tensors": state}, f, indent=0, sort_keys=True)
with open(os.path.join(os.path.dirname(out), "sdxl-base-unet-config.json"), "w") as f:
    json.dump(CONFIG, f, indent=1)
print(len(state), "tensors,", params, "parameters")
