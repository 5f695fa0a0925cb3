# Per-block timing, module side (the speed issue): one denoiser call of a step, unit by unit (Diffusion.Bench's BlockTimings),
# on random inputs of the real shapes: SD with guidance (batch 2, 77 text tokens), FLUX batch 1 with -TextLength tokens.
# Prints one JSON line {"side":"module","case":..,"seconds":{unit: median seconds}}; diffusers_blocks.py prints the same.
#   dotnet pwsh -NoProfile -File bench/sxs/module_blocks.ps1 -Model ../sxs-models/sd15w -Size 512 [-Repeats 3]
param([Parameter(Mandatory)][string]$Model, [int]$Size = 512, [int]$TextLength = 512, [int]$Repeats = 3, [string]$Module = './out/Diffusion',
    [string]$BenchAssembly = './out/Diffusion.Bench/Diffusion.Bench.dll')
$ErrorActionPreference = 'Stop'
Import-Module $Module
$null = Get-DiffusionDevice
$context = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'Diffusion.Engine'
$timings = $context.LoadFromAssemblyPath((Resolve-Path $BenchAssembly).Path).GetType('Diffusion.Bench.BlockTimings', $true) # bench support, not in the module
$cls = (Get-Content -Raw (Join-Path $Model 'model_index.json') | ConvertFrom-Json)._class_name
$component = if ($cls -like '*Flux*') { 'transformer' } else { 'unet' }
$pipe = New-DiffusionPipeline $Model -Component $component -Device cpu -DType float32
$rows = $timings::Measure($pipe, $Size, $Size, $Repeats, $TextLength)
$seconds = [ordered]@{}
foreach ($r in $rows) { $seconds[$r.Key] = [math]::Round($r.Value, 5) }
[ordered]@{ side = 'module'; case = "$(Split-Path -Leaf $Model):$Size$(if ($component -eq 'transformer') { ":$TextLength" })"; threads = [Environment]::ProcessorCount; seconds = $seconds } | ConvertTo-Json -Compress -Depth 4
