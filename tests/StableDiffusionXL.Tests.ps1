# SDXL through the cmdlets against diffusers' StableDiffusionXLPipeline runs (sdxl-tiny-refs.json; float32, CPU).
# Tolerances as the other parity tests: embeddings and every step's latents within 1e-4 of the tensor's scale
# (max|diff| <= 1e-4 * max|ref|), images 2e-3 absolute.
BeforeDiscovery {
    $fixtures = $env:DIFFUSION_FIXTURES ?? (Join-Path $PSScriptRoot '../../shared/fixtures')
    $script:Runs = Get-Content (Join-Path $fixtures 'sdxl-tiny-refs.json') -Raw | ConvertFrom-Json
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:SdxlTiny = Join-Path $script:Fixtures 'sdxl-tiny'
    $script:Runs = Get-Content (Join-Path $script:Fixtures 'sdxl-tiny-refs.json') -Raw | ConvertFrom-Json
    $script:Pipe = New-DiffusionPipeline $script:SdxlTiny
}

AfterAll {
    if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe }
    Clear-DiffusionMemory
}

Describe 'SDXL reference run <file>' -ForEach $script:Runs {
    BeforeAll {
        $run = $_
        $script:File = $run.file
        $encode = @{}
        if ($run.negative_prompt) { $encode.NegativePrompt = [string[]] $run.negative_prompt }
        if ($run.prompt_2) { $encode.Prompt2 = [string[]] $run.prompt_2 }
        if ($run.negative_prompt_2) { $encode.NegativePrompt2 = [string[]] $run.negative_prompt_2 }
        $script:Common = @{ Steps = $run.steps; GuidanceScale = $run.guidance_scale; Seed = $run.seed; Height = $run.height; Width = $run.width }
        $script:Emb = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe @encode)
        $script:Lat = @($script:Emb | Invoke-Denoise -Pipeline $script:Pipe @script:Common -IncludeSteps)
        $script:Final = @($script:Lat | Where-Object IsFinal | Sort-Object Index)
        $script:Img = @($script:Final | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe)
        $script:OneCall = @($run.prompts | Invoke-Diffusion -Pipeline $script:Pipe @script:Common @encode)
    }

    It 'concatenates both encoders'' penultimate states (prompt_embeds) and pools from the second (pooled_prompt_embeds)' {
        $script:Emb[0].Family | Should -Be 'StableDiffusionXL'
        $null = Assert-TensorScaled (Get-RefTensor $script:File 'prompt_embeds') (Join-Tensor $script:Emb.PromptEmbeds) 1e-4 'prompt_embeds'
        $null = Assert-TensorScaled (Get-RefTensor $script:File 'pooled_prompt_embeds') (Join-Tensor $script:Emb.PooledPromptEmbeds) 1e-4 'pooled_prompt_embeds'
    }

    It 'negative embeddings: zeros without a negative prompt (force_zeros_for_empty_prompt), encoded with one' -ForEach @($_ | Where-Object guidance_scale -gt 1) -AllowNullOrEmptyForEach {
        $null = Assert-TensorClose (Get-RefTensor $script:File 'negative_prompt_embeds') (Join-Tensor $script:Emb.NegativePromptEmbeds) 0 (1e-4 * 8) 'negative_prompt_embeds'
        $null = Assert-TensorClose (Get-RefTensor $script:File 'negative_pooled_prompt_embeds') (Join-Tensor $script:Emb.NegativePooledPromptEmbeds) 0 (1e-4 * 8) 'negative_pooled_prompt_embeds'
    }

    It 'matches every step''s latents' {
        $count = Get-RefStepCount $script:File
        $count | Should -Be $run.steps
        for ($i = 0; $i -lt $count; $i++) {
            $step = @($script:Lat | Where-Object { $_.Step -eq $i + 1 } | Sort-Object Index)
            $null = Assert-TensorScaled (Get-RefTensor $script:File "step${i}_latents") (Join-Tensor $step.Latents) 1e-4 "step $i latents"
        }
    }

    It 'decodes the image (2e-3 absolute), staged and in one call' {
        $expected = Get-RefTensor $script:File 'image'
        $null = Assert-TensorClose $expected (Join-TensorStack @($script:Img.GetPixels())) 0 2e-3 'image (staged)'
        $null = Assert-TensorClose $expected (Join-TensorStack @($script:OneCall.GetPixels())) 0 2e-3 'image (Invoke-Diffusion)'
    }

    AfterAll { $script:Emb + $script:Lat | ForEach-Object { $_.Dispose() } }
}

