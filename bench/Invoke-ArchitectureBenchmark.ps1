<#
.SYNOPSIS
    Times the models of the real architectures (SD 1.5, FLUX.1-dev; random weights built on the device) against
    diffusers' numbers on one H100, or, with -Profile Tiny (the default on CPU), the same code on the fixture configs.
.DESCRIPTION
    Prints the table with each row's ratio to diffusers (below 1.0 is faster) and writes out/bench/architectures.json.
    On the GPU machine run it through bench/gpu/run.sh (no .NET there).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Device = 'cpu',
    [ValidateSet('Real', 'Tiny', 'Auto')] [string] $Profile = 'Auto',
    [int] $Repeat = 5,
    [string] $OutFile,
    # The test and benchmark support assembly (ArchitectureBenchmark), which ./build.ps1 builds beside the module.
    [string] $BenchAssembly = (Join-Path $PSScriptRoot '../out/Diffusion.Bench/Diffusion.Bench.dll')
)
$ErrorActionPreference = 'Stop'
Import-Module (Resolve-Path $ModulePath).Path
$dev = Get-DiffusionDevice | Where-Object Name -eq ($Device -eq 'cuda' ? 'cuda:0' : $Device)
if (-not $dev) { throw "No device '$Device' (see Get-DiffusionDevice)." }
$engine = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'Diffusion.Engine'
function Get-EngineType([string] $name) { foreach ($a in $engine.Assemblies) { $t = $a.GetType($name); if ($t) { return $t } } }
$bench = $engine.LoadFromAssemblyPath((Resolve-Path $BenchAssembly).Path)
$profileType = $bench.GetType('Diffusion.Bench.ArchitectureProfile', $true)
$benchType = $bench.GetType('Diffusion.Bench.ArchitectureBenchmark', $true)
$catalog = Get-EngineType 'Diffusion.Engine.Devices.DeviceCatalog'
if ($Profile -eq 'Auto') { $Profile = if ($dev.Type -eq 'cuda') { 'Real' } else { 'Tiny' } }
$p = if ($Profile -eq 'Real') { $profileType::Real() } else {
    $fixtures = if ($env:DIFFUSION_FIXTURES) { $env:DIFFUSION_FIXTURES } else { Join-Path $PSScriptRoot '../../shared/fixtures' }
    $profileType::FromFolders((Join-Path $fixtures 'sd-tiny'), (Join-Path $fixtures 'flux-tiny'))
}
Write-Host "Architectures: $($p.Name) on $($dev.Name) ($($dev.Backend): $($dev.LibTorchPath))"
$before = $dev.FreeMemory
$rows = $benchType::Run($p, $catalog::Parse($dev.Name, 'Device'), $Repeat, [Action[string]] { param($m) Write-Host "  $m" })
$after = (Get-DiffusionDevice | Where-Object Name -eq $dev.Name)
$table = $rows | Select-Object Model, Row, Milliseconds, ReferenceMilliseconds, Ratio, Note
$table | Format-Table -AutoSize | Out-Host
if ($dev.Type -eq 'cuda') { Write-Host ('Device memory in use after the run (cudaMemGetInfo): {0:N1} GiB' -f (($after.TotalMemory - $after.FreeMemory) / 1GB)) }
if (-not $OutFile) { $OutFile = Join-Path $PSScriptRoot '../out/bench/architectures.json' }
New-Item -ItemType Directory -Force (Split-Path $OutFile) | Out-Null
[pscustomobject]@{ Date = (Get-Date).ToString('o'); Device = $dev.Name; Profile = $p.Name; Rows = $table } | ConvertTo-Json -Depth 4 | Set-Content $OutFile
Write-Host "Results: $OutFile"
