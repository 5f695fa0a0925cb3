# Bad input: a clear error naming the file or parameter and the fix, a stable ErrorId, and nothing lost.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-errors-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null

    # A copy of sd-tiny whose component files tests may damage (weights are small).
    function New-DamagedCopy([string] $name) {
        $dir = Join-Path $script:Temp $name
        Copy-Item $script:SdTiny $dir -Recurse
        Get-ChildItem $dir -Recurse -File | ForEach-Object { $_.IsReadOnly = $false }
        $dir
    }

    function Get-ErrorRecord([scriptblock] $action) {
        try { & $action; $null } catch { $_ }
    }
}

AfterAll { Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'New-DiffusionPipeline errors' {
    It 'a missing folder: <_>' -ForEach @('ModelFolderNotFound') {
        $e = Get-ErrorRecord { New-DiffusionPipeline (Join-Path $script:Temp 'nope') }
        $e.FullyQualifiedErrorId | Should -BeLike "$_,*"
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e.ToString() | Should -Match 'nope'
    }

    It 'a folder without model_index.json' {
        $e = Get-ErrorRecord { New-DiffusionPipeline $script:Temp }
        $e.FullyQualifiedErrorId | Should -BeLike 'ModelIndexNotFound,*'
        $e.ToString() | Should -Match 'model_index.json'
    }

    It 'an unknown pipeline class' {
        $dir = New-DamagedCopy 'unknown-class'
        (Get-Content "$dir/model_index.json" -Raw) -replace 'StableDiffusionPipeline', 'StableDiffusion3Pipeline' | Set-Content "$dir/model_index.json"
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir }
        $e.FullyQualifiedErrorId | Should -BeLike 'UnknownPipelineClass,*'
        $e.ToString() | Should -Match 'StableDiffusion3Pipeline'
    }

    It 'an unknown component class' {
        $dir = New-DamagedCopy 'unknown-component'
        (Get-Content "$dir/model_index.json" -Raw) -replace '"UNet2DConditionModel"', '"UNet3DConditionModel"' | Set-Content "$dir/model_index.json"
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir }
        $e.FullyQualifiedErrorId | Should -BeLike 'UnknownComponentClass,*'
        $e.ToString() | Should -Match 'UNet3DConditionModel'
    }

    It 'a missing component folder' {
        $dir = New-DamagedCopy 'missing-vae'
        Remove-Item "$dir/vae" -Recurse
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir }
        $e.FullyQualifiedErrorId | Should -BeLike 'ComponentFolderNotFound,*'
        $e.ToString() | Should -Match 'vae'
    }

    It 'an unknown -Component' {
        $e = Get-ErrorRecord { New-DiffusionPipeline $script:SdTiny -Component transformer }
        $e.FullyQualifiedErrorId | Should -BeLike 'ComponentNotDeclared,*'
        $e.ToString() | Should -Match 'unet'
    }

    It 'a truncated weights file' {
        $dir = New-DamagedCopy 'truncated'
        $file = "$dir/vae/diffusion_pytorch_model.safetensors"
        $bytes = [IO.File]::ReadAllBytes($file)
        [IO.File]::WriteAllBytes($file, $bytes[0..($bytes.Length / 2)])
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component vae }
        $e.FullyQualifiedErrorId | Should -BeLike 'SafeTensorsCorrupt,*'
        $e.CategoryInfo.Category | Should -Be 'InvalidData'
        $e.ToString() | Should -Match 'diffusion_pytorch_model.safetensors'
    }

    It 'a header length past the end of the file' {
        $dir = New-DamagedCopy 'bad-header-length'
        $file = "$dir/vae/diffusion_pytorch_model.safetensors"
        $bytes = [IO.File]::ReadAllBytes($file)
        [BitConverter]::GetBytes([uint64]99999999).CopyTo($bytes, 0)
        [IO.File]::WriteAllBytes($file, $bytes)
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component vae }
        $e.FullyQualifiedErrorId | Should -BeLike 'SafeTensorsCorrupt,*'
        $e.ToString() | Should -Match 'header length'
    }

    It 'a header that is not JSON' {
        $dir = New-DamagedCopy 'bad-json'
        $file = "$dir/vae/diffusion_pytorch_model.safetensors"
        $bytes = [IO.File]::ReadAllBytes($file)
        $bytes[8] = [byte][char]'#'
        [IO.File]::WriteAllBytes($file, $bytes)
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component vae }
        $e.FullyQualifiedErrorId | Should -BeLike 'SafeTensorsCorrupt,*'
        $e.ToString() | Should -Match 'JSON'
    }

    It 'a config that does not fit the weights (shape)' {
        $dir = New-DamagedCopy 'wrong-shape'
        $cfg = Get-Content "$dir/text_encoder/config.json" -Raw | ConvertFrom-Json
        $cfg.intermediate_size = 96
        $cfg | ConvertTo-Json -Depth 5 | Set-Content "$dir/text_encoder/config.json"
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component text_encoder }
        $e.FullyQualifiedErrorId | Should -BeLike 'WeightShapeMismatch,*'
        $e.ToString() | Should -Match 'fc1'
    }

    It 'missing weight keys' {
        $dir = New-DamagedCopy 'missing-keys'
        $cfg = Get-Content "$dir/text_encoder/config.json" -Raw | ConvertFrom-Json
        $cfg.num_hidden_layers = 4
        $cfg | ConvertTo-Json -Depth 5 | Set-Content "$dir/text_encoder/config.json"
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component text_encoder }
        $e.FullyQualifiedErrorId | Should -BeLike 'WeightKeysMismatch,*'
        $e.ToString() | Should -Match 'missing'
        $e.ToString() | Should -Match 'layers\.3'
    }

    It 'unexpected weight keys' {
        $dir = New-DamagedCopy 'unexpected-keys'
        $cfg = Get-Content "$dir/text_encoder/config.json" -Raw | ConvertFrom-Json
        $cfg.num_hidden_layers = 2
        $cfg | ConvertTo-Json -Depth 5 | Set-Content "$dir/text_encoder/config.json"
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component text_encoder }
        $e.FullyQualifiedErrorId | Should -BeLike 'WeightKeysMismatch,*'
        $e.ToString() | Should -Match 'unexpected'
    }

    It 'refuses pickle checkpoints' {
        $dir = New-DamagedCopy 'pickle'
        Remove-Item "$dir/vae/diffusion_pytorch_model.safetensors"
        Set-Content "$dir/vae/diffusion_pytorch_model.bin" 'not really a pickle'
        $e = Get-ErrorRecord { New-DiffusionPipeline $dir -Component vae }
        $e.FullyQualifiedErrorId | Should -BeLike 'PickleWeightsRefused,*'
        $e.ToString() | Should -Match 'safetensors'
    }

    It 'an unknown device' {
        $e = Get-ErrorRecord { New-DiffusionPipeline $script:SdTiny -Device tpu }
        $e.FullyQualifiedErrorId | Should -BeLike 'UnknownDevice,*'
        $e.ToString() | Should -Match 'cpu'
    }

    It 'CUDA on a CPU-only backend' {
        $e = Get-ErrorRecord { New-DiffusionPipeline $script:SdTiny -Device cuda:0 }
        $e.FullyQualifiedErrorId | Should -BeLike 'CudaNotAvailable,*'
        $e.ToString() | Should -Match 'DIFFUSION_LIBTORCH'
    }

    It 'an unknown scheduler' {
        $e = Get-ErrorRecord { New-DiffusionPipeline $script:SdTiny -Scheduler lms-fancy }
        $e.FullyQualifiedErrorId | Should -BeLike 'SchedulerNameUnknown,*'
        $e.ToString() | Should -Match 'euler'
    }
}

