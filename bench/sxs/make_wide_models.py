"""Real-width model folders with random weights for side-by-side timing (issue: speed), made with diffusers and
transformers in the CPU rig (shared/tools/cpuref):
  sd15w : sd-tiny with Stable Diffusion 1.5's UNet (860M parameters, its published config) and a 1-layer CLIP text
          encoder of width 768 (the UNet's cross_attention_dim); tokenizer, VAE and scheduler of sd-tiny.
  fluxw : flux-tiny with a FLUX.1 transformer at its real width (24 heads x 128, joint 4096, pooled 768) but 1 double and
          2 single blocks, a 1-layer T5 of width 4096 and a 1-layer CLIP of width 768; tokenizers, VAE, scheduler of flux-tiny.
Weights: each class's own random initialization, torch.manual_seed(0). Encoding and decoding cancel out of the
per-step timing (sxs/), so the 1-layer text encoders do not matter there.
    ../shared/tools/cpuref/run.sh python3 bench/sxs/make_wide_models.py [OUT]     (OUT default ../sxs-models)"""
import json, os, shutil, sys
import torch
from diffusers import FluxTransformer2DModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

out = sys.argv[1] if len(sys.argv) > 1 else "../sxs-models"
fixtures = "../shared/fixtures"
torch.manual_seed(0)

SD15_UNET = {"act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
             "cross_attention_dim": 768, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
             "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
             "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}


def copy_fixture(name, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(os.path.join(fixtures, name), dst)
    for root, _, files in os.walk(dst):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


def clip_768(folder):
    cfg = CLIPTextConfig.from_pretrained(folder)
    cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_hidden_layers, cfg.projection_dim = 768, 3072, 12, 1, 768
    shutil.rmtree(folder)
    CLIPTextModel(cfg).save_pretrained(folder)


sd = os.path.join(out, "sd15w")
copy_fixture("sd-tiny", sd)
shutil.rmtree(os.path.join(sd, "unet"))
UNet2DConditionModel(**SD15_UNET).save_pretrained(os.path.join(sd, "unet"))
clip_768(os.path.join(sd, "text_encoder"))

flux = os.path.join(out, "fluxw")
copy_fixture("flux-tiny", flux)
shutil.rmtree(os.path.join(flux, "transformer"))
FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=128, num_attention_heads=24,
                       joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                       axes_dims_rope=(16, 56, 56)).save_pretrained(os.path.join(flux, "transformer"))
clip_768(os.path.join(flux, "text_encoder"))
t5_dir = os.path.join(flux, "text_encoder_2")
t5 = T5Config.from_pretrained(t5_dir)
t5.d_model, t5.d_ff, t5.num_heads, t5.d_kv, t5.num_layers = 4096, 10240, 64, 64, 1
shutil.rmtree(t5_dir)
T5EncoderModel(t5).save_pretrained(t5_dir)
print(json.dumps({"sd15w": sd, "fluxw": flux}))
