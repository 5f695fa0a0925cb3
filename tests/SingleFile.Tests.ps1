# Single-file checkpoints and variant folders through the cmdlets, against the references of their folder forms
# (diffusers' from_single_file / from_pretrained(variant=) give the same tensors as the folders; see the fixtures' README).
# Tolerances as the folder tests: embeddings and every step's latents within 1e-4 of the tensor's scale, images 2e-3 absolute.
BeforeDiscovery {
    $fixtures = $env:DIFFUSION_FIXTURES ?? (Join-Path $PSScriptRoot '../../shared/fixtures')
    $script:SdRun = (Get-Content (Join-Path $fixtures 'sd-tiny-refs.json') -Raw | ConvertFrom-Json)[0]
    $script:VariantRun = (Get-Content (Join-Path $fixtures 'single-file/single-file-refs.json') -Raw | ConvertFrom-Json)[0]
    $script:FluxRun = (Get-Content (Join-Path $fixtures 'flux-tiny-refs.json') -Raw | ConvertFrom-Json)[0]
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:SingleFiles = Join-Path $script:Fixtures 'single-file'
    $script:SdSingle = Join-Path $script:SingleFiles 'sd-tiny.safetensors'
    $script:FluxTransformerBfl = Join-Path $script:SingleFiles 'flux-tiny-transformer-bfl.safetensors'
    $script:FluxAeBfl = Join-Path $script:SingleFiles 'flux-tiny-ae-bfl.safetensors'
    $script:SdFp16 = Join-Path $script:SingleFiles 'sd-tiny-fp16'

    # One SD reference run (PNDM, CFG) through a loaded pipeline: embeddings, step latents, image.
    function Invoke-SdReferenceRun($pipe, $run) {
        $schedulerFile = New-SchedulerConfigFile $run
        $emb = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $pipe)
        $lat = @($emb | Invoke-Denoise -Pipeline $pipe -Steps $run.steps -GuidanceScale $run.guidance_scale -Seed $run.seed `
                -Height $run.height -Width $run.width -Scheduler $schedulerFile -IncludeSteps)
        $final = @($lat | Where-Object IsFinal | Sort-Object Index)
        $img = @($final | ConvertFrom-DiffusionLatent -Pipeline $pipe)
        @{ Embeddings = $emb; Latents = $lat; Images = $img }
    }

    function Assert-SdReference($result, [string] $file) {
        $null = Assert-TensorScaled (Get-RefTensor $file 'prompt_embeds') (Join-Tensor $result.Embeddings.PromptEmbeds) 1e-4 'prompt_embeds'
        $count = Get-RefStepCount $file
        for ($i = 0; $i -lt $count; $i++) {
            $step = @($result.Latents | Where-Object { $_.Step -eq $i + 1 } | Sort-Object Index)
            $null = Assert-TensorScaled (Get-RefTensor $file "step${i}_latents") (Join-Tensor $step.Latents) 1e-4 "step $i latents"
        }
        $null = Assert-TensorClose (Get-RefTensor $file 'image') (Join-TensorStack @($result.Images.GetPixels())) 0 2e-3 'image'
    }

    function New-TempFolder {
        $dir = Join-Path ([IO.Path]::GetTempPath()) ('diffusion-singlefile-' + [guid]::NewGuid())
        New-Item -ItemType Directory $dir | Out-Null
        $dir
    }
    function Remove-TempFolder([string] $dir) {
        if ($dir -and $dir.StartsWith((Join-Path ([IO.Path]::GetTempPath()) 'diffusion-singlefile-'))) { Remove-Item -LiteralPath $dir -Recurse -Force }
    }
}

AfterAll { Clear-DiffusionMemory }

Describe 'SD 1.x from a CompVis/LDM single file (-Config folder)' -ForEach @($script:SdRun) {
    BeforeAll {
        $run = $_
        $script:Pipe = New-DiffusionPipeline $script:SdSingle -Config $script:SdTiny
        $script:Result = Invoke-SdReferenceRun $script:Pipe $run
    }
    AfterAll { if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe } }

    It 'loads every component, the models from the file and the rest from -Config' {
        $script:Pipe.Components.Keys | Sort-Object | Should -Be @('scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae')
        $script:Pipe.SingleFile | Should -Be $script:SdSingle
        $script:Pipe.Path | Should -Be $script:SdSingle
        $script:Pipe.Components.unet.Path | Should -Be $script:SdSingle
        $script:Pipe.Components.tokenizer.Path | Should -Be (Join-Path $script:SdTiny 'tokenizer')
    }

    It 'gives the folder''s reference run (<_.file>): embeddings, every step, the image' {
        Assert-SdReference $script:Result $run.file
    }

    It 'loads one stage from the file (-Component vae) and decodes the same image' {
        $vae = New-DiffusionPipeline $script:SdSingle -Config $script:SdTiny -Component vae
        try {
            $final = @($script:Result.Latents | Where-Object IsFinal | Sort-Object Index)
            $img = @($final | ConvertFrom-DiffusionLatent -Pipeline $vae)
            $null = Assert-TensorClose (Get-RefTensor $run.file 'image') (Join-TensorStack @($img.GetPixels())) 0 2e-3 'image'
        } finally { Remove-DiffusionPipeline $vae }
    }

    It 'Invoke-Diffusion -Path (the single file) -Config (the folder) gives the reference image' {
        $img = @(Invoke-Diffusion -Path $script:SdSingle -Config $script:SdTiny -Prompt $run.prompts -Steps $run.steps -GuidanceScale $run.guidance_scale `
                -Seed $run.seed -Height $run.height -Width $run.width -Scheduler (New-SchedulerConfigFile $run))
        $null = Assert-TensorClose (Get-RefTensor $run.file 'image') (Join-TensorStack @($img.GetPixels())) 0 2e-3 'image'
    }
}

