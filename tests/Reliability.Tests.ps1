# Nothing lost, nothing silent: native failures, non-finite output, configs that cannot work, mismatched inputs,
# seeds and prompt numbering (issue "Nothing lost, nothing hangs", items 9, 11, 12, 13 and 15).
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-reliability-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:EmbeddingType = Get-EngineType 'Diffusion.Engine.Pipelines.DiffusionEmbedding'
    $script:LatentType = Get-EngineType 'Diffusion.Engine.Pipelines.DiffusionLatent'
    $script:Writer = Get-EngineType 'Diffusion.Engine.IO.SafeTensorsWriter'
    $script:Pipe = New-DiffusionPipeline $script:SdTiny

    function New-Copy([string] $name) {
        $dir = Join-Path $script:Temp $name
        Copy-Item $script:SdTiny $dir -Recurse
        Get-ChildItem $dir -Recurse -File | ForEach-Object { $_.IsReadOnly = $false }
        $dir
    }
    function Set-JsonValue([string] $file, [string] $key, $value) {
        $json = Get-Content $file -Raw | ConvertFrom-Json -AsHashtable
        $json[$key] = $value
        $json | ConvertTo-Json -Depth 10 | Set-Content $file
    }
    function Get-ErrorRecord([scriptblock] $action) {
        try { & $action; $null } catch { $_ }
    }
    $script:ScalarType = Get-EngineType 'TorchSharp.torch+ScalarType'
    function New-Tensor([long[]] $shape, [double] $fill) { $script:Torch::full($shape, $fill, $script:ScalarType::Float32) }
    function New-Latent($tensor, [int] $height = 64, [int] $width = 64) {
        $l = $script:LatentType::new($tensor)
        # init-only properties are set through reflection, as a deserializer would.
        foreach ($p in @{ Height = $height; Width = $width; Steps = 1; Step = 1; TotalSteps = 1 }.GetEnumerator()) {
            $script:LatentType.GetProperty($p.Key).SetValue($l, $p.Value)
        }
        $l
    }
}

AfterAll {
    if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe }
    Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Native failures are errors a user can act on' {
    It 'an embedding of another width fails as NativeError of the denoising stage, without C++ frames' {
        $wrong = $script:EmbeddingType::new((New-Tensor @(1, 77, 13) 0.1), (New-Tensor @(1, 77, 13) 0.1))
        $e = Get-ErrorRecord { $wrong | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -Height 64 -Width 64 -Seed 1 }
        $e.FullyQualifiedErrorId | Should -BeLike 'NativeError,*'
        $e.CategoryInfo.Category | Should -Be 'InvalidOperation'
        $e.ToString() | Should -Match '^Denoising failed in libtorch: '
        $e.ToString() | Should -Not -Match 'frame #|Exception raised from|\.so\)'
        $e.Exception.GetType().Name | Should -Be 'DiffusionException'
    }
}

