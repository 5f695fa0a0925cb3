# FLUX.1 through the cmdlets against diffusers' FluxPipeline reference runs (float32, CPU), one-call and staged.
# Tolerances: embeddings and every step's packed latents within 1e-4 of the tensor's scale, images 2e-3 absolute.
BeforeDiscovery {
    $script:Runs = Get-Content (Join-Path ($env:DIFFUSION_FIXTURES ?? (Join-Path $PSScriptRoot '../../shared/fixtures')) 'flux-tiny-refs.json') -Raw | ConvertFrom-Json
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:FluxLatents = Get-EngineType 'Diffusion.Engine.Families.FluxLatents'
}

Describe 'FLUX reference run <file>' -ForEach $script:Runs {
    BeforeAll {
        $run = $_
        $script:File = $run.file
        $common = @{ Steps = $run.steps; GuidanceScale = $run.guidance_scale; Seed = $run.seed; Height = $run.height; Width = $run.width }
    }

    Context 'staged: encoders, transformer and VAE loaded one at a time' {
        BeforeAll {
            $enc = New-DiffusionPipeline $script:FluxTiny -Component text_encoder, text_encoder_2
            $script:Emb = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $enc -MaxSequenceLength $run.max_sequence_length)
            Remove-DiffusionPipeline $enc
            $den = New-DiffusionPipeline $script:FluxTiny -Component transformer
            $script:Lat = @($script:Emb | Invoke-Denoise -Pipeline $den @common -IncludeSteps)
            Remove-DiffusionPipeline $den
            $script:Final = @($script:Lat | Where-Object IsFinal | Sort-Object Index)
            $vae = New-DiffusionPipeline $script:FluxTiny -Component vae
            $script:Img = @($script:Final | ConvertFrom-DiffusionLatent -Pipeline $vae)
            Remove-DiffusionPipeline $vae
        }

        It 'T5 prompt_embeds and CLIP pooled_prompt_embeds' {
            $null = Assert-TensorScaled (Get-RefTensor $script:File 'prompt_embeds') (Join-Tensor $script:Emb.PromptEmbeds) 1e-4 'prompt_embeds'
            $null = Assert-TensorScaled (Get-RefTensor $script:File 'pooled_prompt_embeds') (Join-Tensor $script:Emb.PooledPromptEmbeds) 1e-4 'pooled_prompt_embeds'
        }

        It 'text_ids' {
            $expected = Get-RefTensor $script:File 'text_ids'
            $null = Assert-TensorClose $expected ($script:FluxLatents::TextIds($run.max_sequence_length)) 0 0 'text_ids'
        }

        It 'every step''s packed latents, and packed_latents' {
            $count = Get-RefStepCount $script:File
            $count | Should -Be $run.steps
            for ($i = 0; $i -lt $count; $i++) {
                $step = @($script:Lat | Where-Object { $_.Step -eq $i + 1 } | Sort-Object Index)
                $null = Assert-TensorScaled (Get-RefTensor $script:File "step${i}_latents") (Join-Tensor $step.Latents) 1e-4 "step $i latents"
            }
            $null = Assert-TensorScaled (Get-RefTensor $script:File 'packed_latents') (Join-Tensor $script:Final.Latents) 1e-4 'packed_latents'
        }

        It 'the image (2e-3 absolute)' {
            $null = Assert-TensorClose (Get-RefTensor $script:File 'image') (Join-TensorStack $script:Img.GetPixels()) 0 2e-3 'image'
        }

        AfterAll { $script:Emb + $script:Lat | ForEach-Object { $_.Dispose() } }
    }

    Context 'one call' {
        It 'Invoke-Diffusion gives the reference image' {
            $pipe = New-DiffusionPipeline $script:FluxTiny
            try {
                $img = @(Invoke-Diffusion -Pipeline $pipe -Prompt $run.prompts @common -MaxSequenceLength $run.max_sequence_length)
                $img.Count | Should -Be $run.prompts.Count
                $null = Assert-TensorClose (Get-RefTensor $script:File 'image') (Join-TensorStack $img.GetPixels()) 0 2e-3 'image'
                $img[0].Parameters.Scheduler | Should -Be 'FlowMatchEulerDiscreteScheduler'
            } finally { Remove-DiffusionPipeline $pipe }
        }
    }
}

