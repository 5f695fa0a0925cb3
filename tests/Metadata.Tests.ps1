# Parameters that reproduce the image: A1111's names, batch position, model name and hash, FLUX's guidance; JPEG/WebP
# with the parameters in EXIF; Get-DiffusionImageInfo reads them back and regenerates identical files.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-metadata-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:Sd = New-DiffusionPipeline $script:SdTiny
    $script:Flux = New-DiffusionPipeline $script:FluxTiny

    function Get-FileHashText([string] $path) { (Get-FileHash $path -Algorithm SHA256).Hash }

    # Regenerates each saved file from its own parameters and compares the bytes.
    function Assert-Replays($pipe, [string[]] $files, [string] $tag) {
        foreach ($file in $files) {
            $p = Get-DiffusionImageInfo -LiteralPath $file -AsHashtable
            $again = Join-Path $script:Temp ("again-$tag-" + (Split-Path $file -Leaf))
            $null = Invoke-Diffusion -Pipeline $pipe @p -OutputPath $again
            Get-FileHashText $again | Should -Be (Get-FileHashText $file) -Because "$file regenerated from its parameters"
        }
    }
}

AfterAll {
    Remove-DiffusionPipeline $script:Sd
    Remove-DiffusionPipeline $script:Flux
    if ($script:Temp.StartsWith([IO.Path]::GetTempPath()) -and (Split-Path $script:Temp -Leaf).StartsWith('diffusion-metadata-')) {
        Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
    }
}

