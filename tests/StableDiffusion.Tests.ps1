# Stable Diffusion 1.x through the cmdlets against diffusers' reference runs (float32, CPU).
# Tolerances: embeddings and every step's latents within 1e-4 of the tensor's scale (max|diff| <= 1e-4 * max|ref|),
# images 2e-3 absolute. Measured: steps <= 2.6e-6 of scale, images <= 3e-6.
BeforeDiscovery {
    $fixtures = $env:DIFFUSION_FIXTURES ?? (Join-Path $PSScriptRoot '../../shared/fixtures')
    # sd-tiny's runs, and the SD 2.x-style run with guidance_rescale (DDIM, v_prediction, trailing, zero terminal SNR).
    $script:Runs = @('sd-tiny-refs.json', 'guidance-rescale-refs.json' | ForEach-Object { Get-Content (Join-Path $fixtures $_) -Raw | ConvertFrom-Json })
    $script:RescaleRuns = @($script:Runs | Where-Object { $_.guidance_rescale })
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Pipe = New-DiffusionPipeline $script:SdTiny
}

AfterAll {
    if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe }
    Clear-DiffusionMemory
}

Describe 'Stable Diffusion reference run <file>' -ForEach $script:Runs {
    BeforeAll {
        $run = $_
        $script:File = $run.file
        $schedulerFile = New-SchedulerConfigFile $run
        $negative = if ($run.negative_prompt) { [string[]] $run.negative_prompt } else { $null }
        $script:Embeddings = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe -NegativePrompt $negative)
        $script:Latents = @($script:Embeddings | Invoke-Denoise -Pipeline $script:Pipe -Steps $run.steps -GuidanceScale $run.guidance_scale `
                -GuidanceRescale ($run.guidance_rescale ?? 0) -Seed $run.seed -Height $run.height -Width $run.width -Scheduler $schedulerFile -IncludeSteps)
        $script:Final = @($script:Latents | Where-Object IsFinal)
        $script:Images = @($script:Final | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe)
    }

    It 'gives one embedding per prompt, in order' {
        $script:Embeddings.Count | Should -Be $run.prompts.Count
        $script:Embeddings.Prompt | Should -Be $run.prompts
    }

    It 'encodes prompts like CLIPTextModel (prompt_embeds)' {
        $expected = Get-RefTensor $script:File 'prompt_embeds'
        $null = Assert-TensorScaled $expected (Join-Tensor $script:Embeddings.PromptEmbeds) 1e-4 'prompt_embeds'
    }

    # Only guided runs (guidance > 1) have negative embeddings in the reference.
    It 'encodes the negative prompts (negative_prompt_embeds)' -ForEach @($_ | Where-Object guidance_scale -gt 1) -AllowNullOrEmptyForEach {
        $expected = Get-RefTensor $script:File 'negative_prompt_embeds'
        $null = Assert-TensorScaled $expected (Join-Tensor $script:Embeddings.NegativePromptEmbeds) 1e-4 'negative_prompt_embeds'
    }

    It 'reports the scheduler it ran' {
        $scheduler = $script:Final[0].Scheduler
        $scheduler | Should -Be $run.scheduler
    }

    It 'matches every step''s latents' {
        $count = Get-RefStepCount $script:File
        $count | Should -BeGreaterOrEqual $run.steps
        @($script:Latents | Where-Object IsFinal).Count | Should -Be $run.prompts.Count
        @($script:Latents.Step | Sort-Object -Unique).Count | Should -Be $count
        for ($i = 0; $i -lt $count; $i++) {
            $step = @($script:Latents | Where-Object { $_.Step -eq $i + 1 } | Sort-Object Index)
            $step.Count | Should -Be $run.prompts.Count
            $expected = Get-RefTensor $script:File "step${i}_latents"
            $null = Assert-TensorScaled $expected (Join-Tensor $step.Latents) 1e-4 "step $i latents"
        }
    }

    It 'decodes the image (2e-3 absolute)' {
        $expected = Get-RefTensor $script:File 'image'
        $actual = Join-TensorStack $script:Images.GetPixels()
        $null = Assert-TensorClose $expected $actual 0 2e-3 'image'
        $script:Images[0].Width | Should -Be $run.width
        $script:Images[0].Height | Should -Be $run.height
    }

    It 'records guidance_rescale on the latents and in the PNG' -ForEach @($_ | Where-Object guidance_rescale) -AllowNullOrEmptyForEach {
        $script:Final[0].GuidanceRescale | Should -Be $run.guidance_rescale
        $png = Join-Path ([IO.Path]::GetTempPath()) "diffusion-rescale-$([guid]::NewGuid()).png"
        try {
            $script:Images[0] | Save-DiffusionImage -Path $png | Out-Null
            $parameters = $script:DiffusionImageType::ReadParameters($png)
            $parameters.GuidanceRescale | Should -Be $run.guidance_rescale
            $parameters.ToA1111String() | Should -Match "Guidance rescale: $($run.guidance_rescale)"
        }
        finally { Remove-Item $png -ErrorAction SilentlyContinue }
    }

    AfterAll {
        $script:Latents + $script:Embeddings | ForEach-Object { $_.Dispose() }
    }
}

Describe 'guidance_rescale in one call (<file>)' -ForEach $script:RescaleRuns {
    BeforeAll {
        $run = $_
        $script:SchedulerFile = New-SchedulerConfigFile $run
    }

    It 'Invoke-Diffusion -GuidanceRescale gives the reference image, and without it another one' {
        $common = @{ Pipeline = $script:Pipe; Prompt = [string[]] $run.prompts; NegativePrompt = [string[]] $run.negative_prompt; Steps = $run.steps
            GuidanceScale = $run.guidance_scale; Seed = $run.seed; Height = $run.height; Width = $run.width; Scheduler = $script:SchedulerFile }
        $expected = Get-RefTensor $run.file 'image'
        $image = Invoke-Diffusion @common -GuidanceRescale $run.guidance_rescale
        $null = Assert-TensorClose $expected (Join-TensorStack @($image.GetPixels())) 0 2e-3 'image with guidance_rescale'
        $plain = Invoke-Diffusion @common
        $c = $script:TensorComparison::Compare($expected, (Join-TensorStack @($plain.GetPixels())), 0, 2e-3, 'image without guidance_rescale')
        $c.WithinTolerance | Should -BeFalse -Because 'the rescale changes the image (by up to 0.29 in diffusers)'
    }

    It 'refuses a value outside 0..1' {
        { Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'x' -Steps 1 -GuidanceRescale 1.5 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,*'
    }

    It 'warns that it does nothing without guidance' {
        $null = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'x' -Steps 1 -GuidanceScale 1 -GuidanceRescale 0.7 -Height 64 -Width 64 -WarningVariable warnings -WarningAction SilentlyContinue
        $warnings -join "`n" | Should -Match 'GuidanceRescale 0.7 has no effect without classifier-free guidance'
    }
}
