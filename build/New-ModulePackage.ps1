<#
.SYNOPSIS
    Packs a built module folder (out/Diffusion) into a PowerShell Gallery .nupkg with PSResourceGet's Compress-PSResource
    (PowerShell 7.4+), which Install-PSResource installs from a folder registered as a repository, or from the Gallery.
.PARAMETER ModulePath
    The built module folder (holding Diffusion.psd1).
.PARAMETER OutputPath
    The folder the .nupkg is written to.
.PARAMETER NoBundledLibTorch
    Leave libtorch's native libraries out (about 450 MB): users bring their own libtorch (a PyTorch install's
    torch/lib, CPU or CUDA) through $env:DIFFUSION_LIBTORCH or Initialize-DiffusionBackend -LibTorchPath.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $OutputPath,
    [switch] $NoBundledLibTorch
)
$ErrorActionPreference = 'Stop'
Import-Module Microsoft.PowerShell.PSResourceGet -MinimumVersion 1.1.0
$manifest = Import-PowerShellDataFile (Join-Path $ModulePath 'Diffusion.psd1')
$stageRoot = Join-Path ([IO.Path]::GetTempPath()) ('diffusion-package-' + [guid]::NewGuid())
$stage = Join-Path $stageRoot 'Diffusion'
try {
    New-Item -ItemType Directory $stage | Out-Null
    Copy-Item (Join-Path $ModulePath '*') $stage -Recurse
    if ($NoBundledLibTorch) {
        # libtorch's own libraries (from the libtorch-cpu packages); TorchSharp's shim (libLibTorchSharp) stays.
        $natives = Get-ChildItem (Join-Path $stage 'deps') -File | Where-Object {
            $_.Name -cmatch '^(libtorch|libc10|libshm|libgomp|torch_|c10|asmjit|fbgemm|uv\.dll|libiomp|cudnn|cublas|nvrtc)'
        }
        $natives | Remove-Item
    }
    $license = Join-Path $PSScriptRoot '../LICENSE'
    if (Test-Path $license) { Copy-Item $license $stage }
    New-Item -ItemType Directory -Force $OutputPath | Out-Null
    Compress-PSResource -Path $stage -DestinationPath $OutputPath
    $package = Join-Path $OutputPath "Diffusion.$($manifest.ModuleVersion).nupkg"
    if (-not (Test-Path $package)) { throw "Compress-PSResource wrote no '$package'." }
    Get-Item $package
}
finally {
    if ((Split-Path $stageRoot -Leaf).StartsWith('diffusion-package-')) { Remove-Item $stageRoot -Recurse -Force -ErrorAction SilentlyContinue }
}