Describe 'Parameters text' {
    It 'names samplers as A1111 does: <Scheduler> -> <Sampler>' -ForEach @(
        @{ Scheduler = 'pndm'; Sampler = 'PLMS' }
        @{ Scheduler = 'ddim'; Sampler = 'DDIM' }
        @{ Scheduler = 'euler'; Sampler = 'Euler' }
        @{ Scheduler = 'euler_a'; Sampler = 'Euler a' }
        @{ Scheduler = 'dpm++2m'; Sampler = 'DPM++ 2M' }
        @{ Scheduler = 'dpm++2m-karras'; Sampler = 'DPM++ 2M Karras' }
    ) {
        $pipe = New-DiffusionPipeline $script:SdTiny -Scheduler $Scheduler
        try {
            $img = Invoke-Diffusion -Pipeline $pipe -Prompt 'a dog' -Steps 2 -Seed 1 -Height 64 -Width 64
            $img.Sampler | Should -Be $Sampler
            $img.Parameters.ToA1111String() | Should -Match ([regex]::Escape("Sampler: $Sampler,"))
        }
        finally { Remove-DiffusionPipeline $pipe }
    }

    It 'records the model folder''s name and A1111''s short hash of the denoiser file' {
        $img = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a dog' -Steps 1 -Seed 1 -Height 64 -Width 64
        $expected = (Get-FileHash (Join-Path $script:SdTiny 'unet/diffusion_pytorch_model.safetensors') -Algorithm SHA256).Hash.Substring(0, 10).ToLower()
        $text = $img.Parameters.ToA1111String()
        $text | Should -Match ([regex]::Escape("Model hash: $expected, Model: sd-tiny"))
        $img.Model | Should -Be 'sd-tiny'
    }

    It 'records the batch size and position of images that shared a generator, and nothing for one alone' {
        $batch = @(Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a dog', 'a cat', 'a red house' -Steps 1 -Seed 0 -Height 64 -Width 64)
        $batch[1].Parameters.ToA1111String() | Should -Match 'Seed: 0, .*Batch size: 3, Batch pos: 1$'
        $alone = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a cat' -Steps 1 -Seed 0 -Height 64 -Width 64
        $alone.Parameters.ToA1111String() | Should -Not -Match 'Batch'
        # Seed 0 alone is another image than #1 of the batch: the batch position is what replays it.
        [Convert]::ToBase64String($alone.GetRgb()) | Should -Not -Be ([Convert]::ToBase64String($batch[1].GetRgb()))
    }

    It 'writes FLUX''s distilled guidance as Guidance, warns about an ignored negative prompt and does not record it' {
        $w = $null
        $img = Invoke-Diffusion -Pipeline $script:Flux -Prompt 'a dog' -NegativePrompt 'blurry' -Steps 1 -Seed 1 -Height 64 -Width 64 -GuidanceScale 3.5 -WarningVariable w -WarningAction SilentlyContinue
        ($w -join "`n") | Should -Match 'ignores -NegativePrompt'
        $text = $img.Parameters.ToA1111String()
        $text | Should -Match 'Guidance: 3\.5'
        $text | Should -Not -Match 'CFG scale|Negative prompt|blurry'
        $img.NegativePrompt | Should -BeNullOrEmpty
    }
}

Describe 'JPEG and WebP' {
    It 'writes <Ext> files in their format with the parameters in the EXIF UserComment' -ForEach @(
        @{ Ext = 'jpg'; Magic = 'FF-D8-FF' }
        @{ Ext = 'jpeg'; Magic = 'FF-D8-FF' }
        @{ Ext = 'webp'; Magic = '52-49-46-46' }
    ) {
        $img = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a dog, "quoted": yes' -NegativePrompt 'blurry' -Steps 1 -Seed 5 -Height 64 -Width 64
        $file = $img | Save-DiffusionImage -Path (Join-Path $script:Temp "format.$Ext")
        $file.Name | Should -Be "format.$Ext"
        [BitConverter]::ToString([IO.File]::ReadAllBytes($file.FullName), 0, $Magic.Split('-').Count) | Should -Be $Magic
        $bytes = [IO.File]::ReadAllBytes($file.FullName)
        # piexif's encoding: "UNICODE\0" then UTF-16 big-endian text, in a big-endian (MM) TIFF block.
        $needle = [byte[]]([Text.Encoding]::ASCII.GetBytes("UNICODE`0") + [Text.Encoding]::BigEndianUnicode.GetBytes('a dog'))
        [BitConverter]::ToString($bytes).Contains([BitConverter]::ToString($needle)) | Should -BeTrue
        $info = Get-DiffusionImageInfo $file.FullName
        $info.Prompt | Should -Be 'a dog, "quoted": yes'
        $info.NegativePrompt | Should -Be 'blurry'
        $info.Seed | Should -Be 5
        $info.Sampler | Should -Be 'PLMS'
        $info.Model | Should -Be 'sd-tiny'
    }

    It '-Quality changes the JPEG' {
        $img = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a dog' -Steps 1 -Seed 5 -Height 64 -Width 64
        $low = $img | Save-DiffusionImage -Path (Join-Path $script:Temp 'q10.jpg') -Quality 10
        $high = $img | Save-DiffusionImage -Path (Join-Path $script:Temp 'q100.jpg') -Quality 100
        $high.Length | Should -BeGreaterThan $low.Length
    }
}

Describe 'Get-DiffusionImageInfo' {
    It 'reads an AUTOMATIC1111 parameters text with Schedule type and Forge''s distilled guidance' {
        $type = Get-EngineType 'Diffusion.Engine.Imaging.GenerationParameters'
        $p = $type::ParseA1111("a cat`nNegative prompt: ugly`nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model hash: 6ce0161689, Model: v1-5, Batch size: 4, Batch pos: 2")
        $p.SamplerName | Should -Be 'DPM++ 2M Karras'
        $p.BatchSize | Should -Be 4
        $p.BatchPosition | Should -Be 2
        $p.ModelHash | Should -Be '6ce0161689'
        $f = $type::ParseA1111("a dog`nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 1, Size: 1024x1024, Model: flux1-dev")
        $f.GuidanceScale | Should -Be 3.5
        $f.DistilledGuidance | Should -BeTrue
    }

    It 'takes wildcards and files from Get-ChildItem, and says which file has no parameters' {
        $dir = Join-Path $script:Temp 'info'
        New-Item -ItemType Directory $dir | Out-Null
        $null = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a', 'b' -Steps 1 -Seed 3 -Height 64 -Width 64 -OutputPath (Join-Path $dir '{index}.png')
        @(Get-DiffusionImageInfo (Join-Path $dir '*.png')).Count | Should -Be 2
        @(Get-ChildItem $dir -Filter *.png | Get-DiffusionImageInfo | Where-Object Prompt -eq 'b').Count | Should -Be 1
        Set-Content (Join-Path $dir 'plain.txt') 'not an image'
        $err = $null
        Get-DiffusionImageInfo (Join-Path $dir 'plain.txt') -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Match '^Image'
    }

    It 'regenerates SD images, alone and in a batch, byte for byte (<Ext>)' -ForEach @(@{ Ext = 'png' }, @{ Ext = 'jpg' }) {
        $dir = Join-Path $script:Temp "sd-$Ext"
        New-Item -ItemType Directory $dir | Out-Null
        $batch = @(Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a dog', 'a cat on a mat', 'a red house' -NegativePrompt 'blurry' -Steps 2 -Seed 0 -Height 64 -Width 64 -OutputPath (Join-Path $dir "batch-{index}.$Ext"))
        $alone = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a dog' -Steps 2 -Seed 9 -Height 64 -Width 64 -OutputPath (Join-Path $dir "alone.$Ext")
        Assert-Replays $script:Sd (@($batch.Path) + $alone.Path) "sd-$Ext"
    }

    It 'regenerates an Euler a batch image (the scheduler draws noise during the steps)' {
        $pipe = New-DiffusionPipeline $script:SdTiny -Scheduler euler_a
        try {
            $batch = @(Invoke-Diffusion -Pipeline $pipe -Prompt 'a dog', 'a cat' -Steps 3 -Seed 2 -Height 64 -Width 64 -OutputPath (Join-Path $script:Temp 'eulera-{index}.png'))
            Assert-Replays $script:Sd $batch[1].Path 'euler-a'
        }
        finally { Remove-DiffusionPipeline $pipe }
    }

    It 'regenerates FLUX images, alone and in a batch, byte for byte' {
        $batch = @(Invoke-Diffusion -Pipeline $script:Flux -Prompt 'a dog', 'a cat' -Steps 2 -Seed 1 -Height 64 -Width 64 -GuidanceScale 3.5 -OutputPath (Join-Path $script:Temp 'flux-{index}.png'))
        $alone = Invoke-Diffusion -Pipeline $script:Flux -Prompt 'a cat' -Steps 2 -Seed 4 -Height 64 -Width 64 -OutputPath (Join-Path $script:Temp 'flux-alone.png')
        Assert-Replays $script:Flux (@($batch.Path) + $alone.Path) 'flux'
    }
}
