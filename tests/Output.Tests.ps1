# Saving images and exchanging tensors: PNG with parameters, templates, -Force, -WhatIf, safetensors round trips.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-out-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:Pipe = New-DiffusionPipeline $script:SdTiny
    $script:Emb = @('a photo of a dog', 'a cat: <red>?') | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe -NegativePrompt 'blurry'
    $script:Lat = @($script:Emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 2 -Seed 11 -Height 64 -Width 64)
    $script:Img = @($script:Lat | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe)
}

AfterAll {
    Remove-DiffusionPipeline $script:Pipe
    Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Save-DiffusionImage' {
    It 'writes PNGs named by the template, with the generation parameters' {
        $files = $script:Img | Save-DiffusionImage -Path (Join-Path $script:Temp '{index}-{seed}-{prompt}.png')
        $files.Count | Should -Be 2
        $files[0].Name | Should -Be '0-11-a_photo_of_a_dog.png'
        $files[1].Name | Should -Not -Match '[<>:"?]'
        $bytes = [IO.File]::ReadAllBytes($files[0].FullName)
        $bytes[0..7] | Should -Be @(0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A)
        $p = $script:DiffusionImageType::ReadParameters($files[0].FullName)
        $p.Prompt | Should -Be 'a photo of a dog'
        $p.NegativePrompt | Should -Be 'blurry'
        $p.Seed | Should -Be 11
        $p.Steps | Should -Be 2
        $p.Width | Should -Be 64
        $p.Scheduler | Should -Be 'PNDMScheduler'
    }

    It 'does not overwrite without -Force, and does with it' {
        $path = Join-Path $script:Temp 'one.png'
        $script:Img[0] | Save-DiffusionImage -Path $path | Out-Null
        $before = (Get-Item $path).LastWriteTimeUtc
        Start-Sleep -Milliseconds 50
        $err = $null
        $script:Img[1] | Save-DiffusionImage -Path $path -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'ImageFileExists*'
        $err[0].ToString() | Should -Match 'Force'
        (Get-Item $path).LastWriteTimeUtc | Should -Be $before
        $script:Img[1] | Save-DiffusionImage -Path $path -Force | Out-Null
        (Get-Item $path).LastWriteTimeUtc | Should -BeGreaterThan $before
    }

    It 'refuses to write two images to one file name' {
        $err = $null
        $out = $script:Img | Save-DiffusionImage -Path (Join-Path $script:Temp 'same.png') -ErrorVariable err -ErrorAction SilentlyContinue
        @($out).Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'ImagePathCollision*'
    }

    It '-WhatIf writes nothing' {
        $dir = Join-Path $script:Temp 'whatif'
        New-Item -ItemType Directory $dir | Out-Null
        $script:Img | Save-DiffusionImage -Path $dir -WhatIf
        Get-ChildItem $dir | Should -BeNullOrEmpty
    }

    It 'leaves no temporary files behind' {
        Get-ChildItem $script:Temp -Recurse -File | Where-Object { $_.Extension -ne '.png' } | Should -BeNullOrEmpty
    }
}

Describe 'Export-DiffusionTensor / Import-DiffusionTensor' {
    It 'round-trips embeddings with their prompts' {
        $file = Join-Path $script:Temp 'emb.safetensors'
        $script:Emb | Export-DiffusionTensor $file | Out-Null
        $back = @(Import-DiffusionTensor $file)
        $back.Count | Should -Be 2
        $back.Prompt | Should -Be $script:Emb.Prompt
        $back[0].NegativePrompt | Should -Be 'blurry'
        $null = Assert-TensorClose $script:Emb[1].PromptEmbeds $back[1].PromptEmbeds 0 0 'prompt_embeds'
        $null = Assert-TensorClose $script:Emb[1].NegativePromptEmbeds $back[1].NegativePromptEmbeds 0 0 'negative_prompt_embeds'
        $f = $script:SafeTensorsFile::Open($file)
        try { ($f.Tensors.Keys | Sort-Object) | Should -Be @('negative_prompt_embeds', 'prompt_embeds') } finally { $f.Dispose() }
    }

    It 'round-trips latents with seed and size, and decodes them to the same image' {
        $file = Join-Path $script:Temp 'lat.safetensors'
        $script:Lat | Export-DiffusionTensor $file | Out-Null
        $back = @(Import-DiffusionTensor $file)
        $back[1].Seed | Should -Be 11
        $back[1].Width | Should -Be 64
        $img = @($back | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe)
        $null = Assert-TensorClose $script:Img[1].GetPixels() $img[1].GetPixels() 0 0 'image'
    }

    It 'keeps an existing file without -Force' {
        $file = Join-Path $script:Temp 'lat.safetensors'
        { $script:Lat | Export-DiffusionTensor $file -ErrorAction Stop } | Should -Throw -ErrorId 'TensorFileExists*'
    }

    It 'says what a foreign file is' {
        $e = $null
        Import-DiffusionTensor (Join-Path $script:SdTiny 'vae/diffusion_pytorch_model.safetensors') -ErrorVariable e -ErrorAction SilentlyContinue
        $e[0].FullyQualifiedErrorId | Should -BeLike 'TensorFileKindUnknown*'
    }
}

Describe 'Invoke-Diffusion' {
    It 'runs all stages and saves, giving one result per prompt in order' {
        $r = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a dog', 'a cat' -Steps 2 -Seed 11 -Height 64 -Width 64 -NegativePrompt 'blurry' `
                -OutputPath (Join-Path $script:Temp 'all/{index}.png'))
        $r.Count | Should -Be 2
        $r.Prompt | Should -Be @('a dog', 'a cat')
        $r | ForEach-Object { Test-Path $_.Path | Should -BeTrue }
        $r[0].Seed | Should -Be 11
    }

    It 'gives the same pixels as the staged cmdlets (1e-5: it decodes one image at a time, the staged run both together)' {
        $img = @(Invoke-Diffusion -Path $script:SdTiny -Prompt 'a photo of a dog', 'a cat: <red>?' -NegativePrompt 'blurry' -Steps 2 -Seed 11 -Height 64 -Width 64)
        $null = Assert-TensorClose $script:Img[0].GetPixels() $img[0].GetPixels() 0 1e-5 'image 0'
        $null = Assert-TensorClose $script:Img[1].GetPixels() $img[1].GetPixels() 0 1e-5 'image 1'
    }
}
