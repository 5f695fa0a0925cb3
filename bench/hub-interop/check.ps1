# Interop of the module's Hub cache with Python's huggingface_hub and diffusers (not part of CI: needs the cpuref rig,
# ../shared/tools/cpuref, set up as its README says). From the repository root, after ./build.ps1:
#   dotnet pwsh -NoProfile ./bench/hub-interop/check.ps1
# 1. The module downloads test/sd-tiny (and its fp16 variant) from the local Hub stand-in; Python's snapshot_download
#    (local_files_only) and DiffusionPipeline.from_pretrained read that cache, and scan_cache_dir reports it.
# 2. diffusers' DiffusionPipeline.download fetches the same repos from the same server into another cache; the module
#    loads from it offline and generates the same image as from the fixture folder.
# 3. Both caches have the same layout: the same files, blob names, relative link targets and refs; and diffusers asked
#    the server for the same files as the module.
param([string] $Module = (Join-Path $PSScriptRoot '../../out/Diffusion'))
$ErrorActionPreference = 'Stop'
$PSStyle.OutputRendering = 'PlainText'
$root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
Import-Module $Module -Force
Add-Type -Path (Join-Path $root 'tests/Hub/HubTestServer.cs')
$fixtures = if ($env:DIFFUSION_FIXTURES) { $env:DIFFUSION_FIXTURES } else { Join-Path $root '../shared/fixtures' }
$sdTiny = Join-Path $fixtures 'sd-tiny'
$cpuref = Join-Path $root '../shared/tools/cpuref/run.sh'

$server = [DiffusionTests.HubTestServer]::new()
$server.AbsoluteCdnLocation = $true # as the real Hub's CDN redirects: huggingface_hub follows only relative ones on HEAD
$commit = '1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b'
$server.AddRepo('test/sd-tiny', $commit, '')
$server.AddFolder('test/sd-tiny', $sdTiny, '')
$fp16 = Join-Path $fixtures 'single-file/sd-tiny-fp16'
foreach ($f in Get-ChildItem $fp16 -Recurse -Filter '*.fp16.safetensors') { $server.AddFile('test/sd-tiny', [IO.Path]::GetRelativePath($fp16, $f.FullName), $f.FullName) }
foreach ($d in 'v1-5-pruned-emaonly.safetensors', 'unet/diffusion_pytorch_model.bin', 'text_encoder/pytorch_model.bin', 'unet/diffusion_pytorch_model.non_ema.safetensors') {
    $server.AddDecoy('test/sd-tiny', $d, 64MB)
}

