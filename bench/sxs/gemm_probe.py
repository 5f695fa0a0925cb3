"""The GEMM of gemm_probe.ps1 in the CPU rig (Debian torch 2.6, OpenBLAS): ../shared/tools/cpuref/run.sh python3 bench/sxs/gemm_probe.py"""
import torch, time
torch.set_num_threads(2)
x=torch.randn(1,512,4096); w=torch.randn(3072,4096); b=torch.randn(3072)
with torch.inference_mode():
    for _ in range(3): torch.nn.functional.linear(x,w,b)
    t=time.perf_counter()
    for _ in range(20): torch.nn.functional.linear(x,w,b)
print(f"linear 512x4096x3072: {(time.perf_counter()-t)/20*1000:.1f} ms")
