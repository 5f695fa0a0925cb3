# img2img through the cmdlets against diffusers' StableDiffusionImg2ImgPipeline and FluxImg2ImgPipeline runs
# (img2img-refs.json, init-128.png; float32, CPU). Tolerances as the other parity tests: the VAE's latent distribution,
# embeddings and every step's latents within 1e-4 of the tensor's scale, images 2e-3 absolute.
BeforeDiscovery {
    $fixtures = $env:DIFFUSION_FIXTURES ?? (Join-Path $PSScriptRoot '../../shared/fixtures')
    $script:Runs = Get-Content (Join-Path $fixtures 'img2img-refs.json') -Raw | ConvertFrom-Json
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:InitPng = Join-Path $script:Fixtures 'init-128.png'
    $script:Pipes = @{ 'sd-tiny' = (New-DiffusionPipeline $script:SdTiny); 'flux-tiny' = (New-DiffusionPipeline $script:FluxTiny) }
}

AfterAll {
    if ($script:Pipes) { $script:Pipes.Values | Remove-DiffusionPipeline }
    Clear-DiffusionMemory
}

Describe 'img2img reference run <file>' -ForEach $script:Runs {
    BeforeAll {
        $run = $_
        $script:File = $run.file
        $script:Pipe = $script:Pipes[$run.model]
        $script:IsFlux = $run.model -eq 'flux-tiny'
        $script:Common = @{ Steps = $run.steps; GuidanceScale = $run.guidance_scale; Seed = $run.seed; Strength = $run.strength }
        if (-not $script:IsFlux) { $script:Common.Scheduler = New-SchedulerConfigFile $run }
        $encode = @{}
        if ($script:IsFlux) { $encode.MaxSequenceLength = $run.max_sequence_length }
        $script:Encoded = ConvertTo-DiffusionLatent -Pipeline $script:Pipe -Image $script:InitPng
        $script:Emb = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe @encode)
        $script:Lat = @($script:Emb | Invoke-Denoise -Pipeline $script:Pipe -InitImage $script:Encoded @script:Common -IncludeSteps)
        $script:Final = @($script:Lat | Where-Object IsFinal)
        $script:Img = @($script:Final | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe)
        $script:OneCall = @($run.prompts | Invoke-Diffusion -Pipeline $script:Pipe -InitImage $script:InitPng @script:Common @encode)
    }

    It 'encodes the init image to the VAE''s latent distribution (latent_dist mean and std)' {
        $script:Encoded.Width | Should -Be 128
        $script:Encoded.Height | Should -Be 128
        $null = Assert-TensorScaled (Get-RefTensor $script:File 'latent_dist_mean') $script:Encoded.Mean 1e-4 'latent_dist_mean'
        $null = Assert-TensorScaled (Get-RefTensor $script:File 'latent_dist_std') $script:Encoded.Std 1e-4 'latent_dist_std'
    }

    It 'runs only the steps the strength leaves (<_.steps_run> of <_.steps>)' {
        $script:Final.Count | Should -Be 1
        $script:Final[0].TotalSteps | Should -Be $run.steps_run
        $script:Final[0].Strength | Should -Be $run.strength
        $script:OneCall[0].Parameters.ToString() | Should -Match "Denoising strength: $($run.strength)"
        @($script:Lat.Step | Sort-Object -Unique) -join ',' | Should -Be ((1..$run.steps_run) -join ',')
    }

    It 'matches every step''s latents' {
        for ($i = 0; $i -lt $run.steps_run; $i++) {
            $step = @($script:Lat | Where-Object { $_.Step -eq $i + 1 })
            $null = Assert-TensorScaled (Get-RefTensor $script:File "step${i}_latents") (Join-Tensor $step.Latents) 1e-4 "step $i latents"
        }
    }

    It 'decodes the image (2e-3 absolute), staged and in one call' {
        $expected = Get-RefTensor $script:File 'image'
        $null = Assert-TensorClose $expected (Join-TensorStack @($script:Img.GetPixels())) 0 2e-3 'image (staged)'
        $null = Assert-TensorClose $expected (Join-TensorStack @($script:OneCall.GetPixels())) 0 2e-3 'image (Invoke-Diffusion)'
    }

    AfterAll { $script:Emb + $script:Lat + @($script:Encoded) | ForEach-Object { $_.Dispose() } }
}

