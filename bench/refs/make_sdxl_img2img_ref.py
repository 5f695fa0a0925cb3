"""The SDXL img2img reference: diffusers' StableDiffusionXLImg2ImgPipeline on the sdxl-tiny fixture, float32, CPU.

    cd <project root> && ../shared/tools/cpuref/run.sh python3 bench/refs/make_sdxl_img2img_ref.py

(the cpuref rig: diffusers 58eb52c0, torch 2.6 on CPU; see ../shared/tools/cpuref/README.md). Writes
tests/Engine.Tests/TestData/sdxl-img2img-ref.safetensors and sdxl-img2img-ref.json beside it (parameters, versions,
the command, shapes). Runs as the fixtures' img2img runs (img2img-refs.json) and SDXL runs (sdxl-tiny-refs.json) were
made: init-128.png loaded with PIL and passed as is, strength 0.6, 5 steps, guidance 5.0, seed 0, one prompt,
add_watermarker=False, step latents from callback_on_step_end. The tensors the pipeline computes inside are taken
from the real calls (vae.encode, retrieve_latents, scheduler.add_noise wrapped), not recomputed:
  init_image         [1,3,128,128] the preprocessed [-1,1] tensor the VAE encoded
  latent_dist_mean / latent_dist_std [1,4,16,16] the posterior
  latent_sample      mean + std * (the generator's first draw)
  image_latents      scaling_factor * latent_sample (what add_noise got)
  noise              the generator's next draw; noise_timestep: the timestep it was added at
  noised_latents     add_noise's result, the latents entering step 0
  timesteps          those run; all_timesteps: the scheduler's full list for 5 steps
  prompt_embeds, add_text_embeds, add_time_ids: as the UNet gets them (negative rows first)
  step{i}_latents    after every step; image [1,3,128,128] in [0,1] (output_type "pt")
  latent_dist_mean_float16 / latent_dist_std_float16: the posterior prepare_latents gets from a float16 pipeline
                     (force_upcast: float32, from the image rounded to float16)
"""
import json, os, sys, time
import torch
import PIL, PIL.Image
import numpy, safetensors, transformers, diffusers
from safetensors.torch import save_file
from diffusers import StableDiffusionXLImg2ImgPipeline
from diffusers.pipelines.stable_diffusion_xl import pipeline_stable_diffusion_xl_img2img as xl_img2img
from diffusers.utils import logging as diffusers_logging

diffusers_logging.disable_progress_bar()
THREADS = int(os.environ.get("CPUREF_THREADS", "2"))
torch.set_num_threads(THREADS)

FIX = "../shared/fixtures"
OUT = "tests/Engine.Tests/TestData"
NAME = "sdxl-img2img-ref"
run = {
    "file": NAME + ".safetensors", "pipeline": "StableDiffusionXLImg2ImgPipeline", "model": "sdxl-tiny",
    "init_image": "init-128.png", "prompts": ["a photo of a dog with cat-like look"], "negative_prompt": None,
    "strength": 0.6, "steps": 5, "guidance_scale": 5.0, "seed": 0, "requires_aesthetics_score": False,
}
t0 = time.time()
pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(os.path.join(FIX, run["model"]), add_watermarker=False,
                                                         dtype=torch.float32)
pipe.set_progress_bar_config(disable=True)
assert not pipe.config.requires_aesthetics_score

got = {}
retrieve, add_noise = xl_img2img.retrieve_latents, pipe.scheduler.add_noise


def hook_encode(vae, suffix=""):                # the image the VAE gets, and its posterior
    encode = vae.encode

    def encode_hook(x, *a, **k):
        out = encode(x, *a, **k)
        got["init_image" + suffix] = x.clone()
        got["latent_dist_mean" + suffix] = out.latent_dist.mean.clone()
        got["latent_dist_std" + suffix] = out.latent_dist.std.clone()
        return out
    vae.encode = encode_hook


def retrieve_hook(*a, **k):                     # latent_dist.sample(generator): the generator's first draw
    x = retrieve(*a, **k)
    got["latent_sample"] = x.clone()
    return x


