<#
.SYNOPSIS
    The benchmark: times each stage of the tiny fixture pipelines (CPU, so CI exercises it) and prints a table.
.DESCRIPTION
    Rows: text encode, one denoiser step, VAE decode and a whole image, for sd-tiny and flux-tiny, as the median
    of -Repeat runs after a warm-up, plus the engine's peak memory. Data parallel (sd-tiny): images/s of
    Invoke-Diffusion in 1 and -Processes worker processes (end to end, and while generating), and the launcher's
    overhead per process: starting a worker (pwsh + module import) and loading the model in it. Runs in a fresh pwsh so the backend
    ($env:DIFFUSION_LIBTORCH / -LibTorchPath) loads as a user's session would. Results also go to
    out/bench/results.json.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Device = 'cpu',
    [string] $LibTorchPath,
    [int] $Repeat = 5,
    # Worker processes for the data-parallel rows (default: the cores, 2 to 4).
    [int] $Processes = [Math]::Min(4, [Math]::Max(2, [Environment]::ProcessorCount)),
    # Prompts for the data-parallel rows.
    [int] $Images = 8
)
$ErrorActionPreference = 'Stop'
if ($LibTorchPath) { $env:DIFFUSION_LIBTORCH = $LibTorchPath }
$fixtures = if ($env:DIFFUSION_FIXTURES) { $env:DIFFUSION_FIXTURES } else { Join-Path $PSScriptRoot '../../shared/fixtures' }
$fixtures = (Resolve-Path $fixtures).Path
$outDir = Join-Path $PSScriptRoot '../out/bench'
New-Item -ItemType Directory -Force $outDir | Out-Null
$resultFile = Join-Path $outDir 'results.json'

$worker = {
    param($ModulePath, $Fixtures, $Device, $Repeat, $ResultFile, $Processes, $Images)
    $ErrorActionPreference = 'Stop'
    $ProgressPreference = 'SilentlyContinue' # the parent reads this process's output: no progress records in it
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

    # Data parallel (sd-tiny, 128x128, 10 steps, one seed per prompt). Each run starts its workers afresh, so the
    # rows are single runs, not medians. The launcher shares the cores out (OMP_NUM_THREADS = cores / processes).
    $parallelDevice = if ($Device -eq 'cpu') { @{ Device = 'cpu' } } else { @{} } # else: cuda:LOCAL_RANK in each worker
    $outDir = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-bench-" + [guid]::NewGuid())
    try {
        $startOne = (Measure-Command { Start-DiffusionParallel -NumProcesses 1 @parallelDevice { } }).TotalMilliseconds
        Add-Row 'launcher' 'start 1 worker (pwsh + Import-Module)' $startOne 'single run'
        $startMany = (Measure-Command { Start-DiffusionParallel -NumProcesses $Processes @parallelDevice { } }).TotalMilliseconds
        Add-Row 'launcher' "start $Processes workers at once" $startMany "single run; $([math]::Round($startMany / $Processes)) ms per process"
        $loads = Start-DiffusionParallel -NumProcesses $Processes @parallelDevice -ArgumentList "$Fixtures/sd-tiny" {
            param($Model) (Measure-Command { $null = New-DiffusionPipeline $Model }).TotalMilliseconds
        }
        Add-Row 'launcher' 'model load in a fresh worker (sd-tiny)' (($loads | Sort-Object)[[int][math]::Floor($loads.Count / 2)]) "median of $Processes workers loading at once, backend load included"
        $prompts = 1..$Images | ForEach-Object { "a photo of prompt number $_" }
        foreach ($n in 1, $Processes) {
            $folder = Join-Path $outDir "p$n"
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $results = Invoke-Diffusion -Path "$Fixtures/sd-tiny" @parallelDevice -Prompt $prompts -NumProcesses $n -Seed 1 -Steps 10 -Height 128 -Width 128 -OutputPath "$folder/{index}.png"
            $wall = $clock.Elapsed.TotalSeconds
            # While generating: the busiest worker's time over its images.
            $busiest = ($results | Group-Object ProcessRank | ForEach-Object { ($_.Group | Measure-Object Seconds -Sum).Sum } | Measure-Object -Maximum).Maximum
            Add-Row 'sd-tiny' "$n process(es): $Images images end to end" ($wall * 1000) ("{0:N2} images/s" -f ($Images / $wall))
            Add-Row 'sd-tiny' "$n process(es): generating only" ($busiest * 1000) ("{0:N2} images/s, start-up and model load excluded" -f ($Images / $busiest))
        }
    } finally { Remove-Item $outDir -Recurse -Force -ErrorAction SilentlyContinue }

    $rows | ConvertTo-Json | Set-Content $ResultFile
    $rows | Format-Table -AutoSize | Out-Host
}
$pwsh = (Get-Process -Id $PID).Path
$pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
$encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes("& { $worker } '$ModulePath' '$fixtures' '$Device' $Repeat '$resultFile' $Processes $Images"))
& $pwsh @pwshArgs -NoProfile -NonInteractive -EncodedCommand $encoded
if ($LASTEXITCODE -ne 0) { throw "The benchmark failed (exit code $LASTEXITCODE)." }
Write-Host "Results: $resultFile"