Describe 'FLUX behaviour' {
    BeforeAll {
        $script:Pipe = New-DiffusionPipeline $script:FluxTiny
        $script:Emb = ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe 'a dog' -MaxSequenceLength 16
    }
    AfterAll { Remove-DiffusionPipeline $script:Pipe }

    It 'is the same family and cmdlets as SD: the pipeline knows it is FLUX' {
        $script:Pipe.Family | Should -Be 'Flux'
        $script:Emb.Family | Should -Be 'Flux'
        $script:Emb.PooledPromptEmbeds | Should -Not -BeNullOrEmpty
    }

    It 'rounds a size that is not a multiple of 16 down, with a warning, as diffusers does' {
        $w = $null
        $lat = $script:Emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -Seed 1 -Height 72 -Width 100 -WarningVariable w -WarningAction SilentlyContinue
        $lat.Height | Should -Be 64
        $lat.Width | Should -Be 96
        ($w -join ' ') | Should -Match 'divisible by 16'
        $img = $lat | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe
        $img.Width | Should -Be 96
        $img.Height | Should -Be 64
    }

    It 'truncates a prompt longer than -MaxSequenceLength with a warning naming the dropped text' {
        $w = $null
        $e = ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe 'one two three four five six seven eight nine ten' -MaxSequenceLength 8 -WarningVariable w -WarningAction SilentlyContinue
        $e.Truncated | Should -BeTrue
        $e.PromptEmbeds.shape[1] | Should -Be 8
        ($w -join ' ') | Should -Match 'max_sequence_length'
        $e.TruncatedText | Should -Not -BeNullOrEmpty
    }

    It 'refuses SD embeddings for a FLUX denoiser, naming the mismatch' {
        $sd = New-DiffusionPipeline $script:SdTiny -Component text_encoder
        try {
            $sdEmb = ConvertTo-DiffusionEmbedding -Pipeline $sd 'a cat'
            { $sdEmb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -ErrorAction Stop } | Should -Throw -ErrorId 'EmbeddingFamilyMismatch*'
        } finally { Remove-DiffusionPipeline $sd }
    }

    It 'refuses -GuidanceRescale, which applies to SD''s classifier-free guidance' {
        $err = $null
        try { $script:Emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -GuidanceRescale 0.7 -ErrorAction Stop } catch { $err = $_ }
        $err.FullyQualifiedErrorId | Should -BeLike 'GuidanceRescaleNotSupported,*'
        $err.ToString() | Should -Match 'guidance-distilled'
    }

    It 'a stage without its component says which one and how to load it' {
        $vae = New-DiffusionPipeline $script:FluxTiny -Component vae
        try {
            $err = $null
            try { $script:Emb | Invoke-Denoise -Pipeline $vae -Steps 1 } catch { $err = $_ }
            $err.FullyQualifiedErrorId | Should -BeLike 'ComponentNotLoaded,*'
            $err.ToString() | Should -Match '-Component transformer'
        } finally { Remove-DiffusionPipeline $vae }
    }
}

