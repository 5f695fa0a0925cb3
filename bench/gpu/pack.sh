#!/usr/bin/env bash
# Packs what a GPU machine without .NET needs to run the module (recipe: shared/docs/gpu.md) into .gpu/ (git-ignored):
# the .NET runtime, pwsh from the local tool, the module built without the bundled CPU libtorch (the machine has
# PyTorch's) and the benchmark's support assembly (out/Diffusion.Bench). Run from the repository root after
# `dotnet tool restore`. Everything must stay under 64 MiB to travel.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu
runtime_dir=$(ls -d /usr/share/dotnet/shared/Microsoft.NETCore.App/* | sort -V | tail -1)
runtime=$(basename "$runtime_dir")
XZ_OPT=-9e tar -C /usr/share/dotnet -cJf .gpu/dotnet.tar.xz \
  --exclude='*mscordaccore*' --exclude='*mscordbi*' --exclude='*createdump*' --exclude='*clrgc*' --exclude='*traceptprovider*' \
  "shared/Microsoft.NETCore.App/$runtime" host dotnet
packages=$(dotnet nuget locals global-packages --list | sed 's/^global-packages: *//')
pwsh_version=$(sed -n 's/.*"version": *"\([0-9.]*\)".*/\1/p' .config/dotnet-tools.json | head -1)
pwsh_dir="$packages/powershell/$pwsh_version/tools/net10.0/any"
XZ_OPT=-9e tar -C "$pwsh_dir" -cJf .gpu/pwsh.tar.xz \
  --exclude='unix/runtimes/osx*' --exclude='unix/runtimes/linux-arm*' --exclude='unix/runtimes/linux-musl*' \
  --exclude='unix/runtimes/win*' --exclude='unix/runtimes/android*' --exclude='unix/runtimes/maccatalyst*' \
  --exclude='unix/runtimes/linux-bionic*' unix
dotnet pwsh -NoProfile ./build.ps1 -NoBundledLibTorch
rm -rf .gpu/module .gpu/bench && cp -r out/Diffusion .gpu/module && cp -r out/Diffusion.Bench .gpu/bench
du -sh .gpu/*.tar.xz .gpu/module .gpu/bench
total=$(du -sm .gpu | cut -f1)
echo "packed .gpu/ (${total} MiB): carry it with the device tool and run bench/gpu/run.sh there"
[ "$total" -lt 60 ] || { echo "too large to travel (64 MiB limit)" >&2; exit 1; }
