# One fp32 GEMM as FLUX's context_embedder runs it ([1,512,4096] x [3072,4096]^T + bias), 20 times after 3 warm-ups, in this
# module's libtorch (NuGet libtorch-cpu: oneMKL 2024.0). gemm_probe.py does the same in the CPU rig's torch (OpenBLAS).
#   dotnet pwsh -NoProfile -File bench/sxs/gemm_probe.ps1     (from the project root, module built)
Import-Module ./out/Diffusion
$null = Get-DiffusionDevice
$ctx = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'Diffusion.Engine'
$torch = $ctx.Assemblies | % { $_.GetType('TorchSharp.torch') } | ? { $_ } | select -First 1
$nn = $ctx.Assemblies | % { $_.GetType('TorchSharp.torch+nn+functional') } | ? { $_ } | select -First 1
$x = $torch::randn([long[]](1,512,4096)); $w = $torch::randn([long[]](3072,4096)); $b = $torch::randn([long[]](3072))
$lin = $nn.GetMethods() | ? { $_.Name -eq 'linear' } | select -First 1
for ($i = 0; $i -lt 3; $i++) { $lin.Invoke($null, @($x, $w, $b)).Dispose() }
$sw = [Diagnostics.Stopwatch]::StartNew(); for ($i = 0; $i -lt 20; $i++) { $lin.Invoke($null, @($x, $w, $b)).Dispose() }
"linear 512x4096x3072: $([math]::Round($sw.Elapsed.TotalMilliseconds / 20, 1)) ms  threads $($torch::get_num_threads())"