Describe 'Non-finite output is an error, not a black image' {
    It 'NaN initial latents end the denoising with NonFiniteOutput naming the image' {
        $emb = ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe 'a cat'
        $nan = New-Latent (New-Tensor @(1, 4, 8, 8) ([double]::NaN))
        $e = Get-ErrorRecord { $emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -Height 64 -Width 64 -InitialLatent $nan }
        $e.FullyQualifiedErrorId | Should -BeLike 'NonFiniteOutput,*'
        $e.ToString() | Should -Match 'Denoising gave NaN or infinite latents for image\(s\) #0'
    }

    It 'decoding NaN latents is NonFiniteOutput with the float16 advice' {
        $e = Get-ErrorRecord { New-Latent (New-Tensor @(1, 4, 8, 8) ([double]::NaN)) | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe }
        $e.FullyQualifiedErrorId | Should -BeLike 'NonFiniteOutput,*'
        $e.ToString() | Should -Match 'Decoding latents gave NaN'
        $e.ToString() | Should -Match 'force_upcast'
    }

    It 'a VAE with a NaN weight fails at decoding and writes no file' {
        $dir = New-Copy 'nan-vae'
        $file = Join-Path $dir 'vae/diffusion_pytorch_model.safetensors'
        $f = $script:SafeTensorsFile::Open($file)
        $tensors = [Collections.Generic.Dictionary[string, object]]::new()
        try { foreach ($k in $f.Tensors.Keys) { $tensors[$k] = $f.Load($k) } } finally { $f.Dispose() }
        $typed = [Activator]::CreateInstance([Collections.Generic.Dictionary`2].MakeGenericType([string], $script:TensorType))
        foreach ($k in $tensors.Keys) { $typed[$k] = $tensors[$k] }
        $typed['decoder.conv_out.bias'] = New-Tensor @($typed['decoder.conv_out.bias'].shape) ([double]::NaN)
        $script:Writer::Save($file, $typed, $null)
        $out = Join-Path $script:Temp 'nan-out.png'
        $e = Get-ErrorRecord { Invoke-Diffusion -Path $dir -Prompt 'a cat' -Steps 1 -Height 64 -Width 64 -Seed 1 -OutputPath $out }
        $e.FullyQualifiedErrorId | Should -BeLike 'NonFiniteOutput,*'
        Test-Path $out | Should -BeFalse
    }
}

Describe 'Config values that cannot work' {
    It '<Component>/<File>: <Key> = <Value> is refused naming the file, the key and the rule' -ForEach @(
        @{ Component = 'unet'; File = 'config.json'; Key = 'norm_num_groups'; Value = 7; Id = 'ModelConfigValueInvalid'; Rule = 'divide' }
        @{ Component = 'unet'; File = 'config.json'; Key = 'attention_head_dim'; Value = 0; Id = 'ModelConfigValueInvalid'; Rule = 'at least 1' }
        @{ Component = 'unet'; File = 'config.json'; Key = 'in_channels'; Value = 0; Id = 'ModelConfigValueInvalid'; Rule = 'at least 1' }
        @{ Component = 'unet'; File = 'config.json'; Key = 'block_out_channels'; Value = @(0, 64, 64); Id = 'ModelConfigValueInvalid'; Rule = 'at least 1' }
        @{ Component = 'vae'; File = 'config.json'; Key = 'scaling_factor'; Value = 0; Id = 'ModelConfigValueInvalid'; Rule = 'other than 0' }
        @{ Component = 'vae'; File = 'config.json'; Key = 'latent_channels'; Value = -4; Id = 'ModelConfigValueInvalid'; Rule = 'at least 1' }
        @{ Component = 'text_encoder'; File = 'config.json'; Key = 'num_hidden_layers'; Value = 0; Id = 'ModelConfigValueInvalid'; Rule = 'at least 1' }
    ) {
        $dir = New-Copy "config-$Component-$Key"
        $file = Join-Path $dir "$Component/$File"
        Set-JsonValue $file $Key $Value
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component $Component }
        $e.FullyQualifiedErrorId | Should -BeLike "$Id,*"
        $e.CategoryInfo.Category | Should -Be 'InvalidData'
        $e.ToString() | Should -Match ([regex]::Escape($file))
        $e.ToString() | Should -Match "'$Key'"
        $e.ToString() | Should -Match $Rule
    }

    It 'scheduler <Key> = <Value> is refused at denoising naming the file and key' -ForEach @(
        @{ Key = 'beta_start'; Value = -1 }
        @{ Key = 'beta_end'; Value = 1.5 }
        @{ Key = 'steps_offset'; Value = 100000 }
        @{ Key = 'num_train_timesteps'; Value = 0 }
    ) {
        $dir = New-Copy "sched-$Key"
        $file = Join-Path $dir 'scheduler/scheduler_config.json'
        Set-JsonValue $file $Key $Value
        $den = New-DiffusionPipeline $dir -Component unet
        try {
            $emb = ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe 'a cat'
            $e = Get-ErrorRecord { $emb | Invoke-Denoise -Pipeline $den -Steps 2 -Height 64 -Width 64 -Seed 1 }
            $e.FullyQualifiedErrorId | Should -BeLike 'SchedulerConfigValueInvalid,*'
            $e.ToString() | Should -Match ([regex]::Escape($file))
            $e.ToString() | Should -Match "'$Key'"
        }
        finally { Remove-DiffusionPipeline $den }
    }

    It 'more steps than num_train_timesteps is InvalidSteps with the limit' {
        $dir = New-Copy 'sched-few-train-steps'
        Set-JsonValue (Join-Path $dir 'scheduler/scheduler_config.json') 'num_train_timesteps' 10
        $den = New-DiffusionPipeline $dir -Component unet
        try {
            $emb = ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe 'a cat'
            $e = Get-ErrorRecord { $emb | Invoke-Denoise -Pipeline $den -Steps 20 -Height 64 -Width 64 -Seed 1 }
            $e.FullyQualifiedErrorId | Should -BeLike 'InvalidSteps,*'
            $e.ToString() | Should -Match 'Use at most 10 steps'
        }
        finally { Remove-DiffusionPipeline $den }
    }
}

Describe 'Inputs that do not fit the model' {
    It 'a tokenizer with ids beyond the text encoder''s embedding is refused at load' {
        $dir = New-Copy 'big-vocab'
        $vocabFile = Join-Path $dir 'tokenizer/vocab.json'
        $vocab = Get-Content $vocabFile -Raw | ConvertFrom-Json -AsHashtable
        $vocab['zzqx</w>'] = 1514 # the encoder has 1514 rows: ids 0..1513
        $vocab | ConvertTo-Json | Set-Content $vocabFile
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component text_encoder }
        $e.FullyQualifiedErrorId | Should -BeLike 'TokenizerEncoderMismatch,*'
        $e.ToString() | Should -Match 'ids up to 1514'
        $e.ToString() | Should -Match '1514 embedding rows'
    }

    It 'Import-DiffusionTensor refuses integer prompt_embeds' {
        $file = Join-Path $script:Temp 'ids.safetensors'
        $tensors = [Activator]::CreateInstance([Collections.Generic.Dictionary`2].MakeGenericType([string], $script:TensorType))
        $tensors['prompt_embeds'] = $script:Torch::zeros([long[]](1, 77), $script:ScalarType::Int64)
        $script:Writer::Save($file, $tensors, $null)
        $e = Get-ErrorRecord { Import-DiffusionTensor $file }
        $e.FullyQualifiedErrorId | Should -BeLike 'TensorDTypeInvalid,*'
        $e.ToString() | Should -Match 'not a floating-point tensor'
    }

    It 'ConvertFrom-DiffusionLatent refuses a latent of shape <Shape>, naming the shape it decodes' -ForEach @(
        @{ Shape = '4,8' }, @{ Shape = '1,3,8,8' }, @{ Shape = '1,4,8,8,1' }, @{ Shape = '2,4,8,8' }
    ) {
        $latent = New-Latent (New-Tensor ([long[]]($Shape -split ',')) 0.0)
        $e = Get-ErrorRecord { $latent | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe }
        $e.FullyQualifiedErrorId | Should -BeLike 'LatentShapeInvalid,*'
        $e.ToString() | Should -Match "\[$Shape\]"
        $e.ToString() | Should -Match 'decodes \[1,4,height/8,width/8\]'
    }
}

