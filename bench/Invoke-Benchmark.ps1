<#
.SYNOPSIS
    The benchmark: times each stage of the tiny fixture pipelines (CPU, so CI exercises it) and prints a table.
.DESCRIPTION
    Rows: text encode, one denoiser step, VAE decode and a whole image, for sd-tiny and flux-tiny, as the median
    of -Repeat runs after a warm-up, plus the engine's peak memory. Runs in a fresh pwsh so the backend
    ($env:DIFFUSION_LIBTORCH / -LibTorchPath) loads as a user's session would. Results also go to
    out/bench/results.json.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Device = 'cpu',
    [string] $LibTorchPath,
    [int] $Repeat = 5
)
$ErrorActionPreference = 'Stop'
if ($LibTorchPath) { $env:DIFFUSION_LIBTORCH = $LibTorchPath }
$fixtures = if ($env:DIFFUSION_FIXTURES) { $env:DIFFUSION_FIXTURES } else { Join-Path $PSScriptRoot '../../shared/fixtures' }
$fixtures = (Resolve-Path $fixtures).Path
$outDir = Join-Path $PSScriptRoot '../out/bench'
New-Item -ItemType Directory -Force $outDir | Out-Null
$resultFile = Join-Path $outDir 'results.json'

$worker = {
    param($ModulePath, $Fixtures, $Device, $Repeat, $ResultFile)
    $ErrorActionPreference = 'Stop'
    Import-Module $ModulePath
    function Measure-Median([scriptblock] $action) {
        & $action | Out-Null # warm-up
        $times = foreach ($i in 1..$Repeat) { (Measure-Command { & $action | Out-Null }).TotalMilliseconds }
        ($times | Sort-Object)[[int][math]::Floor($times.Count / 2)]
    }
    $rows = [System.Collections.Generic.List[object]]::new()
    function Add-Row($model, $what, $ms, $note = '') { $rows.Add([pscustomobject]@{ Model = $model; Row = $what; Milliseconds = [math]::Round($ms, 2); Note = $note }) }

    # Stable Diffusion (sd-tiny): 128x128, batch 1 with classifier-free guidance (UNet batch 2), float32.
    $pipe = New-DiffusionPipeline "$Fixtures/sd-tiny" -Device $Device
    $emb = ConvertTo-DiffusionEmbedding -Pipeline $pipe 'a photo of an astronaut riding a horse'
    Add-Row 'sd-tiny' 'CLIP encode' (Measure-Median { ConvertTo-DiffusionEmbedding -Pipeline $pipe 'a photo of an astronaut riding a horse' })
    $steps = 10
    $denoise = Measure-Median { $emb | Invoke-Denoise -Pipeline $pipe -Steps $steps -Seed 1 -Height 128 -Width 128 }
    Add-Row 'sd-tiny' 'UNet step (CFG, 128x128)' ($denoise / $steps) "median of $Repeat x $steps steps"
    $lat = $emb | Invoke-Denoise -Pipeline $pipe -Steps 2 -Seed 1 -Height 128 -Width 128
    Add-Row 'sd-tiny' 'VAE decode 128x128' (Measure-Median { $lat | ConvertFrom-DiffusionLatent -Pipeline $pipe })
    Add-Row 'sd-tiny' 'whole image, 20 steps' (Measure-Median { Invoke-Diffusion -Pipeline $pipe -Prompt 'a cat' -Steps 20 -Seed 1 -Height 128 -Width 128 })
    Remove-DiffusionPipeline $pipe
    Clear-DiffusionMemory

    # FLUX (flux-tiny): 128x128, guidance embedding, float32.
    $pipe = New-DiffusionPipeline "$Fixtures/flux-tiny" -Device $Device
    Add-Row 'flux-tiny' 'CLIP + T5 encode (64 tokens)' (Measure-Median { ConvertTo-DiffusionEmbedding -Pipeline $pipe 'a photo of a dog' -MaxSequenceLength 64 })
    $emb = ConvertTo-DiffusionEmbedding -Pipeline $pipe 'a photo of a dog' -MaxSequenceLength 64
    $denoise = Measure-Median { $emb | Invoke-Denoise -Pipeline $pipe -Steps $steps -Seed 1 -Height 128 -Width 128 }
    Add-Row 'flux-tiny' 'transformer step (128x128)' ($denoise / $steps) "median of $Repeat x $steps steps"
    $lat = $emb | Invoke-Denoise -Pipeline $pipe -Steps 2 -Seed 1 -Height 128 -Width 128
    Add-Row 'flux-tiny' 'VAE decode 128x128' (Measure-Median { $lat | ConvertFrom-DiffusionLatent -Pipeline $pipe })
    Add-Row 'flux-tiny' 'whole image, 4 steps' (Measure-Median { Invoke-Diffusion -Pipeline $pipe -Prompt 'a dog' -Steps 4 -Seed 1 -Height 128 -Width 128 -MaxSequenceLength 64 })
    $peak = (Get-DiffusionDevice ($Device -replace ':.*$', '') | Select-Object -First 1).PeakByEngine
    Add-Row 'all' 'peak engine memory (MB)' ($peak / 1MB)
    Remove-DiffusionPipeline $pipe

    $rows | ConvertTo-Json | Set-Content $ResultFile
    $rows | Format-Table -AutoSize | Out-Host
}
$pwsh = (Get-Process -Id $PID).Path
$pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
$encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes("& { $worker } '$ModulePath' '$fixtures' '$Device' $Repeat '$resultFile'"))
& $pwsh @pwshArgs -NoProfile -NonInteractive -EncodedCommand $encoded
if ($LASTEXITCODE -ne 0) { throw "The benchmark failed (exit code $LASTEXITCODE)." }
Write-Host "Results: $resultFile"