Describe 'FLUX staged from BFL single files (transformer and ae), encoders from the folder' -ForEach @($script:FluxRun) {
    BeforeAll {
        $run = $_
        $common = @{ Steps = $run.steps; GuidanceScale = $run.guidance_scale; Seed = $run.seed; Height = $run.height; Width = $run.width }
        $enc = New-DiffusionPipeline $script:FluxTiny -Component text_encoder, text_encoder_2
        $script:Emb = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $enc -MaxSequenceLength $run.max_sequence_length)
        Remove-DiffusionPipeline $enc
        $script:Den = New-DiffusionPipeline $script:FluxTransformerBfl -Component transformer -Config $script:FluxTiny
        $script:Lat = @($script:Emb | Invoke-Denoise -Pipeline $script:Den @common -IncludeSteps)
        $script:Final = @($script:Lat | Where-Object IsFinal | Sort-Object Index)
        $vae = New-DiffusionPipeline $script:FluxAeBfl -Component vae -Config $script:FluxTiny
        $script:Img = @($script:Final | ConvertFrom-DiffusionLatent -Pipeline $vae)
        Remove-DiffusionPipeline $vae
    }
    AfterAll { if ($script:Den) { Remove-DiffusionPipeline $script:Den } }

    It 'every step''s packed latents and the image of <_.file>' {
        $count = Get-RefStepCount $run.file
        for ($i = 0; $i -lt $count; $i++) {
            $step = @($script:Lat | Where-Object { $_.Step -eq $i + 1 } | Sort-Object Index)
            $null = Assert-TensorScaled (Get-RefTensor $run.file "step${i}_latents") (Join-Tensor $step.Latents) 1e-4 "step $i latents"
        }
        $null = Assert-TensorClose (Get-RefTensor $run.file 'image') (Join-TensorStack @($script:Img.GetPixels())) 0 2e-3 'image'
    }

    It 'with the single blocks on disk (streamed from the fused BFL tensors), the same latents exactly' {
        $mapped = New-DiffusionPipeline $script:FluxTransformerBfl -Component transformer -Config $script:FluxTiny `
            -DeviceMap @{ '' = 'cpu'; single_transformer_blocks = 'disk' }
        try {
            $mapped.Components.transformer.DeviceMap['single_transformer_blocks'] | Should -Be 'disk'
            $lat = @($script:Emb | Invoke-Denoise -Pipeline $mapped @common | Sort-Object Index)
            $null = Assert-TensorClose (Join-Tensor $script:Final.Latents) (Join-Tensor $lat.Latents) 0 0 'latents'
        } finally { Remove-DiffusionPipeline $mapped }
    }

    It 'a whole-pipeline load from the transformer file is refused naming what it lacks' {
        { New-DiffusionPipeline $script:FluxTransformerBfl -Config $script:FluxTiny } |
            Should -Throw -ErrorId 'SingleFileComponentMissing,Diffusion.Cmdlets.NewDiffusionPipelineCommand' -ExpectedMessage '*vae (AutoencoderKL)*-Component transformer*'
    }
}

Describe 'Device-map planning from a single file''s header' {
    It 'plans the UNet of the single file as the folder''s' {
        $budget = @{ cpu = '1GB' }
        $fromFile = Get-DiffusionDeviceMap $script:SdSingle -Config $script:SdTiny -Component unet -MaxMemory $budget
        $fromFolder = Get-DiffusionDeviceMap $script:SdTiny -Component unet -MaxMemory $budget
        $fromFile.Components.unet.TotalBytes | Should -Be $fromFolder.Components.unet.TotalBytes
        $fromFile.ToJson() | Should -Be $fromFolder.ToJson()
        ($fromFile.Components.unet.Layout.Units.Path -join ',') | Should -Be ($fromFolder.Components.unet.Layout.Units.Path -join ',')
    }

    It 'plans a pipeline (balanced) from the file like the folder' {
        $fromFile = Get-DiffusionDeviceMap $script:SdSingle -Config $script:SdTiny -MaxMemory @{ cpu = '1GB' }
        $fromFolder = Get-DiffusionDeviceMap $script:SdTiny -MaxMemory @{ cpu = '1GB' }
        $fromFile.ToJson() | Should -Be $fromFolder.ToJson()
        foreach ($c in 'unet', 'vae', 'text_encoder') { $fromFile.Components[$c].TotalBytes | Should -Be $fromFolder.Components[$c].TotalBytes }
    }
}

Describe 'Variant folders (-Variant)' -ForEach @($script:VariantRun) {
    BeforeAll {
        $run = $_
        $script:Pipe = New-DiffusionPipeline $script:SdFp16 -Variant fp16
        $script:Result = Invoke-SdReferenceRun $script:Pipe $run
    }
    AfterAll { if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe } }

    It 'loads the fp16 files (computing in float32, as -DType says)' {
        $script:Pipe.Variant | Should -Be 'fp16'
        $script:Pipe.DType | Should -Be 'float32'
        $script:Pipe.Components.unet.DType | Should -Be 'float32'
    }

    It 'gives from_pretrained(variant="fp16")''s run: embeddings, every step, the image' {
        Assert-SdReference $script:Result "single-file/$($run.file)"
    }

    It 'without -Variant, a folder of only fp16 files is refused naming -Variant fp16, as diffusers refuses it' {
        { New-DiffusionPipeline $script:SdFp16 } | Should -Throw -ErrorId 'WeightsOnlyVariant,Diffusion.Cmdlets.NewDiffusionPipelineCommand' -ExpectedMessage '*-Variant fp16*'
    }

    It 'a variant no component has is refused' {
        { New-DiffusionPipeline $script:SdTiny -Variant fp16 } | Should -Throw -ErrorId 'VariantNotFound,Diffusion.Cmdlets.NewDiffusionPipelineCommand'
    }

    It 'plans from the variant files'' headers (Get-DiffusionDeviceMap -Variant)' {
        $plan = Get-DiffusionDeviceMap $script:SdFp16 -Variant fp16 -Component unet -DType float16 -MaxMemory @{ cpu = '1GB' }
        $folder = Get-DiffusionDeviceMap $script:SdTiny -Component unet -DType float16 -MaxMemory @{ cpu = '1GB' }
        $plan.Components.unet.TotalBytes | Should -Be $folder.Components.unet.TotalBytes
    }
}

Describe 'Parallel workers load the single file and the variant themselves' {
    BeforeAll {
        $script:Out = New-TempFolder
        $script:SavedThreads = $env:OMP_NUM_THREADS
        $env:OMP_NUM_THREADS = '1'
    }
    AfterAll {
        Remove-TempFolder $script:Out
        if ($null -eq $script:SavedThreads) { Remove-Item env:OMP_NUM_THREADS -ErrorAction Ignore } else { $env:OMP_NUM_THREADS = $script:SavedThreads }
    }

    It 'Invoke-Diffusion -NumProcesses 2 -Path (single file) -Config passes -Config to the workers' {
        $results = @(Invoke-Diffusion -Path $script:SdSingle -Config $script:SdTiny -Prompt 'a dog', 'a cat' -Seed 5 -Steps 2 -Height 64 -Width 64 `
                -NumProcesses 2 -OutputPath (Join-Path $script:Out 'single/{index}.png'))
        $results.Count | Should -Be 2
        ($results.ProcessRank | Sort-Object) -join ',' | Should -Be '0,1'
        $results | ForEach-Object { Test-Path -LiteralPath $_.Path | Should -BeTrue }
    }

    It 'Invoke-Diffusion -NumProcesses 2 -Variant fp16 passes -Variant to the workers (the folder has only fp16 files)' {
        $results = @(Invoke-Diffusion -Path $script:SdFp16 -Variant fp16 -Prompt 'a dog', 'a cat' -Seed 5 -Steps 2 -Height 64 -Width 64 `
                -NumProcesses 2 -OutputPath (Join-Path $script:Out 'variant/{index}.png'))
        $results.Count | Should -Be 2
        $results | ForEach-Object { Test-Path -LiteralPath $_.Path | Should -BeTrue }
    }
}

Describe 'Single-file errors' {
    It 'an unknown layout is refused naming its keys and the known layouts' {
        { New-DiffusionPipeline (Join-Path $script:SdTiny 'unet/diffusion_pytorch_model.safetensors') -Config $script:SdTiny } |
            Should -Throw -ErrorId 'SingleFileLayoutUnknown,Diffusion.Cmdlets.NewDiffusionPipelineCommand' -ExpectedMessage '*conv_in.bias*CompVis/LDM*'
    }

    It 'a single file that is not a known full-size model needs -Config' {
        { New-DiffusionPipeline $script:SdSingle } |
            Should -Throw -ErrorId 'SingleFileConfigMissing,Diffusion.Cmdlets.NewDiffusionPipelineCommand' -ExpectedMessage '*-Config*'
    }

    It 'a full-size FLUX.1-dev file without -Config is recognised and names the repo to take the configs from' {
        $dir = New-TempFolder
        try {
            # Header only (a sparse file): the keys and shapes that tell FLUX.1-dev (3072 wide, 19 double and 38 single blocks, guidance).
            $entry = { param($name, [long[]] $shape) [System.ValueTuple[string, string, long[]]]::new($name, 'BF16', $shape) }
            $tensors = [System.Collections.Generic.List[System.ValueTuple[string, string, long[]]]]::new()
            $tensors.Add((& $entry 'img_in.weight' @(3072, 64)))
            $tensors.Add((& $entry 'guidance_in.in_layer.bias' @(3072)))
            foreach ($i in 0..18) { $tensors.Add((& $entry "double_blocks.$i.img_attn.qkv.weight" @(9216, 3072))) }
            foreach ($i in 0..37) { $tensors.Add((& $entry "single_blocks.$i.linear1.weight" @(21504, 3072))) }
            $file = Join-Path $dir 'flux1-dev.safetensors'
            (Get-EngineType 'Diffusion.Bench.HeaderOnlyCheckpoint')::WriteSparse($file, $tensors)
            { New-DiffusionPipeline $file -Component transformer } |
                Should -Throw -ErrorId 'SingleFileConfigNeeded,Diffusion.Cmdlets.NewDiffusionPipelineCommand' -ExpectedMessage '*FLUX.1-dev*black-forest-labs/FLUX.1-dev*-Config*'
        } finally { Remove-TempFolder $dir }
    }

    It 'a .ckpt is refused as a pickle checkpoint' {
        $dir = New-TempFolder
        try {
            $ckpt = Join-Path $dir 'v1-5-pruned-emaonly.ckpt'
            Set-Content -LiteralPath $ckpt -Value 'not a real checkpoint'
            { New-DiffusionPipeline $ckpt -Config $script:SdTiny } |
                Should -Throw -ErrorId 'PickleWeightsRefused,Diffusion.Cmdlets.NewDiffusionPipelineCommand' -ExpectedMessage '*pickle*safetensors*'
        } finally { Remove-TempFolder $dir }
    }

    It '-Config with a model folder is refused' {
        { New-DiffusionPipeline $script:SdTiny -Config $script:SdTiny } | Should -Throw -ErrorId 'ConfigWithFolder,Diffusion.Cmdlets.NewDiffusionPipelineCommand'
    }

    It '-WhatIf on a single file names what it would load and loads nothing' {
        $out = New-DiffusionPipeline $script:SdSingle -Config $script:SdTiny -Component unet -WhatIf
        $out | Should -BeNullOrEmpty
    }
}