Describe 'Seeds and prompt numbering' {
    It 'Seed + index wraps modulo 2^64 as torch takes seeds: the wrapped seed gives the same image' {
        $common = @{ Pipeline = $script:Pipe; Steps = 1; Height = 64; Width = 64 }
        $wrapped = Invoke-Diffusion @common -Prompt 'a', 'b' -Seed ([long]::MaxValue) -SeedPerPrompt
        $wrapped.Parameters.Seed | Should -Be ([long]::MaxValue), ([long]::MinValue)
        $direct = Invoke-Diffusion @common -Prompt 'b' -Seed ([long]::MinValue) -SeedPerPrompt -PromptIndex 0
        $c = $script:TensorComparison::Compare($direct.GetPixels(), $wrapped[1].GetPixels(), 0, 0, 'wrapped seed')
        $c.WithinTolerance | Should -BeTrue
    }

    It 'a $null prompt is an error for that item and the prompts after it keep their index and seed' {
        $out = Join-Path $script:Temp 'nulls'
        $results = @('a', $null, 'b' | Invoke-Diffusion -Pipeline $script:Pipe -Steps 1 -Height 64 -Width 64 -Seed 5 -SeedPerPrompt `
                -OutputPath (Join-Path $out '{index:000}.png') -ErrorVariable errs -ErrorAction SilentlyContinue)
        $results.Index | Should -Be 0, 2
        $results.Seed | Should -Be 5, 7
        (Get-ChildItem $out).Name | Should -Be '000.png', '002.png'
        $errs.FullyQualifiedErrorId | Should -BeLike 'PromptNull,*'
        $errs[0].TargetObject | Should -Be 1
    }

    It 'a parallel run keeps the numbering too: index, seed and file name of the prompts after a $null' {
        $out = Join-Path $script:Temp 'nulls-parallel'
        $env:OMP_NUM_THREADS = '1'
        try {
            $results = @('a', $null, 'b' | Invoke-Diffusion -Path $script:SdTiny -NumProcesses 2 -Steps 1 -Height 64 -Width 64 -Seed 5 `
                    -OutputPath (Join-Path $out '{index:000}.png') -ErrorVariable errs -ErrorAction SilentlyContinue)
        }
        finally { Remove-Item env:OMP_NUM_THREADS }
        $results.Index | Should -Be 0, 2
        $results.Seed | Should -Be 5, 7
        (Get-ChildItem $out).Name | Should -Be '000.png', '002.png'
        @($errs | Where-Object FullyQualifiedErrorId -like 'PromptNull,*').Count | Should -Be 1
    }

    It 'ConvertTo-DiffusionEmbedding keeps the numbering too, in a batch' {
        $emb = @('a', $null, 'b' | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe -ErrorAction SilentlyContinue)
        $emb.Index | Should -Be 0, 2
        $emb.Prompt | Should -Be 'a', 'b'
    }

    It '<Command> refuses an empty <Parameter> instead of using the current folder' -ForEach @(
        @{ Command = 'Save-DiffusionImage'; Parameter = 'Path' }
        @{ Command = 'Invoke-Diffusion'; Parameter = 'OutputPath' }
        @{ Command = 'Invoke-Diffusion'; Parameter = 'Scheduler' }
        @{ Command = 'New-DiffusionPipeline'; Parameter = 'Path' }
    ) {
        $arguments = @{ $Parameter = '' }
        $e = Get-ErrorRecord { & $Command @arguments }
        $e.FullyQualifiedErrorId | Should -BeLike "ParameterArgumentValidationError*,*$($Command -replace '-', '')Command"
        $e.ToString() | Should -Match "'$Parameter'"
    }
}

