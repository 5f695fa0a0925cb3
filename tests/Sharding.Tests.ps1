# Device maps and CPU offload through the cmdlets. This machine has no GPU: maps here place units on cpu and disk
# (weights read from the safetensors file for each call) and offload runs on -Device cpu, so the hooks and the weight
# streaming run for real and the results must equal a plain run exactly. Plans for GPUs are made without them
# (-WhatIf, Get-DiffusionDeviceMap); running on two GPUs is left to a GPU session.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-sharding-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null

    function Get-ErrorRecord([scriptblock] $action) {
        try { & $action; $null } catch { $_ }
    }

    function Assert-Same($Expected, $Actual, [string] $What) {
        $c = $script:TensorComparison::Compare($Expected, $Actual, 0, 0, $What)
        $c.MaxAbsDifference | Should -Be 0 -Because "$What must equal the unsharded run"
    }

    # Reference: the plain pipeline, one SD and one FLUX run.
    $plain = New-DiffusionPipeline $script:SdTiny
    try {
        $script:SdEmbedding = 'a photo of a cat' | ConvertTo-DiffusionEmbedding -Pipeline $plain -NegativePrompt 'blurry'
        $script:SdLatent = $script:SdEmbedding | Invoke-Denoise -Pipeline $plain -Steps 3 -Seed 11 -Height 64 -Width 64
        $script:SdImage = $script:SdLatent | ConvertFrom-DiffusionLatent -Pipeline $plain
    } finally { Remove-DiffusionPipeline $plain }
    $flux = New-DiffusionPipeline $script:FluxTiny
    try {
        $script:FluxImage = Invoke-Diffusion -Pipeline $flux -Prompt 'a red fox' -Steps 2 -Seed 3 -Height 64 -Width 64 -MaxSequenceLength 16
    } finally { Remove-DiffusionPipeline $flux }
}

AfterAll {
    Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
    Clear-DiffusionMemory
}

Describe 'A module-level map splits the UNet across cpu and disk' {
    BeforeAll {
        $script:Unet = New-DiffusionPipeline $script:SdTiny -Component unet -DeviceMap @{ '' = 'cpu'; 'down_blocks.1' = 'disk'; mid_block = 'disk'; up_blocks = 'disk' }
    }
    AfterAll { Remove-DiffusionPipeline $script:Unet }

    It 'denoises to exactly the unsharded latents' {
        $latent = $script:SdEmbedding | Invoke-Denoise -Pipeline $script:Unet -Steps 3 -Seed 11 -Height 64 -Width 64
        Assert-Same $script:SdLatent.Latents $latent.Latents 'latents'
    }

    It 'shows the module map like hf_device_map, printable as JSON' {
        $map = $script:Unet.Components.unet.DeviceMap
        $map['mid_block'] | Should -Be 'disk'
        $map['up_blocks'] | Should -Be 'disk'
        $map['down_blocks.0'] | Should -Be 'cpu'
        $map['down_blocks.1'] | Should -Be 'disk'
        $json = $map | ConvertTo-Json | ConvertFrom-Json -AsHashtable
        $json['conv_in'] | Should -Be 'cpu'
        $json.Keys | Should -Contain 'up_blocks'
        $script:Unet.DeviceMap['unet'] | Should -Be 'cpu,disk'
        $script:Unet.Components.unet.ExecutionDevice | Should -Be 'cpu'
    }
}

Describe 'CPU offload (-Offload) gives the plain images' {
    It '-Offload <_> on FLUX: encode, denoise and decode equal the plain run' -ForEach 'model', 'sequential' {
        $pipe = New-DiffusionPipeline $script:FluxTiny -Device cpu -Offload $_
        try {
            $image = Invoke-Diffusion -Pipeline $pipe -Prompt 'a red fox' -Steps 2 -Seed 3 -Height 64 -Width 64 -MaxSequenceLength 16
            Assert-Same $script:FluxImage.GetPixels() $image.GetPixels() 'image'
            $pipe.DevicePlan.Strategy | Should -Be "$_ offload"
            $pipe.Components.transformer.DeviceMap[''] | Should -Be 'cpu'
        } finally { Remove-DiffusionPipeline $pipe }
    }
}

Describe 'Pipeline-level balanced' {
    It 'places whole components; on a CPU-only machine all on cpu, same image' {
        $pipe = New-DiffusionPipeline $script:SdTiny -DeviceMap balanced
        try {
            $pipe.DeviceMap.Keys | Sort-Object | Should -Be @('text_encoder', 'unet', 'vae')
            $pipe.DeviceMap.Values | Sort-Object -Unique | Should -Be 'cpu'
            $image = 'a photo of a cat' | ConvertTo-DiffusionEmbedding -Pipeline $pipe -NegativePrompt 'blurry' |
                Invoke-Denoise -Pipeline $pipe -Steps 3 -Seed 11 -Height 64 -Width 64 | ConvertFrom-DiffusionLatent -Pipeline $pipe
            Assert-Same $script:SdImage.GetPixels() $image.GetPixels() 'image'
        } finally { Remove-DiffusionPipeline $pipe }
    }

    It 'a pipeline map (hashtable) sends the VAE to disk and still decodes the same image' {
        $pipe = New-DiffusionPipeline $script:SdTiny -DeviceMap @{ text_encoder = 'cpu'; unet = 'cpu'; vae = 'disk' }
        try {
            $pipe.DeviceMap['vae'] | Should -Be 'disk'
            $pipe.Components.vae.ExecutionDevice | Should -Be 'cpu' # runs on the CPU, weights read from the file
            $image = $script:SdLatent | ConvertFrom-DiffusionLatent -Pipeline $pipe
            Assert-Same $script:SdImage.GetPixels() $image.GetPixels() 'image'
        } finally { Remove-DiffusionPipeline $pipe }
    }
}

