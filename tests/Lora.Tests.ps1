# LoRA through the cmdlets against diffusers' runs with load_lora_weights (lora-refs.json; float32, CPU).
# Tolerances as the other parity tests: embeddings and every step's latents within 1e-4 of the tensor's scale
# (max|diff| <= 1e-4 * max|ref|), images 2e-3 absolute. The kohya file, the removal and the sharded run are compared
# bit for bit (max diff 0): they compute the same operations on the same numbers.
BeforeDiscovery {
    $fixtures = $env:DIFFUSION_FIXTURES ?? (Join-Path $PSScriptRoot '../../shared/fixtures')
    $script:Refs = Get-Content (Join-Path $fixtures 'lora/lora-refs.json') -Raw | ConvertFrom-Json
    $script:SdRefs = @($script:Refs | Where-Object model -eq 'sd-tiny')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Lora = Join-Path $script:Fixtures 'lora'
    $script:Refs = Get-Content (Join-Path $script:Lora 'lora-refs.json') -Raw | ConvertFrom-Json
    $script:SdLora = Join-Path $script:Lora 'sd-tiny-lora.safetensors'
    $script:KohyaLora = Join-Path $script:Lora 'sd-tiny-lora-kohya.safetensors'
    $script:FluxLora = Join-Path $script:Lora 'flux-tiny-lora.safetensors'
    $script:Pipe = New-DiffusionPipeline $script:SdTiny

    # One SD run of a lora-refs.json case: embeddings, every step's latents and the image.
    function Invoke-RefRun($pipe, $run, [double] $loraScale = 1.0) {
        $schedulerFile = New-SchedulerConfigFile $run
        $emb = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $pipe -LoraScale $loraScale)
        $lat = @($emb | Invoke-Denoise -Pipeline $pipe -Steps $run.steps -GuidanceScale $run.guidance_scale -Seed $run.seed `
                -Height $run.height -Width $run.width -Scheduler $schedulerFile -IncludeSteps -LoraScale $loraScale)
        $final = @($lat | Where-Object IsFinal | Sort-Object Index)
        [pscustomobject]@{ Embeddings = $emb; Latents = $lat; Final = $final; Images = @($final | ConvertFrom-DiffusionLatent -Pipeline $pipe) }
    }

    function Assert-SameTensors($a, $b, [string] $what) {
        $null = Assert-TensorClose $a $b 0 0 $what
    }
}

AfterAll {
    if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe }
    Clear-DiffusionMemory
}

Describe 'SD LoRA reference run <file>' -ForEach $script:SdRefs {
    BeforeAll {
        $run = $_
        $script:File = "lora/$($run.file)"
        $adapter = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora
        try { $script:Run = Invoke-RefRun $script:Pipe $run $run.lora_scale }
        finally { Remove-DiffusionLora -Pipeline $script:Pipe -Name $adapter.Name }
    }

    It 'encodes the prompts through the LoRA''d text encoder (prompt_embeds)' {
        $null = Assert-TensorScaled (Get-RefTensor $script:File 'prompt_embeds') (Join-Tensor $script:Run.Embeddings.PromptEmbeds) 1e-4 'prompt_embeds'
        $null = Assert-TensorScaled (Get-RefTensor $script:File 'negative_prompt_embeds') (Join-Tensor $script:Run.Embeddings.NegativePromptEmbeds) 1e-4 'negative_prompt_embeds'
    }

    It 'matches every step''s latents' {
        $count = Get-RefStepCount $script:File
        for ($i = 0; $i -lt $count; $i++) {
            $step = @($script:Run.Latents | Where-Object { $_.Step -eq $i + 1 } | Sort-Object Index)
            $step.Count | Should -Be $run.prompts.Count
            $null = Assert-TensorScaled (Get-RefTensor $script:File "step${i}_latents") (Join-Tensor $step.Latents) 1e-4 "step $i latents"
        }
    }

    It 'decodes the image (2e-3 absolute)' {
        $null = Assert-TensorClose (Get-RefTensor $script:File 'image') (Join-TensorStack @($script:Run.Images.GetPixels())) 0 2e-3 'image'
    }
}

Describe 'SD LoRA formats, scales and removal' {
    BeforeAll {
        $script:Case = $script:Refs | Where-Object { $_.model -eq 'sd-tiny' -and $_.lora_scale -eq 1.0 }
        $script:Plain = Invoke-RefRun $script:Pipe $script:Case
    }

    It 'reads the diffusers file: 100 layers in the UNet and the text encoder, alpha = rank' {
        $a = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora
        try {
            $a.Format | Should -Be 'Diffusers'
            $a.Rank | Should -Be 4
            $a.Layers['unet'] | Should -Be 88
            $a.Layers['text_encoder'] | Should -Be 12
            @(Get-DiffusionLora -Pipeline $script:Pipe).Name | Should -Be @('sd-tiny-lora')
        }
        finally { Remove-DiffusionLora -Pipeline $script:Pipe }
        @(Get-DiffusionLora -Pipeline $script:Pipe).Count | Should -Be 0
    }

    It 'the kohya file gives bitwise the tensors of the diffusers file' {
        $a = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora
        try { $diffusers = Invoke-RefRun $script:Pipe $script:Case } finally { $a | Remove-DiffusionLora }
        $k = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:KohyaLora
        try {
            $k.Format | Should -Be 'Kohya'
            ($k.Layers.Values | Measure-Object -Sum).Sum | Should -Be 100
            $kohya = Invoke-RefRun $script:Pipe $script:Case
        }
        finally { $k | Remove-DiffusionLora }
        Assert-SameTensors (Join-Tensor $diffusers.Embeddings.PromptEmbeds) (Join-Tensor $kohya.Embeddings.PromptEmbeds) 'prompt_embeds'
        Assert-SameTensors (Join-Tensor $diffusers.Final.Latents) (Join-Tensor $kohya.Final.Latents) 'final latents'
    }

    It 'the adapter''s -Scale acts as the run''s -LoraScale (0.5 either way gives the scale-0.5 reference)' {
        $a = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora -Scale 0.5
        try { $half = Invoke-RefRun $script:Pipe $script:Case } finally { $a | Remove-DiffusionLora }
        $file = 'lora/lora-ref-sd-scale0.5.safetensors'
        $null = Assert-TensorScaled (Get-RefTensor $file 'prompt_embeds') (Join-Tensor $half.Embeddings.PromptEmbeds) 1e-4 'prompt_embeds'
        $null = Assert-TensorScaled (Get-RefTensor $file "step3_latents") (Join-Tensor @($half.Latents | Where-Object { $_.Step -eq 4 } | Sort-Object Index).Latents) 1e-4 'step 3 latents'
    }

    It 'two LoRAs add up: the file twice at 0.5 each equals it once at 1.0 within float rounding' {
        $a = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora -Scale 0.5 -Name first
        $b = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:KohyaLora -Scale 0.5 -Name second
        try {
            @(Get-DiffusionLora -Pipeline $script:Pipe).Name | Should -Be @('first', 'second')
            $both = Invoke-RefRun $script:Pipe $script:Case
        }
        finally { Remove-DiffusionLora -Pipeline $script:Pipe -Name first, second }
        $null = Assert-TensorScaled (Get-RefTensor 'lora/lora-ref-sd-scale1.0.safetensors' 'step3_latents') `
            (Join-Tensor @($both.Latents | Where-Object { $_.Step -eq 4 } | Sort-Object Index).Latents) 1e-4 'step 3 latents'
    }

    It 'removing the LoRA gives the run without it back, bit for bit' {
        $before = Invoke-RefRun $script:Pipe $script:Case
        $a = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora
        $with = Invoke-RefRun $script:Pipe $script:Case
        Remove-DiffusionLora -Pipeline $script:Pipe -Name $a.Name
        $a.IsRemoved | Should -BeTrue
        $after = Invoke-RefRun $script:Pipe $script:Case
        ($script:TensorComparison::Compare((Join-Tensor $before.Final.Latents), (Join-Tensor $with.Final.Latents), 0, 0, 'with').MaxAbsDifference) | Should -BeGreaterThan 0
        Assert-SameTensors (Join-Tensor $before.Embeddings.PromptEmbeds) (Join-Tensor $after.Embeddings.PromptEmbeds) 'prompt_embeds'
        Assert-SameTensors (Join-Tensor $before.Final.Latents) (Join-Tensor $after.Final.Latents) 'final latents'
        Assert-SameTensors (Join-TensorStack @($before.Images.GetPixels())) (Join-TensorStack @($after.Images.GetPixels())) 'image'
    }

    It 'records the LoRAs in the image''s parameters as A1111''s Lora hashes, and their scales in the per-field chunk' {
        $a = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora -Scale 0.8
        try { $img = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat' -Steps 1 -Seed 1 -Width 64 -Height 64 -LoraScale 0.5 }
        finally { $a | Remove-DiffusionLora }
        $hash = (Get-FileHash $script:SdLora -Algorithm SHA256).Hash.Substring(0, 12).ToLowerInvariant()
        $img.Parameters.ToString() | Should -Match ([regex]::Escape("Lora hashes: `"sd-tiny-lora: $hash`""))
        $file = Join-Path ([IO.Path]::GetTempPath()) "diffusion-lora-meta-$([guid]::NewGuid()).png"
        try {
            $img | Save-DiffusionImage -Path $file | Out-Null
            (Get-DiffusionImageInfo -LiteralPath $file).Loras | Should -Be "sd-tiny-lora: $($hash): 0.4"
        }
        finally { Remove-Item -LiteralPath $file -ErrorAction Ignore }
        $plain = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat' -Steps 1 -Seed 1 -Width 64 -Height 64
        $plain.Parameters.ToString() | Should -Not -Match 'Lora'
    }

    It 'Remove-DiffusionLora -WhatIf keeps it; Add-DiffusionLora -WhatIf applies nothing' {
        Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora -WhatIf | Should -BeNullOrEmpty
        @(Get-DiffusionLora -Pipeline $script:Pipe).Count | Should -Be 0
        $a = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora
        try {
            Remove-DiffusionLora -Pipeline $script:Pipe -WhatIf
            $a.IsRemoved | Should -BeFalse
            @(Get-DiffusionLora -Pipeline $script:Pipe).Count | Should -Be 1
        }
        finally { Remove-DiffusionLora -Pipeline $script:Pipe }
    }

    It 'a LoRA on a UNet sharded over cpu and disk gives the unsharded run with it, bit for bit' {
        $a = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora
        try { $plain = Invoke-RefRun $script:Pipe $script:Case } finally { $a | Remove-DiffusionLora }
        $sharded = New-DiffusionPipeline $script:SdTiny -DeviceMap @{ text_encoder = 'cpu'; vae = 'cpu'; unet = @{ '' = 'cpu'; 'down_blocks.1' = 'disk'; mid_block = 'disk'; up_blocks = 'disk' } }
        try {
            $sharded.DeviceMap['unet'] | Should -Be 'cpu,disk'
            $null = Add-DiffusionLora -Pipeline $sharded -Path $script:SdLora
            $run = Invoke-RefRun $sharded $script:Case
        }
        finally { Remove-DiffusionPipeline $sharded }
        Assert-SameTensors (Join-Tensor $plain.Final.Latents) (Join-Tensor $run.Final.Latents) 'final latents'
        Assert-SameTensors (Join-TensorStack @($plain.Images.GetPixels())) (Join-TensorStack @($run.Images.GetPixels())) 'image'
    }
}

Describe 'FLUX LoRA reference run' {
    BeforeAll {
        $run = $script:Refs | Where-Object model -eq 'flux-tiny'
        $script:File = "lora/$($run.file)"
        $pipe = New-DiffusionPipeline $script:FluxTiny
        try {
            $a = Add-DiffusionLora -Pipeline $pipe -Path $script:FluxLora
            $script:Adapter = $a
            $emb = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $pipe -MaxSequenceLength $run.max_sequence_length)
            $script:Lat = @($emb | Invoke-Denoise -Pipeline $pipe -Steps $run.steps -GuidanceScale $run.guidance_scale -Seed $run.seed -Height $run.height -Width $run.width -IncludeSteps)
            $script:Img = @($script:Lat | Where-Object IsFinal | ConvertFrom-DiffusionLatent -Pipeline $pipe)
        }
        finally { Remove-DiffusionPipeline $pipe }
    }

    It 'patches the 34 transformer layers (PEFT keys, alpha = rank)' {
        $script:Adapter.Format | Should -Be 'Peft'
        $script:Adapter.Layers['transformer'] | Should -Be 34
        $script:Adapter.IsRemoved | Should -BeTrue -Because 'Remove-DiffusionPipeline removes its LoRAs'
    }

    It 'matches every step''s packed latents' {
        $count = Get-RefStepCount $script:File
        $count | Should -Be 4
        for ($i = 0; $i -lt $count; $i++) {
            $step = @($script:Lat | Where-Object { $_.Step -eq $i + 1 })
            $null = Assert-TensorScaled (Get-RefTensor $script:File "step${i}_latents") (Join-Tensor $step.Latents) 1e-4 "step $i latents"
        }
    }

    It 'decodes the image (2e-3 absolute)' {
        $null = Assert-TensorClose (Get-RefTensor $script:File 'image') (Join-TensorStack @($script:Img.GetPixels())) 0 2e-3 'image'
    }
}

Describe 'LoRA errors' {
    It 'a LoRA for another model names the layers it cannot match, and applies nothing' {
        { Add-DiffusionLora -Pipeline $script:Pipe -Path $script:FluxLora -ErrorAction Stop } | Should -Throw -ErrorId 'LoraKeysUnmatched,Diffusion.Cmdlets.AddDiffusionLoraCommand'
        try { Add-DiffusionLora -Pipeline $script:Pipe -Path $script:FluxLora -ErrorAction Stop } catch { $_.Exception.Message | Should -Match 'transformer\.' }
        @(Get-DiffusionLora -Pipeline $script:Pipe).Count | Should -Be 0
    }

    It 'a second LoRA with a name already taken' {
        $null = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora
        try { { Add-DiffusionLora -Pipeline $script:Pipe -Path $script:KohyaLora -Name 'SD-TINY-LORA' -ErrorAction Stop } | Should -Throw -ErrorId 'LoraNameTaken,Diffusion.Cmdlets.AddDiffusionLoraCommand' }
        finally { Remove-DiffusionLora -Pipeline $script:Pipe }
    }

    It 'a pickle file is refused with the reason' {
        $dir = Join-Path ([IO.Path]::GetTempPath()) "diffusion-lora-$([guid]::NewGuid())"
        New-Item -ItemType Directory $dir | Out-Null
        try {
            $pt = Join-Path $dir 'lora.pt'
            [IO.File]::WriteAllBytes($pt, [byte[]](1, 2, 3))
            { Add-DiffusionLora -Pipeline $script:Pipe -Path $pt -ErrorAction Stop } | Should -Throw -ErrorId 'PickleWeightsRefused,Diffusion.Cmdlets.AddDiffusionLoraCommand'
        }
        finally { if ($dir.StartsWith([IO.Path]::GetTempPath())) { Remove-Item -LiteralPath $dir -Recurse -Force } }
    }

    It 'a safetensors file that is not a LoRA names the keys it saw' {
        $weights = Join-Path $script:SdTiny 'vae/diffusion_pytorch_model.safetensors'
        { Add-DiffusionLora -Pipeline $script:Pipe -Path $weights -ErrorAction Stop } | Should -Throw -ErrorId 'LoraFormatUnknown,Diffusion.Cmdlets.AddDiffusionLoraCommand'
    }

    It 'a staged pipeline applies the layers of what it loaded and warns about the rest' {
        $unet = New-DiffusionPipeline $script:SdTiny -Component unet
        try {
            $a = Add-DiffusionLora -Pipeline $unet -Path $script:SdLora -WarningVariable warnings -WarningAction SilentlyContinue
            $a.Layers['unet'] | Should -Be 88
            $a.Layers.ContainsKey('text_encoder') | Should -BeFalse
            $a.SkippedComponents | Should -Be @('text_encoder')
            "$warnings" | Should -Match 'text_encoder'
        }
        finally { Remove-DiffusionPipeline $unet }
    }

    It 'a removed pipeline''s LoRA cannot be used' {
        $p = New-DiffusionPipeline $script:SdTiny -Component unet
        $a = Add-DiffusionLora -Pipeline $p -Path $script:SdLora -WarningAction SilentlyContinue
        Remove-DiffusionPipeline $p
        $a.IsRemoved | Should -BeTrue
    }
}