Describe 'Ctrl+C during New-DiffusionPipeline' {
    BeforeAll {
        # SD 1.5's UNet as published (3.4 GB of float32), its data a sparse hole: slow enough to stop mid-way.
        $script:BigUnet = (Get-EngineType 'Diffusion.Bench.HeaderOnlyCheckpoint')::WriteStableDiffusion15Unet((Join-Path $script:Temp 'sd15-unet'))
        function Get-Resident { [Diagnostics.Process]::GetCurrentProcess().WorkingSet64 }
    }

    It 'stops between tensors and frees what it loaded, twice in a row' {
        Clear-DiffusionMemory
        $before = Get-Resident
        $ledger = (Get-DiffusionDevice cpu).AllocatedByEngine
        foreach ($attempt in 1, 2) {
            $ps = [powershell]::Create()
            try {
                $null = $ps.AddScript("Import-Module '$script:ModulePath'; New-DiffusionPipeline '$script:BigUnet'")
                $async = $ps.BeginInvoke()
                $deadline = [DateTime]::UtcNow.AddSeconds(120)
                while ((Get-Resident) -lt $before + 400MB -and -not $async.IsCompleted -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 10 }
                $clock = [Diagnostics.Stopwatch]::StartNew()
                $ps.Stop()
                $ps.InvocationStateInfo.State | Should -Be 'Stopped' -Because "attempt $attempt was still loading when stopped"
                $stopSeconds = $clock.Elapsed.TotalSeconds
                # Freed by the load itself, not left to the garbage collector: measured before any Clear-DiffusionMemory.
                $grew = (Get-Resident) - $before
                Write-Host "attempt ${attempt}: stopped in $([math]::Round($stopSeconds, 2)) s; resident +$([math]::Round($grew / 1MB)) MB"
                $stopSeconds | Should -BeLessThan 2 -Because 'loading stops after the tensor it is reading'
                # A fresh runspace importing the module costs some too; without the fix a stopped load kept ~3.2 GB here.
                $grew | Should -BeLessThan 1GB -Because "a stopped load of a 3.4 GB UNet must not stay resident"
            }
            finally { $ps.Dispose() }
        }
        (Get-DiffusionDevice cpu).AllocatedByEngine | Should -Be $ledger
    }
}

