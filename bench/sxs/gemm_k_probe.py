"""gemm_k_probe.ps1 in the CPU rig (Debian torch 2.6, OpenBLAS): ../shared/tools/cpuref/run.sh python3 bench/sxs/gemm_k_probe.py [repeats]"""
import sys, time
import torch
import torch.nn.functional as F

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
torch.set_num_threads(2)
cases = [dict(k=k, x=torch.randn(1, 512, k), w=torch.randn(3072, k), b=torch.randn(3072), ms=[]) for k in (3072, 4096, 4160, 12288)]
with torch.inference_mode():
    for c in cases:
        for _ in range(2): F.linear(c["x"], c["w"], c["b"])
    for _ in range(repeats):
        for c in cases:
            t = time.perf_counter()
            for _ in range(5): F.linear(c["x"], c["w"], c["b"])
            c["ms"].append((time.perf_counter() - t) / 5 * 1000)
print(f"torch threads {torch.get_num_threads()}, load {' '.join(open('/proc/loadavg').read().split()[:3])}")
for c in cases:
    median = sorted(c["ms"])[(len(c["ms"]) - 1) // 2]
    print(f"512x{c['k']}x3072: {median:7.1f} ms  {2.0 * 512 * c['k'] * 3072 / median / 1e6:6.0f} GFLOP/s")