Describe 'Plans for GPUs without GPUs' {
    BeforeAll {
        $writer = Get-EngineType 'Diffusion.Bench.HeaderOnlyCheckpoint'
        $script:FluxDev = $writer::WriteFluxDev((Join-Path $script:Temp 'FLUX.1-dev'), 'BF16')
    }

    It 'Get-DiffusionDeviceMap plans FLUX.1-dev (12B) on a 16 GB GPU from the headers' {
        $plan = Get-DiffusionDeviceMap $script:FluxDev -Component transformer -DType bfloat16 -MaxMemory @{ 0 = '16GB'; cpu = '64GB' }
        $t = $plan.Components['transformer']
        $t.ExecutionDevice | Should -Be 'cuda:0'
        $t.OffloadedUnits.Count | Should -BeGreaterThan 0
        $gpu = $t.Devices | Where-Object Device -eq 'cuda:0'
        $gpu.Weights + $gpu.ActivationHeadroom + $gpu.StreamingBuffer | Should -BeLessOrEqual 16e9
        $plan.ToString() | Should -Match 'head-room for activations: FluxTransformer2DModel at 1024x1024'
        ($t.ToJson() | ConvertFrom-Json -AsHashtable)['transformer_blocks'] | Should -Be 'cuda:0'
        $plan.DeviceMap['transformer'] | Should -Be 'cuda:0,cpu'
    }

    It 'New-DiffusionPipeline -WhatIf prints the plan and loads nothing' {
        $script = "Import-Module '$script:ModulePath'; New-DiffusionPipeline '$script:FluxDev' -Component transformer -DType bfloat16 -DeviceMap auto -MaxMemory @{0='24GB'; 1='24GB'} -WhatIf"
        $pwsh = (Get-Process -Id $PID).Path
        $pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
        $output = (& $pwsh @pwshArgs -NoProfile -NonInteractive -Command $script 2>&1) -join "`n"
        $LASTEXITCODE | Should -Be 0
        $output | Should -Match 'What if: .*Load transformer'
        $output | Should -Match "device map 'auto', runs on cuda:0"
        $output | Should -Match '"single_transformer_blocks": "cuda:1"'
        $output | Should -Match 'activation head-room'
    }
}

Describe 'Device map errors' {
    It '<Name>' -ForEach @(
        @{ Name = 'an unknown module'; Id = 'DeviceMapUnknownModule'; Match = "'down_blocks.9'"; Run = { New-DiffusionPipeline $script:SdTiny -Component unet -DeviceMap @{ '' = 'cpu'; 'down_blocks.9' = 'disk' } } }
        @{ Name = 'a module inside a block'; Id = 'DeviceMapSplitsBlock'; Match = "inside 'mid_block'"; Run = { New-DiffusionPipeline $script:SdTiny -Component unet -DeviceMap @{ '' = 'cpu'; 'mid_block.attentions' = 'disk' } } }
        @{ Name = 'an unmapped module'; Id = 'DeviceMapUnmappedModule'; Match = 'conv_out'; Run = { New-DiffusionPipeline $script:SdTiny -Component unet -DeviceMap @{ conv_in = 'cpu'; time_embedding = 'cpu'; down_blocks = 'cpu'; mid_block = 'cpu'; up_blocks = 'cpu'; conv_norm_out = 'cpu' } } }
        @{ Name = 'a GPU this machine lacks'; Id = 'UnknownDevice'; Match = "'cuda:0', which is not a device here"; Run = { New-DiffusionPipeline $script:SdTiny -Component unet -DeviceMap @{ '' = 0 } } }
        @{ Name = 'an unknown component'; Id = 'DeviceMapUnknownComponent'; Match = "'transformer'"; Run = { New-DiffusionPipeline $script:SdTiny -DeviceMap @{ transformer = 'cpu' } } }
        @{ Name = 'a size without a unit'; Id = 'InvalidMemorySize'; Match = "'16TB'"; Run = { New-DiffusionPipeline $script:SdTiny -Component unet -DeviceMap auto -MaxMemory @{ cpu = '16TB' } } }
        @{ Name = '-MaxMemory naming a missing GPU at load'; Id = 'UnknownDevice'; Match = '-WhatIf'; Run = { New-DiffusionPipeline $script:SdTiny -Component unet -DeviceMap auto -MaxMemory @{ 1 = '8GB'; cpu = '8GB' } } }
        @{ Name = 'an unknown strategy'; Id = 'UnknownDeviceMapStrategy'; Match = 'auto, balanced, balanced_low_0, sequential'; Run = { New-DiffusionPipeline $script:SdTiny -Component unet -DeviceMap fastest } }
        @{ Name = 'a model-level strategy for a pipeline'; Id = 'DeviceMapStrategyNeedsOneComponent'; Match = '-Component unet -DeviceMap auto'; Run = { New-DiffusionPipeline $script:SdTiny -DeviceMap auto } }
        @{ Name = '-DeviceMap with -Offload'; Id = 'DeviceMapWithOffload'; Match = 'cannot be combined'; Run = { New-DiffusionPipeline $script:SdTiny -DeviceMap balanced -Offload model } }
        @{ Name = '-MaxMemory without -DeviceMap'; Id = 'MaxMemoryWithoutDeviceMap'; Match = 'add -DeviceMap'; Run = { New-DiffusionPipeline $script:SdTiny -MaxMemory @{ cpu = '8GB' } } }
    ) {
        $e = Get-ErrorRecord $Run
        $e | Should -Not -BeNullOrEmpty
        $e.FullyQualifiedErrorId | Should -BeLike "$Id,*"
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $e.ToString() | Should -Match ([regex]::Escape($Match))
    }
}