Describe 'SDXL stages and inputs' {
    BeforeAll {
        $script:Temp = Join-Path ([IO.Path]::GetTempPath()) "diffusion-sdxl-$([guid]::NewGuid())"
        New-Item -ItemType Directory $script:Temp | Out-Null
    }
    AfterAll { if ($script:Temp.StartsWith([IO.Path]::GetTempPath())) { Remove-Item -LiteralPath $script:Temp -Recurse -Force -ErrorAction Ignore } }

    It 'the staged flow with the encoders, the UNet and the VAE loaded one at a time, and the embeddings through a file, gives the reference image' {
        $run = $script:Runs | Where-Object file -eq 'sdxl-tiny-ref-neg-prompt2.safetensors'
        $enc = New-DiffusionPipeline $script:SdxlTiny -Component text_encoder, text_encoder_2
        $file = Join-Path $script:Temp 'emb.safetensors'
        $run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $enc -NegativePrompt $run.negative_prompt -Prompt2 $run.prompt_2 | Export-DiffusionTensor -Path $file | Out-Null
        Remove-DiffusionPipeline $enc
        $emb = @(Import-DiffusionTensor $file)
        $emb[0].Family | Should -Be 'StableDiffusionXL'
        $emb[0].Prompt2 | Should -Be $run.prompt_2[0]
        $emb[0].NegativePooledPromptEmbeds | Should -Not -BeNullOrEmpty
        $unet = New-DiffusionPipeline $script:SdxlTiny -Component unet
        $lat = @($emb | Invoke-Denoise -Pipeline $unet -Steps $run.steps -GuidanceScale $run.guidance_scale -Seed $run.seed -Height $run.height -Width $run.width)
        Remove-DiffusionPipeline $unet
        $vae = New-DiffusionPipeline $script:SdxlTiny -Component vae
        $img = @($lat | ConvertFrom-DiffusionLatent -Pipeline $vae)
        Remove-DiffusionPipeline $vae
        $null = Assert-TensorClose (Get-RefTensor $run.file 'image') (Join-TensorStack @($img.GetPixels())) 0 2e-3 'image'
    }

    It 'the size and crop conditioning change the image; the defaults are the image size and (0, 0)' {
        $emb = @('a cat' | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe)
        $common = @{ Pipeline = $script:Pipe; Steps = 2; Seed = 5; Height = 64; Width = 64 }
        $plain = $emb | Invoke-Denoise @common
        $explicit = $emb | Invoke-Denoise @common -OriginalSize 64, 64 -CropCoordinates 0, 0 -TargetSize 64, 64
        $cropped = $emb | Invoke-Denoise @common -CropCoordinates 16, 16
        $script:TensorComparison::Compare($plain.Latents, $explicit.Latents, 0, 0, 'explicit').MaxAbsDifference | Should -Be 0
        $script:TensorComparison::Compare($plain.Latents, $cropped.Latents, 0, 0, 'cropped').MaxAbsDifference | Should -BeGreaterThan 0
    }

    It 'a device map over cpu and disk (the UNet''s blocks, the second encoder, the VAE) gives the plain run''s image bit for bit' {
        $run = $script:Runs | Where-Object file -eq 'sdxl-tiny-ref-cfg.safetensors'
        $common = @{ Steps = $run.steps; GuidanceScale = $run.guidance_scale; Seed = $run.seed; Height = $run.height; Width = $run.width }
        $plain = @($run.prompts | Invoke-Diffusion -Pipeline $script:Pipe @common)
        $map = @{ text_encoder = 'cpu'; text_encoder_2 = 'disk'; vae = 'disk'; unet = @{ '' = 'cpu'; 'down_blocks.1' = 'disk'; mid_block = 'disk'; 'up_blocks.0' = 'disk' } }
        $placed = New-DiffusionPipeline $script:SdxlTiny -DeviceMap $map
        try {
            $placed.DeviceMap['unet'] | Should -Be 'cpu,disk'
            $placed.DeviceMap['text_encoder_2'] | Should -Be 'disk'
            $sharded = @($run.prompts | Invoke-Diffusion -Pipeline $placed @common)
        }
        finally { Remove-DiffusionPipeline $placed }
        $null = Assert-TensorClose (Join-TensorStack @($plain.GetPixels())) (Join-TensorStack @($sharded.GetPixels())) 0 0 'image'
    }

    It '-Offload sequential gives the plain run''s image bit for bit' {
        $run = $script:Runs | Where-Object file -eq 'sdxl-tiny-ref-nocfg.safetensors'
        $common = @{ Steps = $run.steps; GuidanceScale = $run.guidance_scale; Seed = $run.seed; Height = $run.height; Width = $run.width }
        $plain = @($run.prompts | Invoke-Diffusion -Pipeline $script:Pipe @common)
        $offloaded = New-DiffusionPipeline $script:SdxlTiny -Device cpu -Offload sequential -WarningAction SilentlyContinue
        try { $out = @($run.prompts | Invoke-Diffusion -Pipeline $offloaded @common) } finally { Remove-DiffusionPipeline $offloaded }
        $null = Assert-TensorClose (Join-TensorStack @($plain.GetPixels())) (Join-TensorStack @($out.GetPixels())) 0 0 'image'
    }

    It 'Get-DiffusionDeviceMap plans SDXL''s UNet by blocks' {
        # The UNet is 2.5 MB: 2 MB of CPU memory holds its first units, the rest goes to disk.
        $plan = Get-DiffusionDeviceMap $script:SdxlTiny -Component unet -DeviceMap sequential -MaxMemory @{ cpu = '2MB'; disk = '1GB' } -Height 64 -Width 64
        $plan.DeviceMap['unet'] | Should -Be 'cpu,disk'
        $units = $plan.Components['unet'].DeviceMap
        $units['add_embedding'] | Should -Be 'cpu' -Because 'SDXL''s added-conditioning embedding is a unit of its own, placed before the blocks'
        $units['down_blocks.0'] | Should -Be 'cpu'
        $units['mid_block'] | Should -Be 'disk'
    }

    It 'a two-process run (-NumProcesses 2, with -Prompt2 and the size conditioning forwarded) gives the one-process run''s images byte for byte' {
        # CPU results depend on the number of threads (Parallel.Tests do the same): every worker computes on one.
        $threads = $env:OMP_NUM_THREADS
        $env:OMP_NUM_THREADS = '1'
        try {
            $common = @{ Path = $script:SdxlTiny; Prompt = 'a cat', 'a dog', 'a red cube'; Prompt2 = 'oil painting'; CropCoordinates = 8, 8; Seed = 3; Steps = 2; Height = 64; Width = 64 }
            $one = @(Invoke-Diffusion @common -NumProcesses 1 -OutputPath (Join-Path $script:Temp 'one/{index}.png'))
            $two = @(Invoke-Diffusion @common -NumProcesses 2 -OutputPath (Join-Path $script:Temp 'two/{index}.png'))
        }
        finally { $env:OMP_NUM_THREADS = $threads }
        $two.Count | Should -Be 3
        @($two.ProcessRank | Sort-Object -Unique) -join ',' | Should -Be '0,1'
        for ($i = 0; $i -lt 3; $i++) {
            (Get-FileHash $two[$i].Path).Hash | Should -Be (Get-FileHash $one[$i].Path).Hash -Because "image $i is the same whichever process made it"
        }
    }

    It 'SD 1.x embeddings are refused by the SDXL UNet with the reason' {
        $sd = New-DiffusionPipeline $script:SdTiny -Component text_encoder
        try { $emb = 'a cat' | ConvertTo-DiffusionEmbedding -Pipeline $sd } finally { Remove-DiffusionPipeline $sd }
        { $emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -ErrorAction Stop } | Should -Throw -ErrorId 'EmbeddingFamilyMismatch,Diffusion.Cmdlets.InvokeDenoiseCommand'
    }
}
