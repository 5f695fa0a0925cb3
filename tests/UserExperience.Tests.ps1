# PowerShell as its users expect (issue #11, items 2, 5, 6, 7): piped rows bind by property name, one bad item is an
# error for that item alone, -Verbose / -Debug say what was resolved and how long it took, and progress shows the
# steps asked for, per rank in a parallel run.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-ux-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:Pipe = New-DiffusionPipeline $script:SdTiny
    $script:Small = @{ Steps = 1; Height = 64; Width = 64 }

    # Runs a script in a runspace of its own with the module imported, and returns its output and its streams
    # (PowerShell.Streams keeps every progress record; the host would only draw them).
    function Invoke-Captured([string] $script) {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$script:ModulePath'; `$ProgressPreference = 'Continue'; $script")
            $output = $ps.Invoke()
            [pscustomobject]@{
                Output = $output; Progress = @($ps.Streams.Progress); Errors = @($ps.Streams.Error); Information = @($ps.Streams.Information)
                Verbose = @($ps.Streams.Verbose.Message)
            }
        }
        finally { $ps.Dispose() }
    }
}

AfterAll {
    if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe }
    if ($script:Temp -and (Split-Path $script:Temp -Leaf).StartsWith('diffusion-ux-')) { Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'Piped rows bind by property name' {
    BeforeAll {
        $script:Csv = Join-Path $script:Temp 'prompts.csv'
        @(
            'Prompt,NegativePrompt,Seed,Steps,GuidanceScale,Width,Height,Comment'
            'a red cube,,11,2,5,96,64,first'
            'a blue ball,blurry,,,,,,second'
        ) | Set-Content $script:Csv
    }

    It 'Import-Csv rows: each row''s values apply to that row, the command line''s to the cells left empty' {
        $images = @(Import-Csv $script:Csv | Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Seed 5 -GuidanceScale 7.5)
        $images.Count | Should -Be 2
        $images.Index | Should -Be 0, 1
        $first, $second = $images.Parameters
        $first.Prompt | Should -Be 'a red cube'
        $first.Seed | Should -Be 11
        $first.Steps | Should -Be 2
        $first.GuidanceScale | Should -Be 5
        $first.Width | Should -Be 96
        $first.Height | Should -Be 64
        $second.Prompt | Should -Be 'a blue ball'
        $second.NegativePrompt | Should -Be 'blurry'
        $second.Seed | Should -Be 5
        $second.Steps | Should -Be 1
        $second.GuidanceScale | Should -Be 7.5
        $second.Width | Should -Be 64
    }

    It 'a row''s image is the image of the same values given on the command line' {
        $row = @([pscustomobject]@{ Prompt = 'a red cube'; Seed = '11'; GuidanceScale = '5' } | Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Seed 5)
        $direct = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a red cube' -Seed 11 -GuidanceScale 5 @script:Small)
        Assert-TensorClose $direct[0].GetPixels() $row[0].GetPixels() 0 0 'row image vs command-line image' | Out-Null
    }

    It 'a row''s OutputPath and the template''s {index} and {seed}' {
        $own = Join-Path $script:Temp 'rows/own.png'
        $rows = @([pscustomobject]@{ Prompt = 'a'; Seed = 7 }, [pscustomobject]@{ Prompt = 'b'; OutputPath = $own })
        $r = @($rows | Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Seed 1 -OutputPath (Join-Path $script:Temp 'rows/{index}-{seed}.png'))
        $r.Path | Should -Be (Join-Path $script:Temp 'rows/0-7.png'), $own
        $r.Path | ForEach-Object { Test-Path $_ | Should -BeTrue }
    }

    It 'strings still work: piped, and as -Prompt' {
        $piped = @('x', 'y' | Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Seed 2)
        $piped.Parameters.Prompt | Should -Be 'x', 'y'
        $piped.Index | Should -Be 0, 1
        (Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Seed 2 -Prompt 'x', 'y').Parameters.Prompt | Should -Be 'x', 'y'
    }

    It 'Split-Prompt''s shares keep their global Index: seeds and file names of this rank' {
        $out = Join-Path $script:Temp 'share/{index:0000}.png'
        $r = @('p0', 'p1', 'p2', 'p3' | Split-Prompt -ProcessIndex 1 -NumProcesses 2 |
            Invoke-Diffusion -Pipeline $script:Pipe @script:Small -SeedPerPrompt -Seed 100 -OutputPath $out)
        $r.Index | Should -Be 2, 3
        $r.Seed | Should -Be 102, 103
        $r.Prompt | Should -Be 'p2', 'p3'
        Split-Path $r.Path -Leaf | Should -Be '0002.png', '0003.png'
    }

    It 'staged: ConvertTo-DiffusionEmbedding keeps a share''s Index, which Invoke-Denoise -SeedPerPrompt seeds with' {
        $emb = @('p0', 'p1', 'p2' | Split-Prompt -ProcessIndex 1 -NumProcesses 2 | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe)
        $emb.Index | Should -Be 2
        $emb.Prompt | Should -Be 'p2'
        ($emb | Invoke-Denoise -Pipeline $script:Pipe @script:Small -SeedPerPrompt -Seed 100).Seed | Should -Be 102
    }

    It 'no prompt at all, or -Prompt and piped prompts at once, is refused' {
        { Invoke-Diffusion -Pipeline $script:Pipe @script:Small } | Should -Throw -ErrorId 'PromptMissing,*'
        { 'a' | Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Prompt 'b' } | Should -Throw -ErrorId 'PromptAndPipelineInput,*'
    }

    It 'an object without a Prompt property is an error for it, not the prompt ''System.Collections.Hashtable''' {
        $images = @(@{ Text = 'no prompt here' }, @{ Prompt = 'a hashtable row'; Seed = 4 } |
            Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Seed 1 -ErrorVariable errs -ErrorAction SilentlyContinue)
        $errs.Count | Should -Be 1
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'PromptPropertyMissing,*'
        $errs[0].ToString() | Should -Match 'without a Prompt property \(it has: Text\)'
        $images.Count | Should -Be 1
        $images[0].Parameters.Prompt | Should -Be 'a hashtable row'
        $images[0].Parameters.Seed | Should -Be 4
        $images[0].Index | Should -Be 1
    }
}

Describe 'One bad item is an error for that item' {
    It 'New-DiffusionPipeline: -ErrorAction SilentlyContinue silences a missing folder' {
        $p = New-DiffusionPipeline (Join-Path $script:Temp 'nope') -ErrorAction SilentlyContinue -ErrorVariable errs
        $p | Should -BeNullOrEmpty
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'ModelFolderNotFound,*'
        { New-DiffusionPipeline (Join-Path $script:Temp 'nope') -ErrorAction Stop } | Should -Throw -ErrorId 'ModelFolderNotFound,*'
    }

    It 'New-DiffusionPipeline: a bad folder among several piped, the others load' {
        $loaded = @((Join-Path $script:Temp 'nope'), $script:SdTiny | New-DiffusionPipeline -Component vae -ErrorVariable errs -ErrorAction SilentlyContinue)
        try {
            $loaded.Count | Should -Be 1
            $loaded[0].Components.Keys | Should -Be 'vae'
            $errs.Count | Should -Be 1
            $errs[0].ToString() | Should -Match 'nope'
        }
        finally { $loaded | Remove-DiffusionPipeline }
    }

    It 'Invoke-Diffusion: bad rows among many are errors for them; the others keep their index' {
        $rows = @(
            [pscustomobject]@{ Prompt = 'fine 0' }
            [pscustomobject]@{ Prompt = 'steps not a number'; Steps = 'many' }
            [pscustomobject]@{ Prompt = 'height not a multiple of 8'; Height = 60 }
            [pscustomobject]@{ Prompt = 'fine 3' }
        )
        $images = @($rows | Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Seed 1 -ErrorVariable errs -ErrorAction SilentlyContinue)
        $images.Index | Should -Be 0, 3
        $images.Parameters.Prompt | Should -Be 'fine 0', 'fine 3'
        $errs.FullyQualifiedErrorId | ForEach-Object { ($_ -split ',')[0] } | Should -Be 'PromptRowValueInvalid', 'InvalidImageSize'
        $errs[0].ToString() | Should -Match "Steps 'many'"
        { $rows | Invoke-Diffusion -Pipeline $script:Pipe @script:Small -Seed 1 -ErrorAction Stop } | Should -Throw -ErrorId 'PromptRowValueInvalid,*'
    }
}

Describe '-Verbose and -Debug' {
    It 'say the device, dtype, scheduler with its settings, each component''s load, each stage''s time and the seeds' {
        $records = Invoke-Diffusion -Path $script:SdTiny -Prompt 'a', 'b' @script:Small -SeedPerPrompt -Seed 40 -Verbose -Debug 4>&1 5>&1 | Where-Object {
            $_ -is [System.Management.Automation.VerboseRecord] -or $_ -is [System.Management.Automation.DebugRecord] }
        $verbose = ($records | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n"
        $debug = ($records | Where-Object { $_ -is [System.Management.Automation.DebugRecord] }).Message -join "`n"
        $verbose | Should -Match 'device cpu, dtype float32'
        $verbose | Should -Match 'scheduler PNDMScheduler: num_train_timesteps 1000, beta_schedule scaled_linear \(0\.00085 to 0\.012\), prediction_type epsilon, timestep_spacing leading, steps_offset 1, skip_prk_steps true'
        foreach ($component in 'text_encoder \(CLIPTextModel\)', 'unet \(UNet2DConditionModel\)', 'vae \(AutoencoderKL\)') {
            $verbose | Should -Match "$component on cpu as float32: loaded in \d+\.\d+ s, \d+(\.\d+)? [KM]iB read"
        }
        $verbose | Should -Match 'Encoded #0 in \d+\.\d+ s'
        $verbose | Should -Match 'Denoised image #0 \(64x64, guidance 7\.5\) in \d+\.\d+ s with seed 40'
        $verbose | Should -Match 'Denoised image #1 .* with seed 41'
        $verbose | Should -Match 'Decoded #1 in \d+\.\d+ s'
        $debug | Should -Match 'Engine memory after loading: cpu \d'
        $debug | Should -Match 'Engine memory after denoising'
        $debug | Should -Match 'Timesteps run: 1\.'
    }

    It 'New-DiffusionPipeline -Verbose lists the components it loaded' {
        $lines = (New-DiffusionPipeline $script:SdTiny -Component vae -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message
        $lines -join "`n" | Should -Match 'vae \(AutoencoderKL\) on cpu as float32: loaded in'
    }
}

Describe 'Progress' {
    It 'PNDM counts the steps asked for, as diffusers'' progress bar does; -IncludeSteps labels agree with the help' {
        $run = Invoke-Captured "`$p = New-DiffusionPipeline '$script:SdTiny'; `$p | Out-Null; ConvertTo-DiffusionEmbedding -Pipeline `$p 'a' | Invoke-Denoise -Pipeline `$p -Steps 3 -Height 64 -Width 64 -Seed 1 -IncludeSteps"
        $steps = @($run.Progress | Where-Object { $_.Activity -like 'Denoising*' -and $_.RecordType -eq 'Processing' })
        $steps.StatusDescription | ForEach-Object { $_ -replace ' \(t=.*', '' } | Should -Be 'step 0/3', 'step 1/3', 'step 2/3', 'step 3/3'
        $steps[-1].PercentComplete | Should -Be 100
        # Latents: one per model evaluation; PNDM's 3 steps evaluate the model 4 times (its first timestep repeats).
        $latents = @($run.Output)
        $latents.Step | Should -Be 1, 2, 3, 4
        $latents.TotalSteps | Should -Be 4, 4, 4, 4
        $latents.Steps | Should -Be 3, 3, 3, 3
        $latents.IsFinal | Should -Be $false, $false, $false, $true
        (Get-Help Invoke-Denoise -Parameter IncludeSteps).Description.Text | Should -Match 'Step below TotalSteps'
    }

    It 'a parallel run: a bar per rank with its step, its images and its device, under an overall bar; rows keep their values; -Verbose reaches the workers' {
        $csv = Join-Path $script:Temp 'parallel.csv'
        @('Prompt,Seed,Steps', 'a,11,2', 'b,,', 'c,,') | Set-Content $csv
        $out = Join-Path $script:Temp 'parallel/{index}-{seed}.png'
        $env:OMP_NUM_THREADS = '1'
        try {
            $run = Invoke-Captured "Import-Csv '$csv' | Invoke-Diffusion -Path '$script:SdTiny' -Steps 3 -Height 64 -Width 64 -Seed 20 -NumProcesses 2 -OutputPath '$out' -Verbose"
        }
        finally { Remove-Item env:OMP_NUM_THREADS }
        $run.Errors | Should -BeNullOrEmpty
        $run.Output.Seed | Should -Be 11, 21, 22
        $run.Output.ProcessRank | Should -Be 0, 0, 1

        $ranks = @($run.Progress | Where-Object ParentActivityId -eq 7100)
        $stepBars = @($ranks | Where-Object StatusDescription -like 'step *')
        $stepBars.Activity | Sort-Object -Unique | Should -Be 'Rank 0 (cpu)', 'Rank 1 (cpu)'
        $ranks.Activity | Should -Not -Match 'auto'
        # Rank 0 makes 'a' (its row's 2 steps) then 'b' (3); rank 1 makes 'c'.
        $rank0 = @($stepBars | Where-Object Activity -eq 'Rank 0 (cpu)').StatusDescription
        $rank0 | Should -Contain 'step 2/2 · 0/2 images'
        $rank0 | Should -Contain 'step 3/3 · 1/2 images'
        @($stepBars | Where-Object Activity -eq 'Rank 1 (cpu)').StatusDescription | Should -Be 'step 0/3 · 0/1 images', 'step 1/3 · 0/1 images', 'step 2/3 · 0/1 images', 'step 3/3 · 0/1 images'
        $overall = @($run.Progress | Where-Object ActivityId -eq 7100)
        $overall.StatusDescription | Should -Contain '0/3 images'
        $overall[-1].StatusDescription | Should -Be '3/3 images'
        $overall[-1].RecordType | Should -Be 'Completed'
        # The overall bar moves with the steps, before the first image is done.
        @($overall | Where-Object { $_.StatusDescription -eq '0/3 images' -and $_.PercentComplete -gt 0 }).Count | Should -BeGreaterThan 0
        # The workers' step reports are the parent's: they are not passed on as information records.
        $run.Information | Should -BeNullOrEmpty
        $verbose = $run.Verbose -join "`n"
        $verbose | Should -Match '\[rank 0\] Loaded StableDiffusionPipeline .* device cpu, dtype float32'
        $verbose | Should -Match '\[rank 1\] Denoised image #2 \(64x64, guidance 7\.5\) in \d+\.\d+ s with seed 22'
    }
}
