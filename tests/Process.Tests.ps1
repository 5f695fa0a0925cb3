# Stages in separate processes, and Ctrl+C during denoising.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-proc-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:Pwsh = (Get-Process -Id $PID).Path
    $script:PwshArgs = @(if ((Split-Path $script:Pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })

    function Invoke-Stage([string] $script) {
        $full = "`$ErrorActionPreference = 'Stop'; Import-Module '$script:ModulePath'; $script"
        $output = & $script:Pwsh @script:PwshArgs -NoProfile -NonInteractive -Command $full 2>&1
        if ($LASTEXITCODE -ne 0) { throw "stage failed ($LASTEXITCODE): $output" }
        $output
    }
}

AfterAll { Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Staged inference in three processes' {
    It 'encode, denoise and decode in separate pwsh processes give the one-process image' {
        $emb = Join-Path $script:Temp 'emb.safetensors'
        $lat = Join-Path $script:Temp 'lat.safetensors'
        $png = Join-Path $script:Temp 'staged.png'
        Invoke-Stage "`$p = New-DiffusionPipeline '$script:SdTiny' -Component text_encoder; 'a photo of a dog', 'a cat' | ConvertTo-DiffusionEmbedding -Pipeline `$p -NegativePrompt 'blurry' | Export-DiffusionTensor '$emb'" | Out-Null
        Invoke-Stage "`$p = New-DiffusionPipeline '$script:SdTiny' -Component unet; Import-DiffusionTensor '$emb' | Invoke-Denoise -Pipeline `$p -Steps 3 -Seed 5 -Height 64 -Width 64 | Export-DiffusionTensor '$lat'" | Out-Null
        Invoke-Stage "`$p = New-DiffusionPipeline '$script:SdTiny' -Component vae; Import-DiffusionTensor '$lat' | ConvertFrom-DiffusionLatent -Pipeline `$p | Select-Object -First 1 | Save-DiffusionImage '$png'" | Out-Null

        $pipe = New-DiffusionPipeline $script:SdTiny
        try {
            $image = 'a photo of a dog', 'a cat' | ConvertTo-DiffusionEmbedding -Pipeline $pipe -NegativePrompt 'blurry' |
                Invoke-Denoise -Pipeline $pipe -Steps 3 -Seed 5 -Height 64 -Width 64 | ConvertFrom-DiffusionLatent -Pipeline $pipe | Select-Object -First 1
            $one = Join-Path $script:Temp 'one.png'
            $image | Save-DiffusionImage $one | Out-Null
        } finally { Remove-DiffusionPipeline $pipe }
        # Same PNG bytes: same pixels and same parameters.
        (Get-FileHash $png).Hash | Should -Be (Get-FileHash $one).Hash
    }
}

Describe 'FLUX staged in three processes' {
    It 'encode, denoise and decode, each in its own pwsh, give diffusers'' image (flux-tiny-ref-a, 2e-3)' {
        $run = (Get-RefRun 'flux-tiny')[0]
        $emb = Join-Path $script:Temp 'flux-emb.safetensors'
        $lat = Join-Path $script:Temp 'flux-lat.safetensors'
        $png = Join-Path $script:Temp 'flux.png'
        Invoke-Stage "`$p = New-DiffusionPipeline '$script:FluxTiny' -Component text_encoder, text_encoder_2; '$($run.prompts[0])' | ConvertTo-DiffusionEmbedding -Pipeline `$p -MaxSequenceLength $($run.max_sequence_length) | Export-DiffusionTensor '$emb'" | Out-Null
        Invoke-Stage "`$p = New-DiffusionPipeline '$script:FluxTiny' -Component transformer; Import-DiffusionTensor '$emb' | Invoke-Denoise -Pipeline `$p -Steps $($run.steps) -GuidanceScale $($run.guidance_scale) -Seed $($run.seed) -Height $($run.height) -Width $($run.width) | Export-DiffusionTensor '$lat'" | Out-Null
        Invoke-Stage "`$p = New-DiffusionPipeline '$script:FluxTiny' -Component vae; Import-DiffusionTensor '$lat' | ConvertFrom-DiffusionLatent -Pipeline `$p | Save-DiffusionImage '$png'" | Out-Null

        $f = $script:SafeTensorsFile::Open($lat)
        try { $null = Assert-TensorScaled (Get-RefTensor $run.file 'packed_latents') $f.Load('latents') 1e-4 'packed_latents' } finally { $f.Dispose() }
        # The saved PNG carries the run's parameters, and its bytes equal a decode of the exported latents here.
        $params = $script:DiffusionImageType::ReadParameters($png)
        $params.Seed | Should -Be $run.seed
        $params.Width | Should -Be $run.width
        $vae = New-DiffusionPipeline $script:FluxTiny -Component vae
        try {
            $image = Import-DiffusionTensor $lat | ConvertFrom-DiffusionLatent -Pipeline $vae
            $null = Assert-TensorClose (Get-RefTensor $run.file 'image') ($image.GetPixels().unsqueeze(0)) 0 2e-3 'image'
            $saved = [IO.File]::ReadAllBytes($png)
            $saved | Should -Be $image.EncodePng()
        } finally { Remove-DiffusionPipeline $vae }
    }
}

Describe 'Ctrl+C during denoising' {
    It 'stops after the current step and frees the run''s memory' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript(@"
Import-Module '$script:ModulePath'
`$p = New-DiffusionPipeline '$script:SdTiny'
`$e = ConvertTo-DiffusionEmbedding -Pipeline `$p 'a cat'
Clear-DiffusionMemory # the ledger is per process: settle what earlier tests left for the collector
`$global:before = (Get-DiffusionDevice cpu).AllocatedByEngine
`$e | Invoke-Denoise -Pipeline `$p -Steps 900 -Height 256 -Width 256 -Seed 1
"@)
            $async = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(120)
            # Loading writes progress too: wait for the denoising steps themselves.
            while (@($ps.Streams.Progress | Where-Object StatusDescription -like 'step *').Count -lt 3 -and -not $async.IsCompleted -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
            $ps.Stop()
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            $steps = @($ps.Streams.Progress | Where-Object { $_.StatusDescription -match '^step (\d+)/' } | ForEach-Object { [int]$Matches[1] })
            ($steps | Measure-Object -Maximum).Maximum | Should -BeLessThan 900
            $before = $ps.Runspace.SessionStateProxy.GetVariable('before')
            $before | Should -BeGreaterThan 0
            (Get-DiffusionDevice cpu).AllocatedByEngine | Should -Be $before
        } finally { $ps.Dispose() }
    }
}
