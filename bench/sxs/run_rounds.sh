#!/bin/bash
# The speed issue's side-by-side table in one sitting: per case, the module (module_steps.ps1) then diffusers
# (diffusers_steps.py in the CPU rig), two rounds, interleaved; one JSON line per side and case, with the time and
# the load before each case. Run from the project root with the module built (./build.ps1) and the wide models made
# (bench/sxs/make_wide_models.py, in the rig):
#   bash bench/sxs/run_rounds.sh HOST_MODELS RIG_MODELS [OUT]
# HOST_MODELS: the models folder as this machine sees it; RIG_MODELS: the same folder as the rig's chroot sees it
# (make_wide_models.py /work/sxs-models writes /var/tmp/diffusion-cpuref/root/work/sxs-models on the host).
set -u
host_models=$1; rig_models=$2; out=${3:-sxs-rounds.txt}
for round in 1 2; do
  for c in sd15w:256 fluxw:256:512 sd15w:512 fluxw:512:512; do
    echo "# round $round $c $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)" >> "$out"
    OMP_NUM_THREADS=2 dotnet pwsh -NoProfile -File ../shared/tools/sxs/module_steps.ps1 -Models "$host_models" -Cases $c -Module ./out/Diffusion -K 3 -R 3 2>&1 | tail -1 >> "$out"
    ../shared/tools/cpuref/run.sh python3 ../shared/tools/sxs/diffusers_steps.py --models "$rig_models" -K 3 -R 3 --threads 2 $c 2>&1 | tail -1 >> "$out"
  done
done
