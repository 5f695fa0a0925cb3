#!/usr/bin/env bash
# On the GPU machine (see shared/docs/gpu.md): unpacks .gpu/, points the module at the machine's PyTorch libtorch and
# runs the benchmark on CUDA. Logs go to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/../.."
torch_dir=$(python3 -c "import torch,os;print(os.path.dirname(torch.__file__))")
mkdir -p /tmp/dn /tmp/pw
tar -C /tmp/dn -xJf .gpu/dotnet.tar.xz
tar -C /tmp/pw -xJf .gpu/pwsh.tar.xz
export DOTNET_ROOT=/tmp/dn PATH=/tmp/dn:$PATH DIFFUSION_LIBTORCH="$torch_dir/lib"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
log=${OUT:-/tmp}/bench.log
dotnet /tmp/pw/unix/pwsh.dll -NoProfile -NonInteractive -File bench/Invoke-ArchitectureBenchmark.ps1 -ModulePath .gpu/module -BenchAssembly .gpu/bench/Diffusion.Bench.dll -Device cuda -Profile Real "$@" 2>&1 | tee "$log"
