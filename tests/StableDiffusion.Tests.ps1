# Stable Diffusion 1.x through the cmdlets against diffusers' reference runs (float32, CPU).
# Tolerances: embeddings and every step's latents within 1e-4 of the tensor's scale (max|diff| <= 1e-4 * max|ref|),
# images 2e-3 absolute. Measured: steps <= 2.6e-6 of scale, images <= 3e-6.
BeforeDiscovery {
    $script:Runs = Get-Content (Join-Path ($env:DIFFUSION_FIXTURES ?? (Join-Path $PSScriptRoot '../../shared/fixtures')) 'sd-tiny-refs.json') -Raw | ConvertFrom-Json
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
                -Seed $run.seed -Height $run.height -Width $run.width -Scheduler $schedulerFile -IncludeSteps)
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
        $actual = Join-TensorStack $script:Images.Pixels
        $null = Assert-TensorClose $expected $actual 0 2e-3 'image'
        $script:Images[0].Width | Should -Be $run.width
        $script:Images[0].Height | Should -Be $run.height
    }

    AfterAll {
        $script:Latents + $script:Embeddings | ForEach-Object { $_.Dispose() }
    }
}