def add_noise_hook(original, noise, timesteps):
    got["image_latents"], got["noise"], got["noise_timestep"] = original.clone(), noise.clone(), timesteps.clone().float()
    x = add_noise(original, noise, timesteps)
    got["noised_latents"] = x.clone()
    return x


hook_encode(pipe.vae)
xl_img2img.retrieve_latents, pipe.scheduler.add_noise = retrieve_hook, add_noise_hook
timesteps = []


def on_step(p, i, t, kw):
    if i == 0:
        for k in ("prompt_embeds", "add_text_embeds", "add_time_ids"):
            got[k] = kw[k].clone()
    got[f"step{i}_latents"] = kw["latents"].clone()
    timesteps.append(float(t))
    return kw


init = PIL.Image.open(os.path.join(FIX, run["init_image"]))
with torch.inference_mode():
    out = pipe(run["prompts"], image=init, strength=run["strength"], num_inference_steps=run["steps"],
               guidance_scale=run["guidance_scale"], generator=torch.Generator("cpu").manual_seed(run["seed"]),
               output_type="pt", callback_on_step_end=on_step,
               callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "add_text_embeds", "add_time_ids"])
got["image"] = out.images.float()

# force_upcast under float16: diffusers' own prepare_latents on a float16 pipeline (the image cast to float16, then to
# float32, the VAE run in float32 and put back to float16). Only the encode is kept: latent_dist_{mean,std}_float16.
half = StableDiffusionXLImg2ImgPipeline.from_pretrained(os.path.join(FIX, run["model"]), add_watermarker=False,
                                                        dtype=torch.float16)
hook_encode(half.vae, "_float16")
with torch.inference_mode():
    half.scheduler.set_timesteps(run["steps"])
    half.prepare_latents(half.image_processor.preprocess(init), half.scheduler.timesteps[2:3], 1, 1, torch.float16, "cpu",
                         torch.Generator("cpu").manual_seed(run["seed"]))
assert half.vae.dtype == torch.float16 and got["init_image_float16"].dtype == torch.float32
assert got["latent_dist_mean_float16"].dtype == torch.float32
del got["init_image_float16"]
got["timesteps"] = torch.tensor(timesteps, dtype=torch.float32)
got["all_timesteps"] = pipe.scheduler.timesteps.clone().float()
tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in got.items()}

run.update({
    "scheduler": type(pipe.scheduler).__name__,
    "scheduler_config": {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")},
    "steps_run": len(timesteps), "height": tensors["init_image"].shape[2], "width": tensors["init_image"].shape[3],
    "original_size": [int(x) for x in tensors["add_time_ids"][0, :2]],
    "crops_coords_top_left": [int(x) for x in tensors["add_time_ids"][0, 2:4]],
    "target_size": [int(x) for x in tensors["add_time_ids"][0, 4:6]],
    "vae_force_upcast": pipe.vae.config.force_upcast, "dtype": "float32", "device": "cpu", "threads": THREADS,
    "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
                 "diffusers_source": "58eb52c0803ea9af3abec60841c2a093bdf1f951 (main, 2026-08-23)",
                 "transformers": transformers.__version__, "numpy": numpy.__version__,
                 "safetensors": safetensors.__version__, "Pillow": PIL.__version__},
    "command": "cd <project root> && ../shared/tools/cpuref/run.sh python3 bench/refs/make_sdxl_img2img_ref.py",
    "shapes": {k: list(v.shape) for k, v in sorted(tensors.items())},
})
os.makedirs(OUT, exist_ok=True)
save_file(dict(sorted(tensors.items())), os.path.join(OUT, NAME + ".safetensors"))
with open(os.path.join(OUT, NAME + ".json"), "w") as f:
    json.dump(run, f, indent=1)
    f.write("\n")
print(json.dumps({"file": run["file"], "timesteps": timesteps, "all_timesteps": got["all_timesteps"].tolist(),
                  "image_max": float(tensors["image"].max()), "seconds": round(time.time() - t0, 1)}))
