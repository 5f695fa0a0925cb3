<#
.SYNOPSIS
    The benchmark: times each stage of the tiny fixture pipelines (CPU, so CI exercises it) and prints a table.
.DESCRIPTION
    Rows: text encode, one denoiser step, VAE decode and a whole image, for sd-tiny and flux-tiny, as the median
    of -Repeat runs after a warm-up, plus the engine's peak memory. Device maps: planning FLUX.1-dev (12B, from a
    header-only copy whose data are holes in sparse files) and the tiny transformer's step with its weights
    offloaded (CPU: streamed from CPU memory or from the file). With -Device cuda also the GPU rows of issue 5:
    the full-size FLUX transformer (zero weights) split between cuda:0 and cpu under a 16 GB budget, next to all
    on the GPU: step time and GPU memory in use. Data parallel (sd-tiny): images/s of
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
    [int] $Images = 8,
    # The test and benchmark support assembly (ActivationProbe), which ./build.ps1 builds beside the module.
    [string] $BenchAssembly = (Join-Path $PSScriptRoot '../out/Diffusion.Bench/Diffusion.Bench.dll'),
    # Per-block rows at the real widths too: a folder with sd15w and fluxw (bench/sxs/make_wide_models.py, made in the
    # CPU rig); without it the per-block rows are the tiny fixtures'.
    [string] $WideModels = ''
)
$ErrorActionPreference = 'Stop'
if ($LibTorchPath) { $env:DIFFUSION_LIBTORCH = $LibTorchPath }
$fixtures = if ($env:DIFFUSION_FIXTURES) { $env:DIFFUSION_FIXTURES } else { Join-Path $PSScriptRoot '../../shared/fixtures' }
$fixtures = (Resolve-Path $fixtures).Path
$outDir = Join-Path $PSScriptRoot '../out/bench'
New-Item -ItemType Directory -Force $outDir | Out-Null
$resultFile = Join-Path $outDir 'results.json'

