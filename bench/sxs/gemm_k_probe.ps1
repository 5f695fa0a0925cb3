# One fp32 linear [1,512,K] x [3072,K]^T + bias for several inner sizes K, in this module's libtorch (NuGet libtorch-cpu:
# oneMKL 2024.0), to see whether the SGEMM gap of gemm_probe.ps1 depends on K (4096 = a power of two, vs 3072 and a padded 4160).
#   dotnet pwsh -NoProfile -File bench/sxs/gemm_k_probe.ps1 [-Repeats 5]     (from the project root, module built)
# gemm_k_probe.py does the same in the CPU rig's torch (OpenBLAS). Each repeat is 5 calls per K, K in turn; medians printed.
param([int] $Repeats = 5, [long[]] $InnerSizes = @(3072, 4096, 4160, 12288))
Import-Module ./out/Diffusion
$null = Get-DiffusionDevice
$ctx = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'Diffusion.Engine'
$torch = $ctx.Assemblies | % { $_.GetType('TorchSharp.torch') } | ? { $_ } | select -First 1
$nn = $ctx.Assemblies | % { $_.GetType('TorchSharp.torch+nn+functional') } | ? { $_ } | select -First 1
$lin = $nn.GetMethods() | ? { $_.Name -eq 'linear' } | select -First 1
$torch::set_num_threads(2)
$cases = foreach ($k in $InnerSizes) {
    [pscustomobject]@{ K = $k; X = $torch::randn([long[]](1, 512, $k)); W = $torch::randn([long[]](3072, $k)); B = $torch::randn([long[]](3072)); Ms = @() }
}
foreach ($c in $cases) { for ($i = 0; $i -lt 2; $i++) { $lin.Invoke($null, @($c.X, $c.W, $c.B)).Dispose() } }
for ($r = 0; $r -lt $Repeats; $r++) {
    foreach ($c in $cases) {
        $sw = [Diagnostics.Stopwatch]::StartNew(); for ($i = 0; $i -lt 5; $i++) { $lin.Invoke($null, @($c.X, $c.W, $c.B)).Dispose() }
        $c.Ms += $sw.Elapsed.TotalMilliseconds / 5
    }
}
"libtorch threads $($torch::get_num_threads()), load $((Get-Content /proc/loadavg).Split(' ')[0..2] -join ' ')"
foreach ($c in $cases) {
    $s = $c.Ms | Sort-Object; $median = $s[[int][math]::Floor(($s.Count - 1) / 2)]
    '512x{0}x3072: {1,7:F1} ms  {2,6:F0} GFLOP/s' -f $c.K, $median, (2.0 * 512 * $c.K * 3072 / $median / 1e6)
}
