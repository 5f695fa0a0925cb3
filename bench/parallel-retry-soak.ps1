#Requires -Version 7.4
<#
.SYNOPSIS
    Soak test of parallel retries: runs the kill-at-a-random-moment test of tests/ParallelRetry.Tests.ps1 many times.
.DESCRIPTION
    Each run is Invoke-Diffusion -NumProcesses 2 -Retry 1 over 4 sd-tiny prompts with one worker SIGKILLed at a random
    moment (DIFFUSION_TEST_KILL=rank:random:ms), and the test's checks: every prompt exactly once in the results or in
    ParallelPromptFailed errors, the results the files on disk with the right images, no journal left. Not part of CI
    (CI runs the same test once). Build first (./build.ps1); ends with `Soak: N runs, L losses, F failed`, where a
    loss is a run with a prompt lost or doubled, and exits 1 when any run failed.
.EXAMPLE
    dotnet pwsh -NoProfile ./bench/parallel-retry-soak.ps1 -Iterations 50
#>
[CmdletBinding()]
param(
    [ValidateRange(1, 10000)]
    [int] $Iterations = 50,
    # The built module (default: out/Diffusion).
    [string] $ModulePath
)

$ErrorActionPreference = 'Stop'
$root = Split-Path $PSScriptRoot -Parent
if ($ModulePath) { $env:DIFFUSION_MODULE = (Resolve-Path $ModulePath).Path }
elseif (-not $env:DIFFUSION_MODULE) { $env:DIFFUSION_MODULE = Join-Path $root 'out/Diffusion' }
if (-not (Test-Path (Join-Path $env:DIFFUSION_MODULE 'Diffusion.psd1'))) { throw "No built module at '$env:DIFFUSION_MODULE': run ./build.ps1 first." }

# Pester 6.2.0, restored as build.ps1 does.
dotnet restore (Join-Path $root 'build/Tools.csproj') --nologo -v q | Out-Null
if ($LASTEXITCODE -ne 0) { throw "Restoring Pester failed (exit code $LASTEXITCODE)." }
$packages = ((dotnet nuget locals global-packages --list) -replace '^global-packages:\s*', '').Trim()
Import-Module (Join-Path $packages 'pester/6.2.0/tools/Pester.psd1') -MinimumVersion 6.0

$c = New-PesterConfiguration
$c.Run.Container = New-PesterContainer -Path (Join-Path $root 'tests/ParallelRetry.Tests.ps1') -Data @{ RandomRuns = $Iterations }
$c.Filter.FullName = '*killed at a random moment*'
$c.Run.PassThru = $true
$c.Output.Verbosity = 'Detailed'
$clock = [Diagnostics.Stopwatch]::StartNew()
$r = Invoke-Pester -Configuration $c
$runs = @($r.Tests | Where-Object { $_.ExpandedName -like '*random moment*' -and $_.Result -in 'Passed', 'Failed' })
$failed = @($runs | Where-Object Result -eq 'Failed')
$losses = @($failed | Where-Object { "$($_.ErrorRecord)" -match 'LOST OR DOUBLED' })
foreach ($t in $failed) { Write-Host "FAILED: $($t.ExpandedName)`n  $($t.ErrorRecord -join "`n  ")" }
if ($r.FailedBlocksCount + $r.FailedContainersCount -gt 0) { Write-Host 'The test file''s setup failed: see above.' }
Write-Host ("Soak: {0} runs, {1} losses, {2} failed ({3:n0} s)" -f $runs.Count, $losses.Count, $failed.Count, $clock.Elapsed.TotalSeconds)
if ($failed.Count -gt 0 -or $runs.Count -ne $Iterations -or $r.FailedBlocksCount + $r.FailedContainersCount -gt 0) { exit 1 }
