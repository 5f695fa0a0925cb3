#Requires -Version 7.4
<#
.SYNOPSIS
    Builds, tests, benchmarks and demonstrates the Diffusion module.
.DESCRIPTION
    Build  (default) restores packages, installs what the platform needs (on Debian 12 a newer libstdc++), and lays
           the module out under out/Diffusion so that `Import-Module ./out/Diffusion` works.
    Test   builds, runs the engine tests (xunit) and the module tests (Pester) and ends with
           `Tests: N passed, M failed`.
    Bench  builds and runs the benchmark (bench/Invoke-Benchmark.ps1).
    Demo   builds and generates an image from the sd-tiny fixture pipeline, printing its path.
    Package builds and writes the module as a PowerShell Gallery package, out/package/Diffusion.<version>.nupkg, that
           Install-PSResource installs (from a folder registered with Register-PSResourceRepository, or the Gallery).
           With -NoBundledLibTorch it leaves libtorch out: users bring theirs through $env:DIFFUSION_LIBTORCH.
    Clean  removes build outputs.
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 -Task Demo
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 -Task Test
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Bench', 'Demo', 'Package', 'Clean')]
    [string] $Task = 'Build',
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',
    # A libtorch folder (e.g. a PyTorch install's torch/lib) to run on instead of the bundled CPU libtorch.
    [string] $LibTorchPath,
    # Device for Bench/Demo (cpu, cuda, cuda:N).
    [string] $Device = 'cpu',
    # Build without the bundled libtorch-cpu natives (~600 MB), for machines that bring their own libtorch.
    [switch] $NoBundledLibTorch,
    # Pester tests to run (-Task Test): file name filters, e.g. 'Tokens'.
    [string[]] $TestFilter,
    # Bench: also the per-block rows at the real widths, from this folder's sd15w and fluxw (bench/sxs/make_wide_models.py).
    [string] $WideModels
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$root = $PSScriptRoot
$out = Join-Path $root 'out'
$moduleOut = Join-Path $out 'Diffusion'
$rid = if ($IsWindows) { 'win-x64' } elseif ($IsMacOS) { 'osx-arm64' } else { 'linux-x64' }

function Invoke-Native([string] $what, [scriptblock] $command) {
    & $command
    if ($LASTEXITCODE -ne 0) { throw "$what failed (exit code $LASTEXITCODE)." }
}

function Install-Prerequisite {
    if ($IsLinux) {
        Invoke-Native 'Checking native dependencies' { bash (Join-Path $root 'build/ensure-native-deps.sh') }
    }
}

function Get-PesterPath {
    Invoke-Native 'Restoring Pester' { dotnet restore (Join-Path $root 'build/Tools.csproj') --nologo -v q }
    $packages = (dotnet nuget locals global-packages --list) -replace '^global-packages:\s*', ''
    $psd1 = Join-Path $packages.Trim() 'pester/6.2.0/tools/Pester.psd1'
    if (-not (Test-Path $psd1)) { throw "Pester 6.2.0 was restored but '$psd1' is missing." }
    $psd1
}

