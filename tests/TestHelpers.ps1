# Dot-sourced by every *.Tests.ps1: imports the built module and gives access to the fixtures.
$script:ModulePath = if ($env:DIFFUSION_MODULE) { $env:DIFFUSION_MODULE } else { Join-Path $PSScriptRoot '../out/Diffusion' }
Import-Module $script:ModulePath -Force -ErrorAction Stop
$script:Fixtures = if ($env:DIFFUSION_FIXTURES) { $env:DIFFUSION_FIXTURES } else { Join-Path $PSScriptRoot '../../shared/fixtures' }
$script:Fixtures = (Resolve-Path $script:Fixtures -ErrorAction Stop).Path
$script:SdTiny = Join-Path $script:Fixtures 'sd-tiny'
$script:FluxTiny = Join-Path $script:Fixtures 'flux-tiny'

function Get-RefRun([string] $family) {
    Get-Content (Join-Path $script:Fixtures "$family-refs.json") -Raw | ConvertFrom-Json
}

# Reads one tensor of a reference file onto the CPU.
function Get-RefTensor([string] $file, [string] $name) {
    $f = [Diffusion.Engine.IO.SafeTensorsFile]::Open((Join-Path $script:Fixtures $file))
    try { $f.Load($name) } finally { $f.Dispose() }
}

function Test-RefTensor([string] $file, [string] $name) {
    $f = [Diffusion.Engine.IO.SafeTensorsFile]::Open((Join-Path $script:Fixtures $file))
    try { $f.Contains($name) } finally { $f.Dispose() }
}

# Elementwise |actual - expected| <= atol + rtol*|expected|; throws with the worst difference otherwise.
function Assert-TensorClose($Expected, $Actual, [double] $RelativeTolerance, [double] $AbsoluteTolerance, [string] $What) {
    $c = [Diffusion.Engine.Diagnostics.TensorComparison]::Compare($Expected, $Actual, $RelativeTolerance, $AbsoluteTolerance, $What)
    if (-not $c.WithinTolerance) {
        throw "${What}: max |diff| $($c.MaxAbsDifference) (max rel $($c.MaxRelativeDifference)) exceeds rtol $RelativeTolerance / atol $AbsoluteTolerance"
    }
    $c
}

# Concatenates the per-item tensors of pipeline objects along dim 0.
function Join-Tensor([object[]] $tensors) {
    [TorchSharp.torch]::cat([TorchSharp.torch+Tensor[]] $tensors, 0)
}

# A scheduler_config.json for a reference run, so the run uses exactly diffusers' configuration.
function New-SchedulerConfigFile($run) {
    $dir = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-sched-" + [guid]::NewGuid())
    New-Item -ItemType Directory $dir | Out-Null
    $cfg = $run.scheduler_config | ConvertTo-Json -Depth 5 | ConvertFrom-Json -AsHashtable
    $cfg['_class_name'] = $run.scheduler
    $path = Join-Path $dir 'scheduler_config.json'
    $cfg | ConvertTo-Json -Depth 5 | Set-Content $path
    $path
}