$tmp = Join-Path ([IO.Path]::GetTempPath()) ('diffusion-hub-interop-' + [guid]::NewGuid().ToString('N'))
$inside = '/host-tmp/' + (Split-Path $tmp -Leaf) # the same folder as the rig sees it
New-Item -ItemType Directory $tmp | Out-Null
$results = [ordered]@{}
function Invoke-Python([string] $mode, [string] $cache, [string] $repo, [string] $variant) {
    $env:CPUREF_ENV = "HF_HUB_OFFLINE=0 HF_ENDPOINT=$($server.Endpoint) HF_HUB_DISABLE_TELEMETRY=1"
    $out = & bash $cpuref python3 bench/hub-interop/interop.py $mode "$inside/$cache" $repo @(if ($variant) { $variant }) 2>&1
    if ($LASTEXITCODE -ne 0) { throw "python $mode $cache failed:`n$($out -join "`n")" }
    ($out | Where-Object { "$_".StartsWith('{') } | Select-Object -Last 1) | ConvertFrom-Json
}
function Get-Layout([string] $cache) {
    $repo = Join-Path $tmp "$cache/models--test--sd-tiny"
    Get-ChildItem $repo -Recurse -Force | Where-Object { -not $_.PSIsContainer -or $_.LinkType } | ForEach-Object {
        $rel = [IO.Path]::GetRelativePath($repo, $_.FullName)
        if ($rel.StartsWith('.no_exist')) { return }
        if ($_.LinkType) { "$rel -> $($_.LinkTarget)" }
        elseif ($rel.StartsWith('refs')) { "$rel = $(Get-Content $_.FullName -Raw)" }
        else { "$rel ($($_.Length) bytes)" }
    } | Sort-Object
}
function Get-Requested { @($server.Requests | Where-Object { $_.Repo -eq 'test/sd-tiny' -and $_.File -and $_.Target -notlike '/cdn-lfs/*' } | ForEach-Object File | Sort-Object -Unique) }

try {
    Push-Location $root
    $env:HF_ENDPOINT = $server.Endpoint
    foreach ($case in @(@{ Name = 'plain'; Variant = $null }, @{ Name = 'fp16'; Variant = 'fp16' })) {
        $v = $case.Variant
        # 1. ours, read by Python
        $env:HF_HUB_CACHE = Join-Path $tmp "ours-$($case.Name)"; $env:HF_HUB_OFFLINE = $null
        $server.ClearRequests()
        $null = if ($v) { Save-DiffusionModel test/sd-tiny -Variant $v } else { Save-DiffusionModel test/sd-tiny }
        $oursRequested = Get-Requested
        $read = Invoke-Python read "ours-$($case.Name)" test/sd-tiny $v
        $results["python reads ours ($($case.Name))"] = "$($read.pipeline) with $($read.components -join ', '); snapshot_download -> $(Split-Path $read.snapshot -Leaf); scan: $($read.repos.repo_id) $($read.repos.size_on_disk) bytes, refs $($read.repos.refs -join ','), $($read.repos.nb_files) files$(if ($read.warnings) { "; warnings: $($read.warnings -join '; ')" })"
        # 2. Python's download, read by us offline
        $server.ClearRequests()
        $null = Invoke-Python write "py-$($case.Name)" test/sd-tiny $v
        $pyRequested = Get-Requested
        $env:HF_HUB_CACHE = Join-Path $tmp "py-$($case.Name)"; $env:HF_HUB_OFFLINE = '1'
        $models = Get-DiffusionModel
        $results["we list python's ($($case.Name))"] = "$($models.RepoId) $($models.SizeOnDisk) bytes, $($models.Revisions.Name -join ',') -> $($models.Revisions.Commit -join ',')"
        if (-not $v) {
            $a = Invoke-Diffusion -Path test/sd-tiny -Prompt 'a red cube' -Steps 2 -Seed 3 -Height 64 -Width 64
            $b = Invoke-Diffusion -Path $sdTiny -Prompt 'a red cube' -Steps 2 -Seed 3 -Height 64 -Width 64
            $results["we load python's ($($case.Name))"] = if ([Convert]::ToBase64String($a.Rgb) -eq [Convert]::ToBase64String($b.Rgb)) { 'same image as from the fixture folder' } else { 'DIFFERENT image' }
        }
        else {
            $results["we find python's snapshot ($($case.Name))"] = (Get-DiffusionModel test/sd-tiny).Path
        }
        $env:HF_HUB_OFFLINE = $null
        # 3. same layout, same requests
        $diff = Compare-Object (Get-Layout "ours-$($case.Name)") (Get-Layout "py-$($case.Name)")
        $results["same layout ($($case.Name))"] = if ($diff) { 'DIFFERENT: ' + (($diff | ForEach-Object { "$($_.SideIndicator) $($_.InputObject)" }) -join '; ') } else { "identical ($(@(Get-Layout "ours-$($case.Name)").Count) entries)" }
        $rdiff = Compare-Object $oursRequested $pyRequested
        $results["same files asked for ($($case.Name))"] = if ($rdiff) { 'DIFFERENT: ' + (($rdiff | ForEach-Object { "$($_.SideIndicator) $($_.InputObject)" }) -join '; ') } else { "identical ($($oursRequested.Count) files: $($oursRequested -join ', '))" }
    }
}
finally {
    Pop-Location
    $server.Dispose()
    if ($tmp.StartsWith((Join-Path ([IO.Path]::GetTempPath()) 'diffusion-hub-interop-'))) { Remove-Item $tmp -Recurse -Force -ErrorAction SilentlyContinue }
}
[pscustomobject] $results | Format-List