function Invoke-Build {
    Install-Prerequisite
    $withCpu = if ($NoBundledLibTorch) { 'false' } else { 'true' }
    $deps = Join-Path $moduleOut 'deps'
    Write-Host "Building engine -> $deps"
    Invoke-Native 'Engine build' {
        dotnet publish (Join-Path $root 'engine/Diffusion.Engine.csproj') -c $Configuration -r $rid --self-contained false `
            -o $deps --nologo -v q "-p:WithLibTorchCpu=$withCpu" -p:GenerateDocumentationFile=false
    }
    Write-Host "Building cmdlets -> $moduleOut"
    Invoke-Native 'Cmdlet build' {
        dotnet build (Join-Path $root 'cmdlets/Diffusion.Cmdlets.csproj') -c $Configuration --nologo -v q "-p:WithLibTorchCpu=$withCpu"
    }
    $cmdletBin = Join-Path $root "cmdlets/bin/$Configuration/net8.0/$rid"
    Copy-Item (Join-Path $cmdletBin 'Diffusion.dll'), (Join-Path $cmdletBin 'Diffusion.pdb') $moduleOut -Force
    Copy-Item (Join-Path $root 'Diffusion.psd1') $moduleOut -Force
    Get-ChildItem (Join-Path $root 'module') -File | Copy-Item -Destination $moduleOut -Force
    $aboutSource = Join-Path $root 'module/en-US'
    if (Test-Path $aboutSource) { Copy-Item $aboutSource -Destination $moduleOut -Recurse -Force }
    $helpBuilder = Join-Path $root 'build/New-MamlHelp.ps1'
    if (Test-Path $helpBuilder) { & $helpBuilder -ModulePath $moduleOut -SourcePath (Join-Path $root 'module/help') }
    # Test and benchmark support (tensor comparisons, the activation probe, the architecture benchmark): beside the
    # module, not in it; the Pester tests and bench/ load it into the engine's load context.
    $benchOut = Join-Path $out 'Diffusion.Bench'
    Write-Host "Building test and benchmark support -> $benchOut"
    Invoke-Native 'Bench support build' {
        dotnet build (Join-Path $root 'bench/Diffusion.Bench/Diffusion.Bench.csproj') -c $Configuration --nologo -v q "-p:WithLibTorchCpu=$withCpu"
    }
    New-Item -ItemType Directory -Force $benchOut | Out-Null
    $benchBin = Join-Path $root "bench/Diffusion.Bench/bin/$Configuration/net8.0/$rid"
    Copy-Item (Join-Path $benchBin 'Diffusion.Bench.dll'), (Join-Path $benchBin 'Diffusion.Bench.pdb') $benchOut -Force
    Write-Host "Module ready: Import-Module $moduleOut"
}

function Invoke-EngineTest {
    $results = Join-Path $out 'test-results'
    Remove-Item $results -Recurse -Force -ErrorAction SilentlyContinue
    $project = Join-Path $root 'tests/Engine.Tests/Diffusion.Engine.Tests.csproj'
    dotnet test $project -c $Configuration --nologo --logger 'trx;LogFileName=engine.trx' --results-directory $results | Out-Host
    $trx = Join-Path $results 'engine.trx'
    if (-not (Test-Path $trx)) { throw 'The engine tests did not run (no results file); see the build output above.' }
    $counters = ([xml](Get-Content $trx -Raw)).TestRun.ResultSummary.Counters
    [pscustomobject]@{ Suite = 'engine (xunit)'; Passed = [int]$counters.passed; Failed = [int]$counters.failed + [int]$counters.error + [int]$counters.timeout + [int]$counters.aborted }
}

function Invoke-ModuleTest {
    $pester = Get-PesterPath
    $resultFile = Join-Path $out 'test-results/pester.json'
    # From bash, -TestFilter a,b arrives as one string: split it.
    $filter = if ($TestFilter) { ($TestFilter -split ',' | ForEach-Object { "'$($_.Trim())'" }) -join ',' } else { '' }
    # A fresh pwsh: the module's natives load once per process, as a user's session would.
    $script = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$pester' -MinimumVersion 6.0
`$c = New-PesterConfiguration
`$files = Get-ChildItem '$root/tests' -Filter '*.Tests.ps1' -File
if (@($filter).Count) { `$files = `$files | Where-Object { `$n = `$_.Name; @($filter) | Where-Object { `$n -like "*`$_*" } } }
`$c.Run.Path = @(`$files.FullName)
`$c.Run.PassThru = `$true
`$c.Output.Verbosity = 'Detailed'
`$r = Invoke-Pester -Configuration `$c
@{ Passed = `$r.PassedCount; Failed = `$r.FailedCount + `$r.FailedBlocksCount + `$r.FailedContainersCount } | ConvertTo-Json | Set-Content '$resultFile'
"@
    New-Item -ItemType Directory -Force (Split-Path $resultFile) | Out-Null
    Remove-Item $resultFile -ErrorAction SilentlyContinue # a crashed Pester host must not leave the last run's counts
    $pwsh = (Get-Process -Id $PID).Path
    $pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
    $env:DIFFUSION_MODULE = $moduleOut
    & $pwsh @pwshArgs -NoProfile -NonInteractive -Command $script | Out-Host
    if (-not (Test-Path $resultFile)) { throw 'The Pester run ended without results; see its output above.' }
    $r = Get-Content $resultFile -Raw | ConvertFrom-Json
    [pscustomobject]@{ Suite = 'module (Pester)'; Passed = [int]$r.Passed; Failed = [int]$r.Failed }
}

switch ($Task) {
    'Clean' {
        Remove-Item $out -Recurse -Force -ErrorAction SilentlyContinue
        Get-ChildItem $root -Include bin, obj -Directory -Recurse | Remove-Item -Recurse -Force
    }
    'Build' { Invoke-Build }
    'Package' {
        Invoke-Build
        & (Join-Path $root 'build/New-ModulePackage.ps1') -ModulePath $moduleOut -OutputPath (Join-Path $out 'package') -NoBundledLibTorch:$NoBundledLibTorch
    }
    'Test' {
        Invoke-Build
        $suites = @()
        if (-not $TestFilter) { $suites += Invoke-EngineTest }
        $suites += Invoke-ModuleTest
        $suites | Format-Table -AutoSize | Out-Host
        $passed = ($suites | Measure-Object Passed -Sum).Sum
        $failed = ($suites | Measure-Object Failed -Sum).Sum
        Write-Host "Tests: $passed passed, $failed failed"
        if ($failed -gt 0) { exit 1 }
    }
    'Bench' {
        Invoke-Build
        & (Join-Path $root 'bench/Invoke-Benchmark.ps1') -ModulePath $moduleOut -Device $Device -LibTorchPath $LibTorchPath -WideModels $WideModels
        # The model-level table (real SD 1.5 / FLUX.1-dev architectures on CUDA, the tiny configs on CPU), in a fresh pwsh.
        $pwsh = (Get-Process -Id $PID).Path
        $pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
        if ($LibTorchPath) { $env:DIFFUSION_LIBTORCH = $LibTorchPath }
        & $pwsh @pwshArgs -NoProfile -NonInteractive -File (Join-Path $root 'bench/Invoke-ArchitectureBenchmark.ps1') -ModulePath $moduleOut -Device $Device
        if ($LASTEXITCODE -ne 0) { throw "The architecture benchmark failed (exit code $LASTEXITCODE)." }
    }
    'Demo' {
        Invoke-Build
        & (Join-Path $root 'build/Invoke-Demo.ps1') -ModulePath $moduleOut -Device $Device -LibTorchPath $LibTorchPath
    }
}
