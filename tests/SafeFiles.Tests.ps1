# Nothing lost, nothing hangs: models in the Hugging Face cache layout (symbolic links) load, a dangling link is named,
# and Invoke-Diffusion refuses output paths that would make two images of one call share a file.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-safefiles-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null

    function Get-ErrorRecord([scriptblock] $action) {
        try { & $action; $null } catch { $_ }
    }

    # huggingface_hub's cache: models--<name>/blobs/<sha256> holds the files, snapshots/<rev>/<path> are relative links to them.
    function New-HubCacheCopy([string] $source, [string] $name) {
        $repo = Join-Path $script:Temp "models--$name"
        $blobs = Join-Path $repo 'blobs'
        $snapshot = Join-Path $repo 'snapshots/0123456789abcdef0123456789abcdef01234567'
        New-Item -ItemType Directory $blobs, $snapshot | Out-Null
        foreach ($file in Get-ChildItem $source -Recurse -File) {
            $relative = [IO.Path]::GetRelativePath($source, $file.FullName)
            $sha = (Get-FileHash $file.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
            Copy-Item $file.FullName (Join-Path $blobs $sha) -Force
            $link = Join-Path $snapshot $relative
            New-Item -ItemType Directory (Split-Path $link) -Force | Out-Null
            $depth = ($relative -split '[\\/]').Count + 1 # up to the repo folder from the link's folder
            $target = ((@('..') * $depth) + 'blobs', $sha) -join '/'
            New-Item -ItemType SymbolicLink -Path $link -Target $target | Out-Null
        }
        $snapshot
    }
}

AfterAll { Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Models in the Hugging Face cache layout' {
    It 'loads a snapshot whose files are all relative links to blobs' {
        $snapshot = New-HubCacheCopy $script:SdTiny 'sd-tiny'
        (Get-Item (Join-Path $snapshot 'unet/diffusion_pytorch_model.safetensors')).LinkType | Should -Be 'SymbolicLink'
        $p = New-DiffusionPipeline $snapshot -Device cpu
        try {
            $p | Should -Not -BeNullOrEmpty
            $image = Invoke-Diffusion -Pipeline $p -Prompt 'a cat' -Steps 2 -Seed 1 -Height 64 -Width 64
            $image.Width | Should -Be 64
        }
        finally { $p | Remove-DiffusionPipeline }
    }

    It 'names the dangling link and its missing blob' {
        $snapshot = New-HubCacheCopy $script:SdTiny 'sd-tiny-dangling'
        $link = Join-Path $snapshot 'vae/diffusion_pytorch_model.safetensors'
        $blob = (Get-Item $link).ResolveLinkTarget($true).FullName
        Remove-Item $blob -Force
        $e = Get-ErrorRecord { New-DiffusionPipeline $snapshot -Device cpu }
        $e.FullyQualifiedErrorId | Should -BeLike 'ModelFileLinkDangling,*'
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e.ToString() | Should -BeLike "*$link*"
        $e.ToString() | Should -BeLike "*$(Split-Path $blob -Leaf)*"
    }
}

Describe 'Invoke-Diffusion output paths that collide' {
    It 'refuses one file for two prompts before any model work (-Force)' {
        $out = Join-Path $script:Temp 'collide'
        $e = Get-ErrorRecord { Invoke-Diffusion -Path (Join-Path $script:Temp 'no-such-model') -Prompt 'a red fox', 'a blue bird' -OutputPath (Join-Path $out 'same.png') -Force }
        $e.FullyQualifiedErrorId | Should -BeLike 'OutputPathCollision,*' # not ModelFolderNotFound: checked before loading
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $e.ToString() | Should -BeLike "*'a red fox'*"
        $e.ToString() | Should -BeLike "*'a blue bird'*"
        $e.ToString() | Should -BeLike '*{index}*'
        Test-Path $out | Should -BeFalse
    }

    It 'refuses prompts that name the same file through {prompt}, and saves nothing' {
        $out = Join-Path $script:Temp 'collide-prompt'
        $p = New-DiffusionPipeline $script:SdTiny -Device cpu
        try {
            $e = Get-ErrorRecord { Invoke-Diffusion -Pipeline $p -Prompt 'a cat', 'a  cat?' -Steps 2 -Seed 1 -Height 64 -Width 64 -OutputPath (Join-Path $out '{prompt}.png') -Force }
        }
        finally { $p | Remove-DiffusionPipeline }
        $e.FullyQualifiedErrorId | Should -BeLike 'OutputPathCollision,*'
        $e.ToString() | Should -BeLike '*a_cat.png*'
        Test-Path $out | Should -BeFalse
    }

    It 'accepts a template that differs per image' {
        $out = Join-Path $script:Temp 'distinct'
        $p = New-DiffusionPipeline $script:SdTiny -Device cpu
        try { $r = Invoke-Diffusion -Pipeline $p -Prompt 'a cat', 'a cat' -Steps 2 -Seed 1 -Height 64 -Width 64 -OutputPath (Join-Path $out '{index}-{prompt}.png') }
        finally { $p | Remove-DiffusionPipeline }
        $r.Path | Should -HaveCount 2
        (Get-ChildItem $out).Name | Sort-Object | Should -Be @('0-a_cat.png', '1-a_cat.png')
    }
}