Describe 'img2img inputs' {
    BeforeAll {
        $script:Sd = $script:Pipes['sd-tiny']
        $script:Emb = 'a red cube' | ConvertTo-DiffusionEmbedding -Pipeline $script:Sd
    }

    It 'strength 1 runs every step; strength 0 (no step left) is refused' {
        $lat = $script:Emb | Invoke-Denoise -Pipeline $script:Sd -InitImage (ConvertTo-DiffusionLatent -Pipeline $script:Sd -Image $script:InitPng) -Strength 1 -Steps 3 -Seed 1
        $lat.TotalSteps | Should -Be 4 -Because 'sd-tiny''s PNDM lists 4 timesteps for 3 steps (its first one repeats), and strength 1 runs them all'
        { $script:Emb | Invoke-Denoise -Pipeline $script:Sd -InitImage (ConvertTo-DiffusionLatent -Pipeline $script:Sd -Image $script:InitPng) -Strength 0 -Steps 3 -Seed 1 -ErrorAction Stop } |
            Should -Throw -ErrorId 'StrengthLeavesNoSteps,Diffusion.Cmdlets.InvokeDenoiseCommand'
    }

    It 'an image of another size is resized to -Width/-Height (Lanczos) and the run takes that size' {
        $enc = ConvertTo-DiffusionLatent -Pipeline $script:Sd -Image $script:InitPng -Width 96 -Height 64
        $enc.Width, $enc.Height | Should -Be 96, 64
        $img = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a red cube' -InitImage $enc -Strength 0.5 -Steps 2 -Seed 3
        $img.Width, $img.Height | Should -Be 96, 64
    }

    It 'takes an image object (a generated image) as -InitImage' {
        $first = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a red cube' -Steps 2 -Seed 4 -Width 64 -Height 64
        $second = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a blue cube' -InitImage $first -Strength 0.5 -Steps 2 -Seed 4
        $second.Width | Should -Be 64
    }

    It 'an encoded image of another size than the run, or of another family, is refused' {
        $enc = ConvertTo-DiffusionLatent -Pipeline $script:Sd -Image $script:InitPng
        { $script:Emb | Invoke-Denoise -Pipeline $script:Sd -InitImage $enc -Height 64 -Width 64 -Steps 2 -ErrorAction Stop } |
            Should -Throw -ErrorId 'InitImageSizeMismatch,Diffusion.Cmdlets.InvokeDenoiseCommand'
        $fluxEmb = 'a red cube' | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipes['flux-tiny'] -MaxSequenceLength 16
        { $fluxEmb | Invoke-Denoise -Pipeline $script:Pipes['flux-tiny'] -InitImage $enc -Steps 2 -ErrorAction Stop } |
            Should -Throw -ErrorId 'InitImageFamilyMismatch,Diffusion.Cmdlets.InvokeDenoiseCommand'
    }

    It 'one bad image among several is an error for that item; the others are encoded' {
        $missing = Join-Path ([IO.Path]::GetTempPath()) "diffusion-none-$([guid]::NewGuid()).png"
        $out = @($script:InitPng, $missing, $script:InitPng | ConvertTo-DiffusionLatent -Pipeline $script:Sd -ErrorVariable errs -ErrorAction SilentlyContinue)
        $out.Count | Should -Be 2
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'ImageFileNotFound*'
    }

    It '-Strength without -InitImage warns that it does nothing' {
        $null = Invoke-Diffusion -Pipeline $script:Sd -Prompt 'a red cube' -Strength 0.5 -Steps 1 -Seed 1 -Width 64 -Height 64 -WarningVariable w -WarningAction SilentlyContinue
        "$w" | Should -Match 'img2img'
    }
}
