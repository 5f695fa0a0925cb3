# Dot-sourced by every *.Tests.ps1: imports the built module and gives access to the fixtures.
$script:ModulePath = if ($env:DIFFUSION_MODULE) { $env:DIFFUSION_MODULE } else { Join-Path $PSScriptRoot '../out/Diffusion' }
Import-Module $script:ModulePath -Force -ErrorAction Stop
$script:Fixtures = if ($env:DIFFUSION_FIXTURES) { $env:DIFFUSION_FIXTURES } else { Join-Path $PSScriptRoot '../../shared/fixtures' }
$script:Fixtures = (Resolve-Path $script:Fixtures -ErrorAction Stop).Path
$script:SdTiny = Join-Path $script:Fixtures 'sd-tiny'
$script:FluxTiny = Join-Path $script:Fixtures 'flux-tiny'

# Engine and TorchSharp types live in the module's own AssemblyLoadContext, which PowerShell's [TypeName] lookup
# does not search: tests reach them through the loaded assemblies.
$null = Get-DiffusionDevice # loads the engine and the backend
$script:EngineContext = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'Diffusion.Engine'
function Get-EngineType([string] $name) {
    foreach ($a in $script:EngineContext.Assemblies) {
        $t = $a.GetType($name)
        if ($t) { return $t }
    }
    throw "No type $name in the engine's load context."
}
$script:SafeTensorsFile = Get-EngineType 'Diffusion.Engine.IO.SafeTensorsFile'
# Test support (TensorComparison) is not in the module: build.ps1 builds it beside it, into out/Diffusion.Bench.
$script:BenchAssembly = if ($env:DIFFUSION_BENCH_ASSEMBLY) { $env:DIFFUSION_BENCH_ASSEMBLY } else { Join-Path $PSScriptRoot '../out/Diffusion.Bench/Diffusion.Bench.dll' }
if (-not ($script:EngineContext.Assemblies | Where-Object { $_.GetName().Name -eq 'Diffusion.Bench' })) {
    if (-not (Test-Path $script:BenchAssembly)) { throw "No test support assembly at '$script:BenchAssembly': run ./build.ps1 (it builds out/Diffusion.Bench), or set `$env:DIFFUSION_BENCH_ASSEMBLY." }
    $null = $script:EngineContext.LoadFromAssemblyPath((Resolve-Path $script:BenchAssembly).Path)
}
$script:TensorComparison = Get-EngineType 'Diffusion.Bench.TensorComparison'
$script:Torch = Get-EngineType 'TorchSharp.torch'
$script:TensorType = Get-EngineType 'TorchSharp.torch+Tensor'
$script:MemoryLedger = Get-EngineType 'Diffusion.Engine.Devices.MemoryLedger'
$script:DiffusionImageType = Get-EngineType 'Diffusion.Engine.Imaging.DiffusionImage'

function Get-RefRun([string] $family) {
    Get-Content (Join-Path $script:Fixtures "$family-refs.json") -Raw | ConvertFrom-Json
}

# Reads one tensor of a reference file onto the CPU.
function Get-RefTensor([string] $file, [string] $name) {
    $f = $script:SafeTensorsFile::Open((Join-Path $script:Fixtures $file))
    try { $f.Load($name) } finally { $f.Dispose() }
}

# How many step{i}_latents a reference file holds (PNDM runs steps+1 model steps: its first timestep repeats).
function Get-RefStepCount([string] $file) {
    $f = $script:SafeTensorsFile::Open((Join-Path $script:Fixtures $file))
    try { @($f.Tensors.Keys | Where-Object { $_ -match '^step\d+_latents$' }).Count } finally { $f.Dispose() }
}

function Test-RefTensor([string] $file, [string] $name) {
    $f = $script:SafeTensorsFile::Open((Join-Path $script:Fixtures $file))
    try { $f.Contains($name) } finally { $f.Dispose() }
}

# Elementwise |actual - expected| <= atol + rtol*|expected|; throws with the worst difference otherwise.
function Assert-TensorClose($Expected, $Actual, [double] $RelativeTolerance, [double] $AbsoluteTolerance, [string] $What) {
    $c = $script:TensorComparison::Compare($Expected, $Actual, $RelativeTolerance, $AbsoluteTolerance, $What)
    if (-not $c.WithinTolerance) {
        throw "${What}: max |diff| $($c.MaxAbsDifference) (max rel $($c.MaxRelativeDifference)) exceeds rtol $RelativeTolerance / atol $AbsoluteTolerance"
    }
    $c
}

# max|actual - expected| <= Relative * max|expected|: the error relative to the tensor's scale (for embeddings and
# latents, whose elements near zero make an elementwise relative bound meaningless).
function Assert-TensorScaled($Expected, $Actual, [double] $Relative, [string] $What) {
    $c = $script:TensorComparison::Compare($Expected, $Actual, 0, 0, $What)
    if ($c.ScaledMaxDifference -gt $Relative) {
        throw "${What}: max |diff| $($c.MaxAbsDifference) is $($c.ScaledMaxDifference) of the tensor's scale $($c.MaxAbsExpected), over $Relative"
    }
    $c
}

# Concatenates the per-item tensors of pipeline objects along dim 0.
function ConvertTo-TensorArray([object[]] $tensors) {
    $array = [Array]::CreateInstance($script:TensorType, $tensors.Count)
    for ($i = 0; $i -lt $tensors.Count; $i++) { $array[$i] = $tensors[$i] }
    , $array
}
function Join-Tensor([object[]] $tensors) { $script:Torch::cat((ConvertTo-TensorArray $tensors), 0) }
function Join-TensorStack([object[]] $tensors) { $script:Torch::stack((ConvertTo-TensorArray $tensors), 0) }

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
