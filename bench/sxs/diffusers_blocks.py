"""Per-block timing, diffusers side (the speed issue), run in the CPU rig (shared/tools/cpuref):
    ../shared/tools/cpuref/run.sh python3 bench/sxs/diffusers_blocks.py MODEL_DIR SIZE [TEXT_LENGTH] [REPEATS]
One denoiser call of a step on random inputs of the real shapes (SD: batch 2 for guidance, 77 text tokens, t=500;
FLUX: batch 1, TEXT_LENGTH tokens, t=0.5, guidance 3.5), timed unit by unit with forward hooks on the same modules the
module's BlockTimings hooks (the units a device map places, same names), median of REPEATS calls after a warm-up; plus the whole call and one scheduler
step (the pipeline's scheduler, 20 steps). Prints {"side": "diffusers", "case": ..., "seconds": {unit: s}}."""
import json, os, statistics, sys, time
import torch
from diffusers import DiffusionPipeline

torch.set_num_threads(int(os.environ.get("CPUREF_THREADS", "2")))
model, size = sys.argv[1], int(sys.argv[2])
text_length = int(sys.argv[3]) if len(sys.argv) > 3 else 512
repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 3
cls = json.load(open(os.path.join(model, "model_index.json")))["_class_name"]
flux = "Flux" in cls
g = torch.Generator().manual_seed(0)
if flux:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    net = FluxTransformer2DModel.from_pretrained(model, subfolder="transformer").eval()
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(model, subfolder="scheduler")
    c = net.config
    gh = gw = size // 16
    hidden = torch.randn(1, gh * gw, c.in_channels, generator=g)
    ctx = torch.randn(1, text_length, c.joint_attention_dim, generator=g)
    pooled = torch.randn(1, c.pooled_projection_dim, generator=g)
    img_ids = torch.zeros(gh, gw, 3); img_ids[..., 1] += torch.arange(gh)[:, None]; img_ids[..., 2] += torch.arange(gw)[None, :]
    img_ids = img_ids.reshape(gh * gw, 3)
    txt_ids = torch.zeros(text_length, 3)
    t = torch.tensor([0.5]); guidance = torch.tensor([3.5]) if c.guidance_embeds else None
    units = ["x_embedder", "time_text_embed", "context_embedder"] + [f"transformer_blocks.{i}" for i in range(len(net.transformer_blocks))] \
        + [f"single_transformer_blocks.{i}" for i in range(len(net.single_transformer_blocks))] + ["norm_out", "proj_out"]
    call = lambda: net(hidden_states=hidden, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=t, img_ids=img_ids,
                       txt_ids=txt_ids, guidance=guidance, return_dict=False)
    sample = hidden
else:
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    net = UNet2DConditionModel.from_pretrained(model, subfolder="unet").eval()
    sched = EulerDiscreteScheduler.from_pretrained(model, subfolder="scheduler")
    c = net.config
    lat = torch.randn(2, c.in_channels, size // 8, size // 8, generator=g)
    ctx = torch.randn(2, 77, c.cross_attention_dim, generator=g)
    t = torch.tensor(500.0)
    units = ["time_embedding", "conv_in"] + [f"down_blocks.{i}" for i in range(len(net.down_blocks))] + ["mid_block"] \
        + [f"up_blocks.{i}" for i in range(len(net.up_blocks))] + ["conv_norm_out", "conv_out"]
    call = lambda: net(lat, t, encoder_hidden_states=ctx, return_dict=False)
    sample = lat[:1]

samples, starts, timing = {}, {}, [False]
mods = dict(net.named_modules())
for name in units:
    m = mods[name]
    m.register_forward_pre_hook(lambda mod, args, n=name: starts.__setitem__(n, time.perf_counter()) if timing[0] else None)
    m.register_forward_hook(lambda mod, args, out, n=name: samples.setdefault(n, []).append(time.perf_counter() - starts[n]) if timing[0] else None)
with torch.inference_mode():
    call()
    timing[0] = True
    for _ in range(repeats):
        t0 = time.perf_counter(); call(); samples.setdefault("(model call)", []).append(time.perf_counter() - t0)
    timing[0] = False
    for _ in range(repeats):
        t0 = time.perf_counter()
        fresh = type(sched).from_config(sched.config)  # schedulers keep step state; the module side also makes one each time
        fresh.set_timesteps(20, **({"mu": 1.0} if flux else {}))
        fresh.step(sample, fresh.timesteps[0], sample, generator=g)
        samples.setdefault("(scheduler step)", []).append(time.perf_counter() - t0)
order = units + ["(model call)", "(scheduler step)"]
case = f"{os.path.basename(os.path.normpath(model))}:{size}" + (f":{text_length}" if flux else "")
print(json.dumps({"side": "diffusers", "case": case, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "seconds": {n: round(statistics.median(samples[n]), 5) for n in order if n in samples}}))