Describe 'Stage errors' {
    BeforeAll {
        $script:Pipe = New-DiffusionPipeline $script:SdTiny
        $script:Emb = ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe 'a cat'
    }
    AfterAll { Remove-DiffusionPipeline $script:Pipe }

    It 'height <_> not a multiple of 8' -ForEach 100, 0 {
        $e = Get-ErrorRecord { $script:Emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -Height $_ -Width 64 }
        $e.FullyQualifiedErrorId | Should -BeLike 'InvalidImageSize,*'
        $e.ToString() | Should -Match 'Height'
    }

    It 'steps < 1' {
        $e = Get-ErrorRecord { $script:Emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 0 }
        $e.FullyQualifiedErrorId | Should -BeLike 'ParameterArgumentValidationError,*'
        $e.ToString() | Should -Match 'Steps'
    }

    It 'more steps than the schedule has timesteps' {
        $e = Get-ErrorRecord { $script:Emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1000 -Height 64 -Width 64 }
        $e.FullyQualifiedErrorId | Should -BeLike 'InvalidSteps,*'
        $e.ToString() | Should -Match 'at most 999'
    }

    It 'a stage whose component was not loaded says which and how to load it' {
        $vaeOnly = New-DiffusionPipeline $script:SdTiny -Component vae
        try {
            $e = Get-ErrorRecord { $script:Emb | Invoke-Denoise -Pipeline $vaeOnly -Steps 1 }
            $e.FullyQualifiedErrorId | Should -BeLike 'ComponentNotLoaded,*'
            $e.ToString() | Should -Match "-Component unet"
        } finally { Remove-DiffusionPipeline $vaeOnly }
    }

    It 'a removed pipeline' {
        $p = New-DiffusionPipeline $script:SdTiny -Component vae
        Remove-DiffusionPipeline $p
        $lat = $script:Emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 1 -Height 64 -Width 64 -Seed 1
        $e = Get-ErrorRecord { $lat | ConvertFrom-DiffusionLatent -Pipeline $p }
        $e.FullyQualifiedErrorId | Should -BeLike 'PipelineRemoved,*'
    }
}
