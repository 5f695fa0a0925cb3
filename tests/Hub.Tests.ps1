# Models by Hugging Face repo id: the huggingface_hub cache layout, downloads of only what a load reads, offline use,
# resumed and checked downloads, Hub errors, and Save/Get/Remove-DiffusionModel. Against a local stand-in for the Hub
# (tests/Hub/HubTestServer.cs, on 127.0.0.1) that serves the fixture folders plus decoy files a correct client never asks for.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    Add-Type -Path (Join-Path $PSScriptRoot 'Hub/HubTestServer.cs')
    $script:Pwsh = (Get-Process -Id $PID).Path
    $script:PwshArgs = @(if ((Split-Path $script:Pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })

    $script:Server = [DiffusionTests.HubTestServer]::new()
    $script:Commit = '1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b'
    $script:Token = 'hf_test_token_for_the_gated_repo'
    $fp16 = Join-Path $script:Fixtures 'single-file/sd-tiny-fp16'

    # test/sd-tiny: sd-tiny, its fp16 variant beside it (as stable-diffusion-v1-5 has), and decoys.
    $script:Server.AddRepo('test/sd-tiny', $script:Commit, $null)
    $script:Server.AddFolder('test/sd-tiny', $script:SdTiny, '')
    foreach ($f in Get-ChildItem $fp16 -Recurse -Filter '*.fp16.safetensors') {
        $script:Server.AddFile('test/sd-tiny', [IO.Path]::GetRelativePath($fp16, $f.FullName).Replace('\', '/'), $f.FullName)
    }
    $script:Decoys = @(
        'v1-5-pruned-emaonly.safetensors', 'v1-5-pruned.ckpt', 'unet/diffusion_pytorch_model.bin', 'unet/diffusion_pytorch_model.non_ema.safetensors',
        'text_encoder/pytorch_model.bin', 'text_encoder/model.fp32.safetensors', 'vae/diffusion_pytorch_model.msgpack', 'unet/model.onnx',
        'safety_checker/model.safetensors'
    )
    foreach ($d in $script:Decoys) { $script:Server.AddDecoy('test/sd-tiny', $d, 64MB) }

    # test/flux-tiny: flux-tiny with FLUX.1-dev's root-level single-file checkpoints as decoys.
    $script:Server.AddRepo('test/flux-tiny', $script:Commit, $null)
    $script:Server.AddFolder('test/flux-tiny', $script:FluxTiny, '')
    $script:FluxDecoys = @('flux1-dev.safetensors', 'ae.safetensors', 'transformer/diffusion_pytorch_model.bin', 'text_encoder_2/pytorch_model.bin')
    foreach ($d in $script:FluxDecoys) { $script:Server.AddDecoy('test/flux-tiny', $d, 64MB) }

    $script:Server.AddRepo('test/gated', $script:Commit, $script:Token)
    $script:Server.AddFolder('test/gated', $script:SdTiny, '')

    # Only pickle weights for the UNet: refused, never fetched.
    $script:Server.AddRepo('test/pickle-only', $script:Commit, $null)
    $script:Server.AddFile('test/pickle-only', 'model_index.json', (Join-Path $script:SdTiny 'model_index.json'))
    $script:Server.AddFile('test/pickle-only', 'unet/config.json', (Join-Path $script:SdTiny 'unet/config.json'))
    $script:Server.AddDecoy('test/pickle-only', 'unet/diffusion_pytorch_model.bin', 8MB)

    $script:HubVariables = 'HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HOME', 'HF_TOKEN', 'HF_HUB_OFFLINE', 'HUGGINGFACE_HUB_CACHE', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'TRANSFORMERS_OFFLINE'
    $script:SavedVariables = @{}
    foreach ($v in $script:HubVariables) { $script:SavedVariables[$v] = [Environment]::GetEnvironmentVariable($v) }
    $script:TempPrefix = Join-Path ([IO.Path]::GetTempPath()) 'diffusion-hub-'

    # A fresh cache and HF_HOME under a temp dir of this test, the Hub at the local server, no token, online.
    function New-HubScope {
        $dir = $script:TempPrefix + [guid]::NewGuid().ToString('N')
        New-Item -ItemType Directory $dir | Out-Null
        foreach ($v in $script:HubVariables) { [Environment]::SetEnvironmentVariable($v, $null) }
        $env:HF_ENDPOINT = $script:Server.Endpoint
        $env:HF_HOME = Join-Path $dir 'hf-home'
        $env:HF_HUB_CACHE = Join-Path $dir 'hub'
        $script:Server.ClearRequests()
        $dir
    }
    function Restore-HubVariables { foreach ($v in $script:HubVariables) { [Environment]::SetEnvironmentVariable($v, $script:SavedVariables[$v]) } }
    function Remove-HubScope([string] $dir) {
        if ($dir -and $dir.StartsWith($script:TempPrefix) -and (Test-Path $dir)) { Remove-Item $dir -Recurse -Force }
    }
    function Get-ErrorRecord([scriptblock] $action) { try { & $action; $null } catch { $_ } }
    function Get-RequestedFiles([string] $repo) { @($script:Server.Requests | Where-Object { $_.Repo -eq $repo -and $_.File } | ForEach-Object File | Sort-Object -Unique) }
    function Get-FixtureFiles([string] $folder) {
        Get-ChildItem $folder -Recurse -File | ForEach-Object { [IO.Path]::GetRelativePath($folder, $_.FullName).Replace('\', '/') } | Sort-Object
    }
    function Get-RepoFolder { Join-Path $env:HF_HUB_CACHE "models--test--$($args[0])" }
}

AfterAll {
    Restore-HubVariables
    $script:Server.Dispose()
}

Describe 'Save-DiffusionModel' {
    BeforeEach { $script:Scope = New-HubScope }
    AfterEach { Restore-HubVariables; Remove-HubScope $script:Scope }

    It 'downloads sd-tiny by repo id into huggingface_hub''s cache layout' {
        $snapshot = Save-DiffusionModel test/sd-tiny
        $repo = Get-RepoFolder 'sd-tiny'
        $snapshot | Should -BeOfType ([IO.DirectoryInfo])
        $snapshot.FullName | Should -Be (Join-Path $repo "snapshots/$script:Commit")
        Get-Content (Join-Path $repo 'refs/main') -Raw | Should -BeExactly $script:Commit # no newline, as huggingface_hub writes it
        $expected = Get-FixtureFiles $script:SdTiny
        (Get-FixtureFiles $snapshot.FullName) | Should -Be $expected
        foreach ($f in $expected) {
            $entry = Get-Item (Join-Path $snapshot.FullName $f)
            $entry.LinkType | Should -Be 'SymbolicLink'
            $depth = $f.Split('/').Count
            $entry.LinkTarget | Should -Match ('^' + [regex]::Escape('../' * ($depth + 1) + 'blobs/') + '[0-9a-f]{40,64}$') -Because "$f links relatively into blobs/"
            (Get-FileHash $entry.FullName).Hash | Should -Be (Get-FileHash (Join-Path $script:SdTiny $f)).Hash -Because "$f has the fixture's bytes"
        }
        # LFS blobs are named by their sha256, the others by the git blob id the Hub sends as ETag.
        $unet = Get-Item (Join-Path $snapshot.FullName 'unet/diffusion_pytorch_model.safetensors')
        Split-Path $unet.LinkTarget -Leaf | Should -Be $script:Server.Sha256Of('test/sd-tiny', 'unet/diffusion_pytorch_model.safetensors')
        Split-Path $unet.LinkTarget -Leaf | Should -Be (Get-FileHash $unet.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
        Test-Path (Join-Path $env:HF_HUB_CACHE '.locks/models--test--sd-tiny') | Should -BeTrue
        @(Get-ChildItem (Join-Path $repo 'blobs') -Filter '*.incomplete').Count | Should -Be 0
        # Only what the pipeline loads: no decoys, no fp16 variant, no pickle files.
        (Get-RequestedFiles 'test/sd-tiny') | Should -Be (@('model_index.json') + ($expected | Where-Object { $_ -ne 'model_index.json' }) | Sort-Object)
    }

    It '-Variant fp16 downloads the fp16 weights and the configs, nothing else' {
        $snapshot = Save-DiffusionModel test/sd-tiny -Variant fp16
        $weights = @(Get-RequestedFiles 'test/sd-tiny' | Where-Object { $_ -like '*.safetensors' })
        $weights | Should -Be @('text_encoder/model.fp16.safetensors', 'unet/diffusion_pytorch_model.fp16.safetensors', 'vae/diffusion_pytorch_model.fp16.safetensors')
        Get-RequestedFiles 'test/sd-tiny' | Should -Contain 'unet/config.json'
        Test-Path (Join-Path $snapshot.FullName 'unet/diffusion_pytorch_model.safetensors') | Should -BeFalse
    }

    It '-LocalDir copies real files into a folder' {
        $target = Join-Path $script:Scope 'local'
        $dir = Save-DiffusionModel test/sd-tiny -Component unet -LocalDir $target
        $dir.FullName | Should -Be $target
        (Get-Item (Join-Path $target 'unet/diffusion_pytorch_model.safetensors')).LinkType | Should -BeNullOrEmpty
        (Get-FileHash (Join-Path $target 'unet/diffusion_pytorch_model.safetensors')).Hash | Should -Be (Get-FileHash (Join-Path $script:SdTiny 'unet/diffusion_pytorch_model.safetensors')).Hash
        Test-Path (Join-Path $target 'vae/diffusion_pytorch_model.safetensors') | Should -BeFalse
        Test-Path (Join-Path $target 'vae/config.json') | Should -BeTrue # the denoiser's latent size follows it
    }

    It 'never fetches FLUX.1-dev-style root checkpoints or .bin files' {
        $null = Save-DiffusionModel test/flux-tiny
        $requested = Get-RequestedFiles 'test/flux-tiny'
        foreach ($d in $script:FluxDecoys) { $requested | Should -Not -Contain $d }
        $requested | Should -Be (Get-FixtureFiles $script:FluxTiny)
    }

    It 'resumes a download cut mid-file with Range' {
        $file = 'unet/diffusion_pytorch_model.safetensors'
        $script:Server.CutOnce('test/sd-tiny', $file, 1MB)
        $snapshot = Save-DiffusionModel test/sd-tiny -Component unet
        $gets = @($script:Server.Requests | Where-Object { $_.File -eq $file -and $_.Method -eq 'GET' -and $_.Target -like '/cdn-lfs/*' })
        $gets.Count | Should -Be 2
        $gets[0].Range | Should -BeNullOrEmpty
        $gets[1].Range | Should -Match '^bytes=[1-9]\d*-$'
        $gets[1].Status | Should -Be 206
        (Get-FileHash (Join-Path $snapshot.FullName $file)).Hash | Should -Be (Get-FileHash (Join-Path $script:SdTiny $file)).Hash
    }

    It 'deletes a download whose sha256 does not match and says so' {
        $file = 'vae/diffusion_pytorch_model.safetensors'
        $script:Server.Corrupt('test/sd-tiny', $file, $true)
        try {
            $e = Get-ErrorRecord { Save-DiffusionModel test/sd-tiny -Component vae }
        }
        finally { $script:Server.Corrupt('test/sd-tiny', $file, $false) }
        $e.FullyQualifiedErrorId | Should -BeLike 'HubChecksumMismatch,*'
        $e.ToString() | Should -Match ([regex]::Escape($file))
        $e.ToString() | Should -Match 'deleted'
        $repo = Get-RepoFolder 'sd-tiny'
        Test-Path (Join-Path $repo "blobs/$($script:Server.Sha256Of('test/sd-tiny', $file))") | Should -BeFalse
        @(Get-ChildItem (Join-Path $repo 'blobs') -Filter '*.incomplete').Count | Should -Be 0
        Test-Path (Join-Path $repo "snapshots/$script:Commit/$file") | Should -BeFalse
        Test-Path (Join-Path $repo 'refs/main') | Should -BeFalse # an unfinished download is not recorded as the revision
        # Served right, the next try completes.
        $snapshot = Save-DiffusionModel test/sd-tiny -Component vae
        (Get-FileHash (Join-Path $snapshot.FullName $file)).Hash | Should -Be (Get-FileHash (Join-Path $script:SdTiny $file)).Hash
    }

    It 'a stopped download (Ctrl+C) leaves nothing that looks complete, and the next one resumes' {
        $file = 'unet/diffusion_pytorch_model.safetensors'
        $request = (Get-EngineType 'Diffusion.Engine.Hub.ModelRequest')::new('test/sd-tiny', [NullString]::Value, [NullString]::Value, [string[]] @('unet'))
        $stop = [Threading.CancellationTokenSource]::new()
        $onProgress = { param($p) if ($p.File -eq $file -and $p.FileBytes -gt 0) { $stop.Cancel() } } -as ([Action`1].MakeGenericType((Get-EngineType 'Diffusion.Engine.Hub.HubProgress')))
        $e = Get-ErrorRecord { (Get-EngineType 'Diffusion.Engine.Hub.ModelLocator')::Snapshot($request, $false, $onProgress, $null, $stop.Token) }
        $e.Exception.InnerException | Should -BeOfType ([OperationCanceledException])
        $repo = Get-RepoFolder 'sd-tiny'
        Test-Path (Join-Path $repo 'refs/main') | Should -BeFalse
        Test-Path (Join-Path $repo "snapshots/$script:Commit/$file") | Should -BeFalse
        Test-Path (Join-Path $repo "blobs/$($script:Server.Sha256Of('test/sd-tiny', $file))") | Should -BeFalse
        $script:Server.ClearRequests()
        $snapshot = Save-DiffusionModel test/sd-tiny -Component unet
        $get = @($script:Server.Requests | Where-Object { $_.File -eq $file -and $_.Method -eq 'GET' })
        $get.Count | Should -Be 1
        $get[0].Range | Should -Match '^bytes=[1-9]\d*-$' # what arrived before the stop is kept in the .incomplete file
        (Get-FileHash (Join-Path $snapshot.FullName $file)).Hash | Should -Be (Get-FileHash (Join-Path $script:SdTiny $file)).Hash
    }

    It 'a gated repo without a token: GatedRepo, the licence page and HF_TOKEN; with HF_TOKEN or the token file it downloads' {
        $e = Get-ErrorRecord { Save-DiffusionModel test/gated -Component unet }
        $e.FullyQualifiedErrorId | Should -BeLike 'HubGatedRepo,*'
        $e.ToString() | Should -Match 'GatedRepo'
        $e.ToString() | Should -Match ([regex]::Escape("$($script:Server.Endpoint)/test/gated"))
        $e.ToString() | Should -Match 'HF_TOKEN'
        $env:HF_TOKEN = $script:Token
        (Save-DiffusionModel test/gated -Component unet).FullName | Should -Match 'models--test--gated'
        $env:HF_TOKEN = $null
        New-Item -ItemType Directory $env:HF_HOME -Force | Out-Null
        Set-Content -Path (Join-Path $env:HF_HOME 'token') -Value $script:Token -NoNewline
        (Save-DiffusionModel test/gated -Component vae).FullName | Should -Match 'models--test--gated'
    }

    It 'names what is missing: <Case>' -ForEach @(
        @{ Case = 'RepoNotFound'; Id = 'test/no-such-model'; Revision = $null; ErrorId = 'HubRepoNotFound'; Says = 'test/no-such-model' }
        @{ Case = 'RevisionNotFound'; Id = 'test/sd-tiny'; Revision = 'v9.9'; ErrorId = 'HubRevisionNotFound'; Says = 'v9\.9' }
    ) {
        $e = Get-ErrorRecord { Save-DiffusionModel $Id -Revision ($Revision ?? 'main') }
        $e.FullyQualifiedErrorId | Should -BeLike "$ErrorId,*"
        $e.ToString() | Should -Match $Says
        $e.ToString() | Should -Match $Case
    }

    It 'EntryNotFound names the file' {
        $client = (Get-EngineType 'Diffusion.Engine.Hub.HubClient')::new($null, $null, $null)
        try {
            $e = Get-ErrorRecord { $client.Head('test/sd-tiny', 'main', 'unet/missing.json', [Threading.CancellationToken]::None) }
        }
        finally { $client.Dispose() }
        $e.Exception.InnerException.ErrorId | Should -Be 'HubEntryNotFound'
        $e.Exception.InnerException.Message | Should -Match 'unet/missing\.json'
    }

    It 'refuses a component with only pickle weights, without fetching them' {
        $e = Get-ErrorRecord { Save-DiffusionModel test/pickle-only }
        $e.FullyQualifiedErrorId | Should -BeLike 'HubNoSafetensors,*'
        $e.ToString() | Should -Match 'safetensors only'
        Get-RequestedFiles 'test/pickle-only' | Should -Not -Contain 'unet/diffusion_pytorch_model.bin'
    }

    It 'two processes downloading one repo at once leave a correct cache, each blob fetched once' {
        $save = "Import-Module '$script:ModulePath'; Save-DiffusionModel test/flux-tiny | ForEach-Object FullName"
        $jobs = 1..2 | ForEach-Object {
            Start-Process -FilePath $script:Pwsh -ArgumentList (@($script:PwshArgs) + @('-NoProfile', '-NonInteractive', '-Command', $save)) -PassThru `
                -RedirectStandardOutput (Join-Path $script:Scope "out$_.txt") -RedirectStandardError (Join-Path $script:Scope "err$_.txt")
        }
        $jobs | Wait-Process
        foreach ($k in 1, 2) {
            $jobs[$k - 1].ExitCode | Should -Be 0 -Because (Get-Content (Join-Path $script:Scope "err$k.txt") -Raw)
            (Get-Content (Join-Path $script:Scope "out$k.txt") | Select-Object -Last 1) | Should -Be (Join-Path (Get-RepoFolder 'flux-tiny') "snapshots/$script:Commit")
        }
        $snapshot = Join-Path (Get-RepoFolder 'flux-tiny') "snapshots/$script:Commit"
        foreach ($f in Get-FixtureFiles $script:FluxTiny) {
            (Get-FileHash (Join-Path $snapshot $f)).Hash | Should -Be (Get-FileHash (Join-Path $script:FluxTiny $f)).Hash -Because $f
        }
        @(Get-ChildItem (Join-Path (Get-RepoFolder 'flux-tiny') 'blobs') -Filter '*.incomplete').Count | Should -Be 0
        $cdn = @($script:Server.Requests | Where-Object { $_.Method -eq 'GET' -and $_.Target -like '/cdn-lfs/*' } | Group-Object File)
        $cdn.Count | Should -BeGreaterThan 0
        foreach ($g in $cdn) { $g.Count | Should -Be 1 -Because "$($g.Name) is downloaded once, then reused under its lock" }
    }
}

Describe 'Loading by repo id' {
    BeforeEach { $script:Scope = New-HubScope }
    AfterEach { Restore-HubVariables; Remove-HubScope $script:Scope }

    It 'New-DiffusionPipeline by repo id generates the same image as from the folder' {
        $byId = New-DiffusionPipeline test/sd-tiny
        $byFolder = New-DiffusionPipeline $script:SdTiny
        try {
            $byId.Path | Should -Be (Join-Path (Get-RepoFolder 'sd-tiny') "snapshots/$script:Commit")
            $a = Invoke-Diffusion -Pipeline $byId -Prompt 'a red cube' -Steps 2 -Seed 3 -Height 64 -Width 64
            $b = Invoke-Diffusion -Pipeline $byFolder -Prompt 'a red cube' -Steps 2 -Seed 3 -Height 64 -Width 64
            [Convert]::ToBase64String($a.GetRgb()) | Should -BeExactly ([Convert]::ToBase64String($b.GetRgb()))
        }
        finally { Remove-DiffusionPipeline $byId, $byFolder }
    }

    It 'a single file with -Config set to a repo id fetches only the repo''s configs, tokenizers and scheduler, and gives the folder''s image' {
        $file = Join-Path $script:Fixtures 'single-file/sd-tiny.safetensors'
        $single = New-DiffusionPipeline $file -Config test/sd-tiny
        $byFolder = New-DiffusionPipeline $script:SdTiny
        try {
            $requested = Get-RequestedFiles 'test/sd-tiny'
            @($requested | Where-Object { $_ -like '*.safetensors' -or $_ -like '*.bin' }) | Should -BeNullOrEmpty -Because 'the weights come from the single file'
            $requested | Should -Contain 'unet/config.json'
            $requested | Should -Contain 'tokenizer/vocab.json'
            $requested | Should -Contain 'scheduler/scheduler_config.json'
            $a = Invoke-Diffusion -Pipeline $single -Prompt 'a red cube' -Steps 2 -Seed 3 -Height 64 -Width 64
            $b = Invoke-Diffusion -Pipeline $byFolder -Prompt 'a red cube' -Steps 2 -Seed 3 -Height 64 -Width 64
            [Convert]::ToBase64String($a.GetRgb()) | Should -BeExactly ([Convert]::ToBase64String($b.GetRgb()))
        }
        finally { Remove-DiffusionPipeline $single, $byFolder }
    }

    It 'New-DiffusionPipeline -WhatIf on a repo id not in the cache downloads nothing' {
        New-DiffusionPipeline test/sd-tiny -WhatIf | Should -BeNullOrEmpty
        $script:Server.Requests.Count | Should -Be 0
        Test-Path (Get-RepoFolder 'sd-tiny') | Should -BeFalse
    }

    It 'Invoke-Diffusion -Path takes a repo id' {
        $image = Invoke-Diffusion -Path test/sd-tiny -Prompt 'a cat' -Steps 1 -Seed 1 -Height 64 -Width 64
        $image.Width | Should -Be 64
    }

    It '-Component text_encoder,text_encoder_2 downloads only the encoders and tokenizers, and the partial snapshot encodes as the full folder' {
        $enc = New-DiffusionPipeline test/flux-tiny -Component text_encoder, text_encoder_2
        $full = New-DiffusionPipeline $script:FluxTiny -Component text_encoder, text_encoder_2
        try {
            $requested = Get-RequestedFiles 'test/flux-tiny'
            $requested | Should -Be (@('model_index.json') + (Get-FixtureFiles $script:FluxTiny | Where-Object { $_ -match '^(text_encoder|text_encoder_2|tokenizer|tokenizer_2)/' }) | Sort-Object)
            Test-Path (Join-Path $enc.Path 'transformer') | Should -BeFalse
            $x = 'a photo of a dog' | ConvertTo-DiffusionEmbedding -Pipeline $enc
            $y = 'a photo of a dog' | ConvertTo-DiffusionEmbedding -Pipeline $full
            $null = Assert-TensorClose $y.PromptEmbeds $x.PromptEmbeds 0 0 'prompt_embeds'
            $null = Assert-TensorClose $y.PooledPromptEmbeds $x.PooledPromptEmbeds 0 0 'pooled_prompt_embeds'
        }
        finally { Remove-DiffusionPipeline $enc, $full }
    }

    It 'a partial snapshot refuses a requested component it lacks' {
        $null = Save-DiffusionModel test/flux-tiny -Component text_encoder
        $env:HF_HUB_OFFLINE = '1'
        $e = Get-ErrorRecord { New-DiffusionPipeline test/flux-tiny -Component vae }
        $e.FullyQualifiedErrorId | Should -BeLike 'HubSnapshotIncomplete,*'
        $e.ToString() | Should -Match 'vae/'
    }

    It 'HF_HUB_OFFLINE=1 loads from the cache without any request, and says what the cache holds when the model is absent' {
        $null = Save-DiffusionModel test/sd-tiny -Component unet
        $script:Server.ClearRequests()
        $env:HF_HUB_OFFLINE = '1'
        $unet = New-DiffusionPipeline test/sd-tiny -Component unet
        try { $unet.Components.Keys | Should -Contain 'unet' } finally { Remove-DiffusionPipeline $unet }
        $script:Server.Requests.Count | Should -Be 0
        $e = Get-ErrorRecord { New-DiffusionPipeline test/flux-tiny }
        $e.FullyQualifiedErrorId | Should -BeLike 'HubOfflineNotCached,*'
        $e.ToString() | Should -Match 'HF_HUB_OFFLINE'
        $e.ToString() | Should -Match 'test/sd-tiny' # what the cache holds
        $script:Server.Requests.Count | Should -Be 0
    }

    It 'without network: the cached revision is used with a warning; an uncached model names HF_HUB_OFFLINE and what the cache holds' {
        $null = Save-DiffusionModel test/sd-tiny -Component unet
        $closed = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $closed.Start(); $port = $closed.LocalEndpoint.Port; $closed.Stop() # a port nothing listens on
        $env:HF_ENDPOINT = "http://127.0.0.1:$port"
        $unet = New-DiffusionPipeline test/sd-tiny -Component unet -WarningVariable warned -WarningAction SilentlyContinue
        try { $unet.Components.Keys | Should -Contain 'unet' } finally { Remove-DiffusionPipeline $unet }
        "$warned" | Should -Match 'unreachable'
        $e = Get-ErrorRecord { New-DiffusionPipeline test/flux-tiny }
        $e.FullyQualifiedErrorId | Should -BeLike 'HubUnreachable,*'
        $e.ToString() | Should -Match 'HF_HUB_OFFLINE'
        $e.ToString() | Should -Match "holds nothing for 'test/flux-tiny' \(it holds: test/sd-tiny\)"
    }

    It 'reports a snapshot link to a deleted blob, with the fix' {
        $snapshot = Save-DiffusionModel test/sd-tiny -Component unet
        $link = Get-Item (Join-Path $snapshot.FullName 'unet/diffusion_pytorch_model.safetensors')
        $blob = [IO.Path]::GetFullPath((Join-Path (Split-Path $link.FullName) $link.LinkTarget))
        $blob | Should -BeLike "$($script:Scope)*"
        Remove-Item $blob
        $env:HF_HUB_OFFLINE = '1'
        $e = Get-ErrorRecord { New-DiffusionPipeline test/sd-tiny -Component unet }
        $e.FullyQualifiedErrorId | Should -BeLike 'HubSnapshotDangling,*'
        $e.ToString() | Should -Match 'unet/diffusion_pytorch_model\.safetensors'
        $e.ToString() | Should -Match 'Save-DiffusionModel'
        # Online, the download heals it (as huggingface_hub: a link to nothing is no cached file).
        $env:HF_HUB_OFFLINE = $null
        $null = Save-DiffusionModel test/sd-tiny -Component unet
        Test-Path $blob | Should -BeTrue
    }

    It 'refuses a repo id that is no valid one: <_>' -ForEach @('org/../x', 'org\name', 'a/b/c', 'org/na me') {
        $e = Get-ErrorRecord { New-DiffusionPipeline $_ }
        $e.FullyQualifiedErrorId | Should -BeLike 'HubRepoIdInvalid,*'
        $e.ToString() | Should -Match 'letters, digits'
        $script:Server.Requests.Count | Should -Be 0
    }

    It 'a missing absolute folder stays a missing folder' {
        $e = Get-ErrorRecord { New-DiffusionPipeline (Join-Path $script:Scope 'nope') }
        $e.FullyQualifiedErrorId | Should -BeLike 'ModelFolderNotFound,*'
        $script:Server.Requests.Count | Should -Be 0
    }

    It 'Get-DiffusionDeviceMap takes a repo id and -Revision' {
        $plan = Get-DiffusionDeviceMap test/sd-tiny -Revision $script:Commit -Component unet -MaxMemory @{ cpu = '8GB' }
        $plan | Should -Not -BeNullOrEmpty
        Test-Path (Join-Path (Get-RepoFolder 'sd-tiny') 'refs/main') | Should -BeFalse # a commit is no branch: no ref written
    }
}

Describe 'Get-DiffusionModel and Remove-DiffusionModel' {
    BeforeEach { $script:Scope = New-HubScope }
    AfterEach { Restore-HubVariables; Remove-HubScope $script:Scope }

    It 'lists a cached model with its revision, size and snapshot' {
        $null = Save-DiffusionModel test/sd-tiny -Component unet
        $m = Get-DiffusionModel test/*
        $m.RepoId | Should -Be 'test/sd-tiny'
        $m.Revisions[0].Name | Should -Be 'main'
        $m.Revisions[0].Commit | Should -Be $script:Commit
        $files = 'model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors', 'scheduler/scheduler_config.json', 'vae/config.json'
        $m.SizeOnDisk | Should -Be (($files | ForEach-Object { (Get-Item (Join-Path $script:SdTiny $_)).Length } | Measure-Object -Sum).Sum)
        $m.Path | Should -Be (Join-Path (Get-RepoFolder 'sd-tiny') "snapshots/$script:Commit")
        $m.LastModified | Should -BeOfType ([datetime])
    }

    It 'Remove-DiffusionModel -WhatIf removes nothing; without it the repo goes; Get | Remove works' {
        $null = Save-DiffusionModel test/sd-tiny -Component unet
        $null = Save-DiffusionModel test/flux-tiny -Component vae
        Remove-DiffusionModel test/sd-tiny -WhatIf
        Test-Path (Get-RepoFolder 'sd-tiny') | Should -BeTrue
        Remove-DiffusionModel test/sd-tiny -Confirm:$false
        Test-Path (Get-RepoFolder 'sd-tiny') | Should -BeFalse
        Test-Path (Join-Path $env:HF_HUB_CACHE '.locks/models--test--sd-tiny') | Should -BeFalse
        @(Get-DiffusionModel).RepoId | Should -Be @('test/flux-tiny')
        Get-DiffusionModel | Remove-DiffusionModel -Confirm:$false
        @(Get-DiffusionModel).Count | Should -Be 0
    }

    It 'Remove-DiffusionModel -Revision removes that snapshot and the blobs only it used' {
        $first = '00000000000000000000000000000000000000a1'; $second = '00000000000000000000000000000000000000b2'
        $script:Server.AddRepo('test/two-revisions', $first, $null)
        foreach ($f in 'model_index.json', 'scheduler/scheduler_config.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors') {
            $script:Server.AddFile('test/two-revisions', $f, (Join-Path $script:SdTiny $f))
        }
        $null = Save-DiffusionModel test/two-revisions -Component unet
        $changed = Join-Path $script:Scope 'scheduler_config.json'
        (Get-Content (Join-Path $script:SdTiny 'scheduler/scheduler_config.json') -Raw) -replace '"steps_offset": 1', '"steps_offset": 0' | Set-Content $changed -NoNewline
        $script:Server.AddRepo('test/two-revisions', $second, $null)
        foreach ($f in 'model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.safetensors') { $script:Server.AddFile('test/two-revisions', $f, (Join-Path $script:SdTiny $f)) }
        $script:Server.AddFile('test/two-revisions', 'scheduler/scheduler_config.json', $changed)
        $null = Save-DiffusionModel test/two-revisions -Component unet
        $repo = Get-RepoFolder 'two-revisions'
        $m = Get-DiffusionModel test/two-revisions
        ($m.Revisions | ForEach-Object { "$($_.Name)=$($_.Commit)" }) | Should -Be @("main=$second", "$first=$first")
        $oldScheduler = Split-Path (Get-Item (Join-Path $repo "snapshots/$first/scheduler/scheduler_config.json")).LinkTarget -Leaf
        $unetBlob = Split-Path (Get-Item (Join-Path $repo "snapshots/$first/unet/diffusion_pytorch_model.safetensors")).LinkTarget -Leaf
        Remove-DiffusionModel test/two-revisions -Revision $first -Confirm:$false
        Test-Path (Join-Path $repo "snapshots/$first") | Should -BeFalse
        Test-Path (Join-Path $repo "blobs/$oldScheduler") | Should -BeFalse
        Test-Path (Join-Path $repo "blobs/$unetBlob") | Should -BeTrue # still used by the second snapshot
        (Get-FileHash (Join-Path $repo "snapshots/$second/unet/diffusion_pytorch_model.safetensors")).Hash | Should -Be (Get-FileHash (Join-Path $script:SdTiny 'unet/diffusion_pytorch_model.safetensors')).Hash
        Get-Content (Join-Path $repo 'refs/main') -Raw | Should -Be $second
    }

    It 'has help for <_>' -ForEach @('Save-DiffusionModel', 'Get-DiffusionModel', 'Remove-DiffusionModel') {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -Match '^\s*\S+ \['
        @($help.examples.example).Count | Should -BeGreaterThan 0
        foreach ($p in (Get-Command $_).Parameters.Values | Where-Object { $_.Name -notin [System.Management.Automation.PSCmdlet]::CommonParameters -and $_.Name -notin 'WhatIf', 'Confirm' }) {
            ($help.parameters.parameter | Where-Object name -eq $p.Name).description | Should -Not -BeNullOrEmpty -Because "-$($p.Name) of $_ needs a description"
        }
    }

    It 'completes cached repo ids for -Path' {
        $null = Save-DiffusionModel test/sd-tiny -Component unet
        $line = 'New-DiffusionPipeline -Path test/sd'
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain 'test/sd-tiny'
    }
}
