# SDXL img2img through the cmdlets against diffusers' StableDiffusionXLImg2ImgPipeline (sdxl-tiny, init-128.png,
# strength 0.6, 5 steps, guidance 5.0, seed 0; float32, CPU). The reference is this repo's
# tests/Engine.Tests/TestData/sdxl-img2img-ref.safetensors, made by bench/refs/make_sdxl_img2img_ref.py in the cpuref rig
# (its JSON beside it says how). Tolerances as the other parity tests: the latent distribution, embeddings and every
# step's latents within 1e-4 of the tensor's scale (max|diff| <= 1e-4 * max|ref|), images 2e-3 absolute.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:RefFile = Join-Path $PSScriptRoot 'Engine.Tests/TestData/sdxl-img2img-ref.safetensors'
    $script:Run = Get-Content ([IO.Path]::ChangeExtension($script:RefFile, '.json')) -Raw | ConvertFrom-Json
    function Get-XlRefTensor([string] $name) {
        $f = $script:SafeTensorsFile::Open($script:RefFile)
        try { $f.Load($name) } finally { $f.Dispose() }
    }
    $script:SdxlTiny = Join-Path $script:Fixtures 'sdxl-tiny'
    $script:InitPng = Join-Path $script:Fixtures $script:Run.init_image
    $script:Pipe = New-DiffusionPipeline $script:SdxlTiny
    $script:Common = @{ Steps = $script:Run.steps; GuidanceScale = $script:Run.guidance_scale; Seed = $script:Run.seed; Strength = $script:Run.strength }

    $script:Encoded = ConvertTo-DiffusionLatent -Pipeline $script:Pipe -Image $script:InitPng
    $script:Emb = @($script:Run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe)
    $script:Lat = @($script:Emb | Invoke-Denoise -Pipeline $script:Pipe -InitImage $script:Encoded @script:Common -IncludeSteps)
    $script:Final = @($script:Lat | Where-Object IsFinal)
    $script:Img = @($script:Final | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe)
    $script:OneCall = @($script:Run.prompts | Invoke-Diffusion -Pipeline $script:Pipe -InitImage $script:InitPng @script:Common)
}

AfterAll {
    $script:Emb + $script:Lat + @($script:Encoded) | Where-Object { $_ } | ForEach-Object { $_.Dispose() }
    if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe }
    Clear-DiffusionMemory
}

Describe 'SDXL img2img against StableDiffusionXLImg2ImgPipeline' {
    It 'encodes the init image to the VAE''s latent distribution (latent_dist mean and std)' {
        $script:Encoded.Family | Should -Be 'StableDiffusionXL'
        $script:Encoded.Width, $script:Encoded.Height | Should -Be $script:Run.width, $script:Run.height
        $null = Assert-TensorScaled (Get-XlRefTensor 'latent_dist_mean') $script:Encoded.Mean 1e-4 'latent_dist_mean'
        $null = Assert-TensorScaled (Get-XlRefTensor 'latent_dist_std') $script:Encoded.Std 1e-4 'latent_dist_std'
    }

    It 'a VAE-only pipeline encodes the same (the staged flow''s encode stage)' {
        $vae = New-DiffusionPipeline $script:SdxlTiny -Component vae
        try { $enc = ConvertTo-DiffusionLatent -Pipeline $vae -Image $script:InitPng } finally { Remove-DiffusionPipeline $vae }
        $script:TensorComparison::Compare($script:Encoded.Mean, $enc.Mean, 0, 0, 'mean').MaxAbsDifference | Should -Be 0
        $enc.Dispose()
    }

    It 'a float16 pipeline encodes in float32, from the image rounded to float16 (force_upcast, as diffusers'' prepare_latents)' {
        $half = New-DiffusionPipeline $script:SdxlTiny -Component vae -DType float16
        try { $enc = ConvertTo-DiffusionLatent -Pipeline $half -Image $script:InitPng } finally { Remove-DiffusionPipeline $half }
        "$($enc.Mean.dtype)" | Should -Be 'Float32'
        $null = Assert-TensorScaled (Get-XlRefTensor 'latent_dist_mean_float16') $enc.Mean 1e-4 'latent_dist_mean (float16 pipeline)'
        $null = Assert-TensorScaled (Get-XlRefTensor 'latent_dist_std_float16') $enc.Std 1e-4 'latent_dist_std (float16 pipeline)'
        $enc.Dispose()
    }

    It 'conditions on the prompt as diffusers (prompt_embeds, pooled text embeds; negatives zeros)' {
        $ref = Get-XlRefTensor 'prompt_embeds' # [negative, positive]
        $null = Assert-TensorScaled $ref.narrow(0, 1, 1) $script:Emb[0].PromptEmbeds 1e-4 'prompt_embeds'
        $null = Assert-TensorScaled (Get-XlRefTensor 'add_text_embeds').narrow(0, 1, 1) $script:Emb[0].PooledPromptEmbeds 1e-4 'add_text_embeds'
        @($script:Run.original_size + $script:Run.crops_coords_top_left + $script:Run.target_size) -join ',' | Should -Be '128,128,0,0,128,128' -Because 'diffusers'' size ids default to the init image''s size'
    }

    It 'runs only the steps the strength leaves (3 of 5, int(5 x 0.6))' {
        $script:Final.Count | Should -Be 1
        $script:Final[0].TotalSteps | Should -Be $script:Run.steps_run
        $script:Final[0].Strength | Should -Be $script:Run.strength
        @($script:Lat.Step | Sort-Object -Unique) -join ',' | Should -Be ((1..$script:Run.steps_run) -join ',')
        $script:OneCall[0].Parameters.ToString() | Should -Match "Denoising strength: $($script:Run.strength)"
    }

    It 'matches every step''s latents' {
        for ($i = 0; $i -lt $script:Run.steps_run; $i++) {
            $step = @($script:Lat | Where-Object { $_.Step -eq $i + 1 })
            $null = Assert-TensorScaled (Get-XlRefTensor "step${i}_latents") (Join-Tensor $step.Latents) 1e-4 "step $i latents"
        }
    }

    It 'decodes the image (2e-3 absolute), staged and in one call' {
        $expected = Get-XlRefTensor 'image'
        $null = Assert-TensorClose $expected (Join-TensorStack @($script:Img.GetPixels())) 0 2e-3 'image (staged)'
        $null = Assert-TensorClose $expected (Join-TensorStack @($script:OneCall.GetPixels())) 0 2e-3 'image (Invoke-Diffusion)'
    }
}
