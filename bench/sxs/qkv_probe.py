"""qkv_probe.ps1's cases in the CPU rig (Debian torch 2.6, OpenBLAS): ../shared/tools/cpuref/run.sh python3 bench/sxs/qkv_probe.py [repeats] [calls]"""
import statistics, sys, time
import torch
import torch.nn.functional as F

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
calls = int(sys.argv[2]) if len(sys.argv) > 2 else 3
torch.set_num_threads(2)
torch.manual_seed(0)

def new_case(name, tokens, widths):
    total = sum(widths)
    w = torch.randn(total, 3072)
    b = torch.randn(total)
    parts, start = [], 0
    for width in widths:
        parts.append((w.narrow(0, start, width), b.narrow(0, start, width), start, width))
        start += width
    return dict(name=name, x=torch.randn(1, tokens, 3072), w=w, b=b, parts=parts, separate=[], fused=[])

def run_separate(case):
    for w, b, _, _ in case["parts"]:
        F.linear(case["x"], w, b)

def run_fused(case):
    y = F.linear(case["x"], case["w"], case["b"])  # [1, N, sum(widths)]
    return [y.narrow(-1, start, width) for _, _, start, width in case["parts"]]

def measure_ms(fn, case):
    t = time.perf_counter()
    for _ in range(calls):
        fn(case)
    return (time.perf_counter() - t) / calls * 1000

def median_low(values):
    return sorted(values)[(len(values) - 1) // 2]

cases = [new_case("qkv N=256 (double, image)", 256, [3072] * 3),
         new_case("qkv N=512 (double, text)", 512, [3072] * 3),
         new_case("qkvm N=768 (single)", 768, [3072] * 3 + [12288])]
with torch.inference_mode():
    for case in cases:
        for _ in range(2):
            run_separate(case); run_fused(case)
    for r in range(repeats):
        for case in cases:
            if r % 2 == 0:
                case["separate"].append(measure_ms(run_separate, case)); case["fused"].append(measure_ms(run_fused, case))
            else:
                case["fused"].append(measure_ms(run_fused, case)); case["separate"].append(measure_ms(run_separate, case))
load = " ".join(open("/proc/loadavg").read().split()[:3])
print(f"torch {torch.__version__} threads {torch.get_num_threads()}, {repeats} repeats x {calls} calls, load {load}")
for case in cases:
    sep, fus = median_low(case["separate"]), median_low(case["fused"])
    print(f"{case['name']:<28} separate {sep:8.1f} ms  fused {fus:8.1f} ms  separate/fused {sep / fus:.3f}   "
          f"(separate: {' '.join(f'{v:.0f}' for v in case['separate'])}; fused: {' '.join(f'{v:.0f}' for v in case['fused'])})")
