# FLUX attention's input projections at the real width (D = 3072), separate vs fused, in this module's libtorch
# (NuGet libtorch-cpu: oneMKL 2024.0). qkv_probe.py does the same in the CPU rig's torch (OpenBLAS).
#   dotnet pwsh -NoProfile -File bench/sxs/qkv_probe.ps1 [-Repeats 7] [-Calls 3]     (from the project root, module built)
# Cases (256² image = 256 tokens, 512 text tokens, batch 1, float32, 2 threads):
#   qkv N=256   the double block's image to_q/to_k/to_v          3 x [256,3072]x[3072,3072]  vs  1 x [256,3072]x[3072,9216]
#   qkv N=512   the double block's text add_q/add_k/add_v_proj   3 x [512,3072]x[3072,3072]  vs  1 x [512,3072]x[3072,9216]
#   qkvm N=768  the single block's to_q/to_k/to_v + proj_mlp     3 x [768,...,3072] + [768,3072]x[3072,12288]  vs  1 x [768,3072]x[3072,21504]
# The separate weights are row views of the fused one (as the engine would hold them); the fused output is split with
# narrow (views). Each repeat times -Calls calls of both forms, the order alternating between repeats; medians are printed.
param([int] $Repeats = 7, [int] $Calls = 3)
Import-Module ./out/Diffusion
$null = Get-DiffusionDevice
$ctx = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'Diffusion.Engine'
$torch = $ctx.Assemblies | % { $_.GetType('TorchSharp.torch') } | ? { $_ } | select -First 1
$nn = $ctx.Assemblies | % { $_.GetType('TorchSharp.torch+nn+functional') } | ? { $_ } | select -First 1
$lin = $nn.GetMethods() | ? { $_.Name -eq 'linear' } | select -First 1
$torch::set_num_threads(2)
$torch::manual_seed(0) | Out-Null

function New-Case([string] $name, [long] $tokens, [long[]] $widths) {
    $total = ($widths | Measure-Object -Sum).Sum
    $w = $torch::randn([long[]]($total, 3072)); $b = $torch::randn([long[]]($total))
    $parts = @(); $start = 0L
    foreach ($width in $widths) { $parts += , @($w.narrow(0, $start, $width), $b.narrow(0, $start, $width), $start, $width); $start += $width }
    [pscustomobject]@{ Name = $name; X = $torch::randn([long[]](1, $tokens, 3072)); W = $w; B = $b; Parts = $parts; Separate = @(); Fused = @() }
}

function Invoke-Separate($case) {
    foreach ($p in $case.Parts) { $lin.Invoke($null, @($case.X, $p[0], $p[1])).Dispose() }
}
function Invoke-Fused($case) {
    $y = $lin.Invoke($null, @($case.X, $case.W, $case.B)) # [1, N, sum(widths)]
    foreach ($p in $case.Parts) { $y.narrow(-1, $p[2], $p[3]).Dispose() } # the q/k/v(/mlp) views
    $y.Dispose()
}
function Measure-Ms([scriptblock] $body) {
    $sw = [Diagnostics.Stopwatch]::StartNew(); for ($i = 0; $i -lt $Calls; $i++) { & $body }; $sw.Elapsed.TotalMilliseconds / $Calls
}
function Get-Median([double[]] $values) { $s = $values | Sort-Object; $s[[int][math]::Floor(($s.Count - 1) / 2)] }

$cases = @(
    (New-Case 'qkv N=256 (double, image)' 256 @(3072, 3072, 3072)),
    (New-Case 'qkv N=512 (double, text)' 512 @(3072, 3072, 3072)),
    (New-Case 'qkvm N=768 (single)' 768 @(3072, 3072, 3072, 12288)))
foreach ($case in $cases) { for ($i = 0; $i -lt 2; $i++) { Invoke-Separate $case; Invoke-Fused $case } } # warm-up

for ($r = 0; $r -lt $Repeats; $r++) {
    foreach ($case in $cases) {
        if ($r % 2 -eq 0) {
            $case.Separate += Measure-Ms { Invoke-Separate $case }; $case.Fused += Measure-Ms { Invoke-Fused $case }
        } else {
            $case.Fused += Measure-Ms { Invoke-Fused $case }; $case.Separate += Measure-Ms { Invoke-Separate $case }
        }
    }
}
"libtorch $($torch::__version__) threads $($torch::get_num_threads()), $Repeats repeats x $Calls calls, load $((Get-Content /proc/loadavg).Split(' ')[0..2] -join ' ')"
foreach ($case in $cases) {
    $sep = Get-Median $case.Separate; $fus = Get-Median $case.Fused
    '{0,-28} separate {1,8:F1} ms  fused {2,8:F1} ms  separate/fused {3:F3}   (separate: {4}; fused: {5})' -f $case.Name, $sep, $fus, ($sep / $fus),
        (($case.Separate | % { $_.ToString('F0') }) -join ' '), (($case.Fused | % { $_.ToString('F0') }) -join ' ')
}