Describe 'FLUX.1-schnell configuration' {
    # flux-tiny turned into a schnell-style model: no guidance embedder (its weights dropped), static shift 1.0.
    BeforeAll {
        $script:Schnell = Join-Path ([IO.Path]::GetTempPath()) ("flux-schnell-" + [guid]::NewGuid())
        Copy-Item $script:FluxTiny $script:Schnell -Recurse
        Get-ChildItem $script:Schnell -Recurse -File | ForEach-Object { $_.IsReadOnly = $false }
        $cfg = Get-Content "$script:Schnell/transformer/config.json" -Raw | ConvertFrom-Json
        $cfg.guidance_embeds = $false
        $cfg | ConvertTo-Json -Depth 5 | Set-Content "$script:Schnell/transformer/config.json"
        $sched = Get-Content "$script:Schnell/scheduler/scheduler_config.json" -Raw | ConvertFrom-Json
        $sched.use_dynamic_shifting = $false
        $sched.shift = 1.0
        $sched | ConvertTo-Json -Depth 5 | Set-Content "$script:Schnell/scheduler/scheduler_config.json"
        $weights = "$script:Schnell/transformer/diffusion_pytorch_model.safetensors"
        $file = $script:SafeTensorsFile::Open($weights)
        $kept = [Activator]::CreateInstance([System.Collections.Generic.Dictionary`2].MakeGenericType([string], $script:TensorType))
        try {
            foreach ($name in $file.Tensors.Keys) { if ($name -notlike 'time_text_embed.guidance_embedder.*') { $kept[$name] = $file.Load($name) } }
            $script:Dropped = $file.Tensors.Count - $kept.Count
        } finally { $file.Dispose() }
        (Get-EngineType 'Diffusion.Engine.IO.SafeTensorsWriter')::Save($weights, $kept, $null)
        $script:SchnellPipe = New-DiffusionPipeline $script:Schnell
    }
    AfterAll {
        Remove-DiffusionPipeline $script:SchnellPipe
        Remove-Item $script:Schnell -Recurse -Force -ErrorAction SilentlyContinue
    }

    It 'loads without a guidance embedder' {
        $script:Dropped | Should -BeGreaterThan 0
        $script:SchnellPipe.Components['transformer'].Parameters | Should -BeLessThan (New-DiffusionPipeline $script:FluxTiny -Component transformer).Components['transformer'].Parameters
    }

    It 'defaults to 256 T5 tokens (dev: 512)' {
        $e = ConvertTo-DiffusionEmbedding -Pipeline $script:SchnellPipe 'a dog'
        $e.PromptEmbeds.shape[1] | Should -Be 256
        $dev = ConvertTo-DiffusionEmbedding -Pipeline (New-DiffusionPipeline $script:FluxTiny -Component text_encoder, text_encoder_2) 'a dog'
        $dev.PromptEmbeds.shape[1] | Should -Be 512
    }

    It 'ignores the guidance scale, as diffusers passes no guidance to schnell' {
        $a = Invoke-Diffusion -Pipeline $script:SchnellPipe -Prompt 'a dog' -Steps 2 -Seed 1 -Height 64 -Width 64 -MaxSequenceLength 16 -GuidanceScale 1
        $b = Invoke-Diffusion -Pipeline $script:SchnellPipe -Prompt 'a dog' -Steps 2 -Seed 1 -Height 64 -Width 64 -MaxSequenceLength 16 -GuidanceScale 9
        $null = Assert-TensorClose $a.GetPixels() $b.GetPixels() 0 0 'schnell image with guidance 1 vs 9'
        $a.Width | Should -Be 64
    }

    It 'dev does use the guidance scale' {
        $pipe = New-DiffusionPipeline $script:FluxTiny
        try {
            $a = Invoke-Diffusion -Pipeline $pipe -Prompt 'a dog' -Steps 2 -Seed 1 -Height 64 -Width 64 -MaxSequenceLength 16 -GuidanceScale 1
            $b = Invoke-Diffusion -Pipeline $pipe -Prompt 'a dog' -Steps 2 -Seed 1 -Height 64 -Width 64 -MaxSequenceLength 16 -GuidanceScale 9
            ($script:TensorComparison::Compare($a.GetPixels(), $b.GetPixels(), 0, 0, '')).MaxAbsDifference | Should -BeGreaterThan 0
        } finally { Remove-DiffusionPipeline $pipe }
    }
}

Describe 'Memory goes back between stages' {
    It 'Remove-DiffusionPipeline + Clear-DiffusionMemory drop the engine''s memory to what remains' {
        Clear-DiffusionMemory
        $base = (Get-DiffusionDevice cpu).AllocatedByEngine
        $den = New-DiffusionPipeline $script:FluxTiny -Component transformer
        $loaded = (Get-DiffusionDevice cpu).AllocatedByEngine
        ($loaded - $base) | Should -Be $den.Bytes
        $den.Bytes | Should -BeGreaterThan 100KB
        Remove-DiffusionPipeline $den
        Clear-DiffusionMemory
        (Get-DiffusionDevice cpu).AllocatedByEngine | Should -Be $base
        (Get-DiffusionDevice cpu).PeakByEngine | Should -Be $base
    }

    It 'a pipeline nothing refers to any more leaves the ledger after Clear-DiffusionMemory' {
        Clear-DiffusionMemory
        $base = (Get-DiffusionDevice cpu).AllocatedByEngine
        $null = New-DiffusionPipeline $script:FluxTiny -Component vae # dropped without Remove-DiffusionPipeline
        (Get-DiffusionDevice cpu).AllocatedByEngine | Should -BeGreaterThan $base
        Clear-DiffusionMemory
        (Get-DiffusionDevice cpu).AllocatedByEngine | Should -Be $base
    }

    It 'latents that nothing refers to are freed by Clear-DiffusionMemory' {
        $pipe = New-DiffusionPipeline $script:SdTiny
        try {
            $emb = ConvertTo-DiffusionEmbedding -Pipeline $pipe 'a cat'
            Clear-DiffusionMemory
            $before = (Get-DiffusionDevice cpu).AllocatedByEngine
            $null = $emb | Invoke-Denoise -Pipeline $pipe -Steps 1 -Seed 1 -Height 64 -Width 64 # output dropped
            Clear-DiffusionMemory
            (Get-DiffusionDevice cpu).AllocatedByEngine | Should -Be $before
        } finally { Remove-DiffusionPipeline $pipe }
    }
}
