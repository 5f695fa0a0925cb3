# The backend: an external libtorch folder ($env:DIFFUSION_LIBTORCH, how a CUDA user points at PyTorch), clear errors for
# a bad one, and reduced precision staying close to float32.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Pwsh = (Get-Process -Id $PID).Path
    $script:PwshArgs = @(if ((Split-Path $script:Pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
    function Invoke-Child([string] $script, [hashtable] $environment) {
        $saved = @{}
        foreach ($k in $environment.Keys) { $saved[$k] = [Environment]::GetEnvironmentVariable($k); [Environment]::SetEnvironmentVariable($k, $environment[$k]) }
        try { & $script:Pwsh @script:PwshArgs -NoProfile -NonInteractive -Command "Import-Module '$script:ModulePath'; $script" 2>&1 | Out-String }
        finally { foreach ($k in $saved.Keys) { [Environment]::SetEnvironmentVariable($k, $saved[$k]) } }
    }
    # A libtorch folder outside the module: the restored libtorch-cpu package, as a PyTorch torch/lib would be.
    $packages = ((dotnet nuget locals global-packages --list) -replace '^global-packages:\s*', '').Trim()
    $script:ExternalLibTorch = Join-Path $packages 'libtorch-cpu-linux-x64/2.10.0/runtimes/linux-x64/native'
}

Describe 'Backend selection' {
    It 'loads libtorch from $env:DIFFUSION_LIBTORCH and says so' -Skip:(-not $IsLinux) {
        Test-Path (Join-Path $script:ExternalLibTorch 'libtorch_cpu.so') | Should -BeTrue
        $out = Invoke-Child "Get-DiffusionDevice cpu | ForEach-Object { `$_.Backend + '|' + `$_.LibTorchPath }; (Invoke-Diffusion -Path '$script:SdTiny' -Prompt 'a cat' -Steps 1 -Seed 1 -Height 64 -Width 64).Width" @{ DIFFUSION_LIBTORCH = $script:ExternalLibTorch }
        $out | Should -Match ([regex]::Escape('$DIFFUSION_LIBTORCH|' + $script:ExternalLibTorch))
        $out | Should -Match '(?m)^64\s*$'
    }

    It 'a folder that does not exist: a clear error, before any native load' {
        $out = Invoke-Child "try { Get-DiffusionDevice } catch { `$_.FullyQualifiedErrorId; `$_.ToString() }" @{ DIFFUSION_LIBTORCH = '/nonexistent/torch/lib' }
        $out | Should -Match 'LibTorchFolderNotFound'
        $out | Should -Match 'torch/lib'
    }

    It 'a folder without libtorch: says which library is missing' {
        $out = Invoke-Child "try { Get-DiffusionDevice } catch { `$_.FullyQualifiedErrorId; `$_.ToString() }" @{ DIFFUSION_LIBTORCH = $script:SdTiny }
        $out | Should -Match 'LibTorchIncomplete'
        $out | Should -Match 'libc10'
    }

    It 'Initialize-DiffusionBackend refuses to swap a loaded backend' {
        $e = $null
        try { Initialize-DiffusionBackend -LibTorchPath $script:SdTiny } catch { $e = $_ }
        $e.FullyQualifiedErrorId | Should -BeLike 'BackendAlreadyLoaded,*'
    }
}

Describe 'Reduced precision' {
    # libtorch's CPU randn draws other numbers in float16/bfloat16 (diffusers draws noise in the model's dtype too), so
    # every dtype starts here from the same float32 noise (-InitialLatent, diffusers' latents=) and only the math differs.
    BeforeAll {
        $latentType = Get-EngineType 'Diffusion.Engine.Pipelines.DiffusionLatent'
        $noise = (Get-RefTensor 'sd-tiny-ref-pndm.safetensors' 'init_noise').narrow(0, 0, 1).contiguous()
        $script:SdNoise = $latentType::new($noise)
        function Invoke-Sd([string] $dtype) {
            $p = New-DiffusionPipeline $script:SdTiny -DType $dtype
            try {
                ConvertTo-DiffusionEmbedding -Pipeline $p 'a photo of a dog' |
                    Invoke-Denoise -Pipeline $p -Steps 3 -Height 128 -Width 128 -InitialLatent $script:SdNoise |
                    ConvertFrom-DiffusionLatent -Pipeline $p
            } finally { Remove-DiffusionPipeline $p }
        }
        $script:SdReference = Invoke-Sd 'float32'
    }

    It 'SD in <Name> stays within <Tolerance> of float32 (max |diff| of the image)' -ForEach @(
        @{ Name = 'bfloat16'; Tolerance = 5e-2 }, @{ Name = 'float16'; Tolerance = 1e-2 }) {
        $img = Invoke-Sd $Name
        $c = Assert-TensorClose $script:SdReference.GetPixels() $img.GetPixels() 0 $Tolerance "image in $Name"
        $c.MaxAbsDifference | Should -BeGreaterThan 0 # it really ran in reduced precision
    }

    It 'FLUX in bfloat16 stays within 5e-2 of float32' {
        $latentType = Get-EngineType 'Diffusion.Engine.Pipelines.DiffusionLatent'
        $noise = $latentType::new((Get-RefTensor 'flux-tiny-ref-a.safetensors' 'step0_latents'))
        $run = { param($dtype)
            $p = New-DiffusionPipeline $script:FluxTiny -DType $dtype
            try {
                ConvertTo-DiffusionEmbedding -Pipeline $p 'a dog' -MaxSequenceLength 16 |
                    Invoke-Denoise -Pipeline $p -Steps 2 -Height 128 -Width 128 -InitialLatent $noise | ConvertFrom-DiffusionLatent -Pipeline $p
            } finally { Remove-DiffusionPipeline $p }
        }
        $ref = & $run 'float32'
        $img = & $run 'bfloat16'
        $c = Assert-TensorClose $ref.GetPixels() $img.GetPixels() 0 5e-2 'FLUX image in bfloat16'
        $c.MaxAbsDifference | Should -BeGreaterThan 0
    }

    It '-InitialLatent with the reference noise gives the reference run (float32)' {
        $run = (Get-RefRun 'sd-tiny')[0]
        $latentType = Get-EngineType 'Diffusion.Engine.Pipelines.DiffusionLatent'
        $noise = Get-RefTensor $run.file 'init_noise'
        $initial = 0, 1 | ForEach-Object { $latentType::new($noise.narrow(0, $_, 1).contiguous()) }
        $p = New-DiffusionPipeline $script:SdTiny
        try {
            $lat = @($run.prompts | ConvertTo-DiffusionEmbedding -Pipeline $p | Invoke-Denoise -Pipeline $p -Steps $run.steps -Height $run.height -Width $run.width -InitialLatent $initial)
            $last = (Get-RefStepCount $run.file) - 1
            $null = Assert-TensorScaled (Get-RefTensor $run.file "step${last}_latents") (Join-Tensor $lat.Latents) 1e-4 'final latents'
        } finally { Remove-DiffusionPipeline $p }
    }
}