$worker = {
    param($ModulePath, $Fixtures, $Device, $Repeat, $ResultFile, $Processes, $Images, $BenchAssembly, $WideModels)
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
    Clear-DiffusionMemory

    $engine = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'Diffusion.Engine'
    $benchSupport = $engine.LoadFromAssemblyPath($BenchAssembly) # block timings, header-only checkpoints, the activation probe (not in the module)

    # Per block (the speed issue): one denoiser call of a step, unit by unit (forward hooks on the units a device map
    # places), plus the whole call and one scheduler step; median of -Repeat calls after a warm-up, random inputs of the
    # step's shapes (SD: batch 2 for guidance, 77 tokens). bench/sxs/diffusers_blocks.py times the same units in diffusers.
    $timings = $benchSupport.GetType('Diffusion.Bench.BlockTimings', $true)
    $blockCases = @(@{ Model = "$Fixtures/sd-tiny"; Name = 'sd-tiny'; Component = 'unet'; Size = 128; Text = 77 }
        @{ Model = "$Fixtures/flux-tiny"; Name = 'flux-tiny'; Component = 'transformer'; Size = 128; Text = 64 })
    if ($WideModels) {
        $blockCases += @{ Model = "$WideModels/sd15w"; Name = 'SD 1.5 UNet (sd15w)'; Component = 'unet'; Size = 512; Text = 77 }
        $blockCases += @{ Model = "$WideModels/fluxw"; Name = 'FLUX width (fluxw)'; Component = 'transformer'; Size = 256; Text = 512 }
    }
    foreach ($case in $blockCases) {
        $blockPipe = New-DiffusionPipeline $case.Model -Component $case.Component -Device $Device
        try {
            foreach ($unit in $timings::Measure($blockPipe, $case.Size, $case.Size, $Repeat, $case.Text)) {
                Add-Row $case.Name "block $($unit.Key) ($($case.Size)x$($case.Size))" ($unit.Value * 1000) "median of $Repeat calls"
            }
        } finally { Remove-DiffusionPipeline $blockPipe; Clear-DiffusionMemory }
    }

    # Device maps. Planning reads safetensors headers only: FLUX.1-dev at full size, written as a header-only copy.
    $writer = $benchSupport.GetType('Diffusion.Bench.HeaderOnlyCheckpoint', $true)
    $fluxDev = Join-Path ([IO.Path]::GetTempPath()) "diffusion-bench-flux-dev-$PID"
    try {
        $null = $writer::WriteFluxDev($fluxDev, 'BF16')
        Add-Row 'FLUX.1-dev' 'plan transformer, 16GB GPU + cpu' (Measure-Median { Get-DiffusionDeviceMap $fluxDev -Component transformer -DType bfloat16 -MaxMemory @{ 0 = '16GB'; cpu = '64GB' } }) 'headers only, no weights loaded'
        Add-Row 'FLUX.1-dev' 'plan pipeline balanced, 2 x 16GB GPUs' (Measure-Median { Get-DiffusionDeviceMap $fluxDev -DType bfloat16 -MaxMemory @{ 0 = '16GB'; 1 = '16GB'; cpu = '64GB' } }) 'headers only, no weights loaded'
        $plan = Get-DiffusionDeviceMap $fluxDev -Component transformer -DType bfloat16 -MaxMemory @{ 0 = '16GB'; cpu = '64GB' }
        $gpu = $plan.Components['transformer'].Devices | Where-Object Device -eq 'cuda:0'
        Add-Row 'FLUX.1-dev' 'planned on cuda:0 (GB): weights / activations / streaming' 0 ('{0:N2} / {1:N2} / {2:N2}, {3} blocks offloaded' -f ($gpu.Weights / 1e9), ($gpu.ActivationHeadroom / 1e9), ($gpu.StreamingBuffer / 1e9), $plan.Components['transformer'].OffloadedUnits.Count)

        # Loading: the model is built on the meta device and each tensor is read from the file straight into its
        # dtype and device, so host memory peaks at the loaded model (plus one tensor), not at a float32 copy of it.
        # SD 1.5's UNet at full size (860M parameters, float32 header-only file: zeros), each load in a fresh pwsh so
        # the process's peak working set is the load's own.
        $sd15 = $writer::WriteStableDiffusion15Unet((Join-Path $fluxDev 'sd15-unet'))
        $pwsh = (Get-Process -Id $PID).Path
        $pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
        foreach ($dtype in 'bfloat16', 'float32') {
            $load = "Import-Module '$ModulePath'; `$null = Get-DiffusionDevice; `$p = [Diagnostics.Process]::GetCurrentProcess(); `$before = `$p.WorkingSet64; " +
                "`$s = [Diagnostics.Stopwatch]::StartNew(); `$pipe = New-DiffusionPipeline '$sd15' -Device '$Device' -DType $dtype; `$s.Stop(); `$p.Refresh(); " +
                "'{0} {1} {2}' -f `$s.Elapsed.TotalMilliseconds, `$before, `$p.PeakWorkingSet64"
            $ms, $before, $peak = ((& $pwsh @pwshArgs -NoProfile -NonInteractive -Command $load) | Select-Object -Last 1) -split ' '
            Add-Row 'SD 1.5' "load UNet (860M) from float32 file as $dtype on $Device" ([double]$ms) ('host peak working set {0:N2} GB ({1:N2} GB before loading)' -f ([double]$peak / 1e9), ([double]$before / 1e9))
        }

        # One denoising step of a transformer loaded with the given placement, median of single-step runs, and
        # the device's memory in use (total - free, the low point of free memory after each step).
        function Measure-Step($folder, [hashtable] $placement, $embedding, [int] $size, [string] $memoryDevice) {
            $pipe = New-DiffusionPipeline $folder -Component transformer @placement
            try {
                $script:used = 0
                $ms = Measure-Median {
                    $embedding | Invoke-Denoise -Pipeline $pipe -Steps 1 -Seed 1 -Height $size -Width $size
                    if ($memoryDevice) { $d = Get-DiffusionDevice $memoryDevice; $script:used = [math]::Max($script:used, $d.TotalMemory - $d.FreeMemory) }
                }
                [pscustomobject]@{ Milliseconds = $ms; Used = $script:used }
            } finally { Remove-DiffusionPipeline $pipe; Clear-DiffusionMemory }
        }

        # The activation head-room estimate against what a forward really takes (CPU peak resident memory), for a
        # FLUX transformer of width 1024 (one block of each kind, random weights).
        $probe = $benchSupport.GetType('Diffusion.Bench.ActivationProbe', $true)
        $probeConfig = '{"attention_head_dim":128,"axes_dims_rope":[16,56,56],"guidance_embeds":true,"in_channels":64,"joint_attention_dim":1024,"num_attention_heads":8,"num_layers":1,"num_single_layers":1,"patch_size":1,"pooled_projection_dim":256}'
        foreach ($case in @(@{ DType = 'float32'; Size = 768 }, @{ DType = 'bfloat16'; Size = 768 })) {
            $m = $probe::MeasureFlux($probeConfig, $case.DType, $case.Size, 512)
            if ($m) {
                Add-Row 'flux width 1024' "activations at $($case.Size)px $($case.DType): estimate / measured (MB)" 0 ('{0:N0} / {1:N0} (CPU peak resident memory over rest)' -f ($m.Item2 / 1e6), ($m.Item1 / 1e6))
            }
        }

        # CPU: the offload machinery on the tiny transformer (every block streamed for each call).
        $tinyEmb = ConvertTo-DiffusionEmbedding -Pipeline ($enc = New-DiffusionPipeline "$Fixtures/flux-tiny" -Component text_encoder, text_encoder_2 -Device cpu) 'a photo of a dog' -MaxSequenceLength 64
        Remove-DiffusionPipeline $enc
        foreach ($case in @(
                @{ Name = 'all on cpu'; Placement = @{ Device = 'cpu' } }
                @{ Name = 'sequential offload (cpu -> cpu)'; Placement = @{ Device = 'cpu'; Offload = 'sequential' } }
                @{ Name = 'blocks on disk (read per step)'; Placement = @{ DeviceMap = @{ '' = 'disk'; x_embedder = 'cpu' } } })) {
            $r = Measure-Step "$Fixtures/flux-tiny" $case.Placement $tinyEmb 128 $null
            Add-Row 'flux-tiny' "transformer step 128x128, $($case.Name)" $r.Milliseconds
        }

        if ($Device -like 'cuda*') {
            # GPU rows (issue 5): FLUX.1-dev's transformer at full size in bfloat16 with zero weights (the sparse
            # header-only copy reads as zeros; kernels do not skip zeros), 1024x1024, 512 T5 tokens.
            $embFile = Join-Path $fluxDev 'embedding.safetensors'
            $writer::WriteSparse($embFile, [System.Collections.Generic.List[System.ValueTuple[string, string, long[]]]]@(
                    [System.ValueTuple[string, string, long[]]]::new('prompt_embeds', 'BF16', [long[]](1, 512, 4096)),
                    [System.ValueTuple[string, string, long[]]]::new('pooled_prompt_embeds', 'BF16', [long[]](1, 768))))
            $emb = Import-DiffusionTensor $embFile
            foreach ($case in @(
                    @{ Name = 'all on cuda:0'; Placement = @{ Device = 'cuda:0'; DType = 'bfloat16' } }
                    @{ Name = 'cuda:0 16GB + cpu (auto)'; Placement = @{ DeviceMap = 'auto'; MaxMemory = @{ 0 = '16GB'; cpu = '64GB' }; DType = 'bfloat16' } }
                    @{ Name = 'model offload'; Placement = @{ Device = 'cuda:0'; Offload = 'model'; DType = 'bfloat16' } }
                    @{ Name = 'sequential offload'; Placement = @{ Device = 'cuda:0'; Offload = 'sequential'; DType = 'bfloat16' } })) {
                try {
                    $r = Measure-Step $fluxDev $case.Placement $emb 1024 'cuda:0'
                    Add-Row 'FLUX.1-dev' "transformer step 1024x1024 bf16, $($case.Name)" $r.Milliseconds ('GPU memory in use {0:N2} GB' -f ($r.Used / 1e9))
                } catch { Add-Row 'FLUX.1-dev' "transformer step 1024x1024 bf16, $($case.Name)" 0 "failed: $($_.Exception.Message)" }
            }
        } else {
            Add-Row 'FLUX.1-dev' 'transformer step, cuda:0 16GB + cpu vs all on GPU' 0 'GPU rows: run build.ps1 -Task Bench -Device cuda on a machine with a CUDA GPU'
        }
    } finally { Remove-Item $fluxDev -Recurse -Force -ErrorAction SilentlyContinue }

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
    $rows | Format-Table -AutoSize | Out-String -Width 220 | Out-Host
}
$pwsh = (Get-Process -Id $PID).Path
$pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
$encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes("& { $worker } '$ModulePath' '$fixtures' '$Device' $Repeat '$resultFile' $Processes $Images '$((Resolve-Path $BenchAssembly).Path)' '$(if ($WideModels) { (Resolve-Path $WideModels).Path })'"))
& $pwsh @pwshArgs -NoProfile -NonInteractive -EncodedCommand $encoded
if ($LASTEXITCODE -ne 0) { throw "The benchmark failed (exit code $LASTEXITCODE)." }
Write-Host "Results: $resultFile"