Describe 'What cannot fit is refused before it is allocated' {
    BeforeAll {
        $script:Checkpoints = Get-EngineType 'Diffusion.Bench.HeaderOnlyCheckpoint'
        function Get-Resident { [Diagnostics.Process]::GetCurrentProcess().WorkingSet64 }
    }

    It 'a 100000x100000 image is InsufficientMemory with both numbers, at once' {
        $emb = ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe 'a cat'
        $before = Get-Resident
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $e = Get-ErrorRecord { $emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -Height 100000 -Width 100000 -Seed 1 }
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
        $e.FullyQualifiedErrorId | Should -BeLike 'InsufficientMemory,*'
        $e.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        $e.ToString() | Should -Match 'Denoising at 100000x100000 \(batch 1\) needs about [\d.]+ TiB on cpu, which has [\d.]+ GiB available'
        $e.ToString() | Should -Match '-Height/-Width'
        ((Get-Resident) - $before) | Should -BeLessThan 500MB
    }

    It 'decoding latents for a 100000x100000 image is refused the same way' {
        # torch.empty: 2.5 GB of address space, untouched, so not resident.
        $big = New-Latent ($script:Torch::empty([long[]](1, 4, 12500, 12500))) -height 100000 -width 100000
        try {
            $e = Get-ErrorRecord { $big | ConvertFrom-DiffusionLatent -Pipeline $script:Pipe }
            $e.FullyQualifiedErrorId | Should -BeLike 'InsufficientMemory,*'
            $e.ToString() | Should -Match '^Decoding latents at 100000x100000'
        }
        finally { $big.Dispose() }
    }

    It 'a model larger than the memory is refused before a byte of it is read' {
        # SD 1.5's UNet at 4x its widths: 13.7B parameters, 55 GB as float32 (the file is a sparse hole).
        $dir = Join-Path $script:Temp 'huge-unet'
        New-Item -ItemType Directory $dir | Out-Null
        '{"_class_name":"StableDiffusionPipeline","unet":["diffusers","UNet2DConditionModel"]}' | Set-Content (Join-Path $dir 'model_index.json')
        $config = $script:Checkpoints::StableDiffusion15Unet -replace '"block_out_channels":\[320,640,1280,1280\]', '"block_out_channels":[1280,2560,5120,5120]'
        $script:Checkpoints::WriteComponent((Join-Path $dir 'unet'), 'UNet2DConditionModel', $config, 'diffusion_pytorch_model.safetensors', 'F32')
        $before = Get-Resident
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir }
        $e.FullyQualifiedErrorId | Should -BeLike 'InsufficientMemory,*'
        $e.ToString() | Should -Match 'UNet2DConditionModel\) as Float32 needs about [\d.]+ GiB on cpu'
        $e.ToString() | Should -Match '-DeviceMap auto'
        ((Get-Resident) - $before) | Should -BeLessThan 300MB
    }

    It 'vocab_size 1000000000000 asks for 256 TB and is refused, not allocated' {
        $dir = New-Copy 'huge-vocab'
        Set-JsonValue (Join-Path $dir 'text_encoder/config.json') 'vocab_size' 1000000000000
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component text_encoder }
        $e.FullyQualifiedErrorId | Should -BeLike 'InsufficientMemory,*'
        $e.ToString() | Should -Match 'needs about 2\d\d\.\d\d TiB'
    }
}
