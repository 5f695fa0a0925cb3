<#
.SYNOPSIS
    The demo: generates an image with the sd-tiny fixture pipeline (random weights: it looks like noise; the math
    is diffusers') and prints the PNG's path; then runs FLUX's staged flow and prints each stage's peak memory.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $Device = 'cpu',
    [string] $LibTorchPath
)
$ErrorActionPreference = 'Stop'
if ($LibTorchPath) { $env:DIFFUSION_LIBTORCH = $LibTorchPath }
$fixtures = if ($env:DIFFUSION_FIXTURES) { $env:DIFFUSION_FIXTURES } else { Join-Path $PSScriptRoot '../../shared/fixtures' }
$fixtures = (Resolve-Path $fixtures).Path
$outDir = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot '../out/demo'))
New-Item -ItemType Directory -Force $outDir | Out-Null

# A child pwsh, as a user would run it: the module loads its natives in a fresh process.
$script = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$ModulePath'
`$result = Invoke-Diffusion -Path '$fixtures/sd-tiny' -Device '$Device' -Prompt 'a photo of an astronaut riding a horse on mars' ``
    -Steps 20 -Seed 42 -Height 128 -Width 128 -OutputPath '$outDir/sd-tiny.png' -Force
`$result | Format-Table Index, Prompt, Seed, Device, Seconds -AutoSize | Out-Host
`$flux = '$fixtures/flux-tiny'
if (Test-Path `$flux) {
    Write-Host 'FLUX staged flow (peak engine memory per stage):'
    `$stages = [ordered]@{}
    Clear-DiffusionMemory
    `$enc = New-DiffusionPipeline `$flux -Component text_encoder, text_encoder_2 -Device '$Device'
    `$emb = 'a photo of a dog with cat-like look' | ConvertTo-DiffusionEmbedding -Pipeline `$enc -MaxSequenceLength 64
    Remove-DiffusionPipeline `$enc; `$stages['encode'] = (Get-DiffusionDevice '$Device').PeakByEngine; Clear-DiffusionMemory
    `$den = New-DiffusionPipeline `$flux -Component transformer -Device '$Device'
    `$lat = `$emb | Invoke-Denoise -Pipeline `$den -Steps 4 -GuidanceScale 3.5 -Height 128 -Width 128 -Seed 0
    Remove-DiffusionPipeline `$den; `$stages['denoise'] = (Get-DiffusionDevice '$Device').PeakByEngine; Clear-DiffusionMemory
    `$vae = New-DiffusionPipeline `$flux -Component vae -Device '$Device'
    `$lat | ConvertFrom-DiffusionLatent -Pipeline `$vae | Save-DiffusionImage '$outDir/flux-tiny-staged.png' -Force | Out-Null
    Remove-DiffusionPipeline `$vae; `$stages['decode'] = (Get-DiffusionDevice '$Device').PeakByEngine; Clear-DiffusionMemory
    `$stages.GetEnumerator() | ForEach-Object { [pscustomobject]@{ Stage = `$_.Key; PeakMB = [math]::Round(`$_.Value / 1MB, 2) } } | Format-Table -AutoSize | Out-Host
    Write-Host "FLUX image: $outDir/flux-tiny-staged.png"
}
"@
$pwsh = (Get-Process -Id $PID).Path
$pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
& $pwsh @pwshArgs -NoProfile -NonInteractive -Command $script
if ($LASTEXITCODE -ne 0) { throw "The demo failed (exit code $LASTEXITCODE)." }
$png = (Resolve-Path (Join-Path $outDir 'sd-tiny.png')).Path
Write-Host "Image: $png"
