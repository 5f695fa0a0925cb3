# What users see of the objects: real properties behind every column, 80-column tables, clean JSON/CSV, file objects
# as Get-Item gives them, and memory figures that are the process's own.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-objects-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:Pipe = New-DiffusionPipeline $script:SdTiny
    $script:Img = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a dog', 'a cat on a mat' -Steps 2 -Seed 1 -Height 64 -Width 64)
    $script:Emb = @('a dog' | ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe)
    $script:Lat = @($script:Emb | Invoke-Denoise -Pipeline $script:Pipe -Steps 2 -Seed 1 -Height 64 -Width 64)

    # The column labels of a table view in the module's format file.
    $script:Views = @{}
    foreach ($view in ([xml](Get-Content (Join-Path $script:ModulePath 'Diffusion.format.ps1xml') -Raw)).Configuration.ViewDefinitions.View) {
        if ($view.TableControl) { $script:Views[$view.Name] = @($view.TableControl.TableHeaders.TableColumnHeader.Label) }
    }
}

AfterAll {
    foreach ($l in $script:Lat) { $l.Dispose() }
    foreach ($e in $script:Emb) { $e.Dispose() }
    Remove-DiffusionPipeline $script:Pipe
    if ($script:Temp.StartsWith([IO.Path]::GetTempPath()) -and (Split-Path $script:Temp -Leaf).StartsWith('diffusion-objects-')) {
        Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
    }
}

Describe 'Image objects' {
    It 'have Seed, Prompt, Size and Steps as properties that Where-Object and Select-Object see' {
        @($script:Img | Where-Object Seed -eq 1).Count | Should -Be 2
        @($script:Img | Where-Object Prompt -like '*cat*').Index | Should -Be 1
        $row = $script:Img[1] | Select-Object Seed, Prompt, Size, Steps, Sampler, BatchSize, BatchPosition
        $row.Seed | Should -Be 1
        $row.Prompt | Should -Be 'a cat on a mat'
        $row.Size | Should -Be '64x64'
        $row.Steps | Should -Be 2
        $row.Sampler | Should -Be 'PLMS'
        $row.BatchSize | Should -Be 2
        $row.BatchPosition | Should -Be 1
    }

    It 'serialize to JSON and CSV without pixels or tensor handles' {
        $json = $script:Img[0] | ConvertTo-Json -Depth 3
        $json.Length | Should -BeLessThan 3000
        $parsed = $json | ConvertFrom-Json
        $parsed.Seed | Should -Be 1
        $parsed.Size | Should -Be '64x64'
        $parsed.PSObject.Properties.Name | Should -Not -Contain 'Rgb'
        $parsed.PSObject.Properties.Name | Should -Not -Contain 'Pixels'
        $json | Should -Not -Match 'TorchSharp|Handle'
        $csv = $script:Img | ConvertTo-Csv
        $csv.Count | Should -Be 3
        ($csv -join "`n") | Should -Not -Match 'System\.Byte|TorchSharp'
        ($csv | ConvertFrom-Csv)[1].Prompt | Should -Be 'a cat on a mat'
        $script:Img[0].GetRgb().Length | Should -Be (64 * 64 * 3)
    }

    It 'serialize the model family by name' {
        ($script:Pipe | Select-Object Name, Family | ConvertTo-Json | ConvertFrom-Json).Family | Should -Be 'StableDiffusion'
        ($script:Emb[0] | ConvertTo-Json -Depth 1 -WarningAction SilentlyContinue | ConvertFrom-Json).Family | Should -Be 'StableDiffusion'
        ($script:Lat[0] | ConvertTo-Json -Depth 1 -WarningAction SilentlyContinue | ConvertFrom-Json).Family | Should -Be 'StableDiffusion'
    }
}

Describe 'Default views' {
    It 'show only real properties of <Name>, within 80 columns' -ForEach @(
        @{ Name = 'DiffusionImage'; View = 'Diffusion.Engine.Imaging.DiffusionImage'; Get = { $script:Img } }
        @{ Name = 'DiffusionPipeline'; View = 'Diffusion.Engine.Pipelines.DiffusionPipeline'; Get = { $script:Pipe } }
        @{ Name = 'PipelineComponent'; View = 'Diffusion.Engine.Pipelines.PipelineComponent'; Get = { $script:Pipe.Components.Values } }
        @{ Name = 'DiffusionEmbedding'; View = 'Diffusion.Engine.Pipelines.DiffusionEmbedding'; Get = { $script:Emb } }
        @{ Name = 'DiffusionLatent'; View = 'Diffusion.Engine.Pipelines.DiffusionLatent'; Get = { $script:Lat } }
        @{ Name = 'DeviceInfo'; View = 'Diffusion.Engine.Devices.DeviceInfo'; Get = { Get-DiffusionDevice } }
        @{ Name = 'PromptTokens'; View = 'Diffusion.Engine.Tokenizers.PromptTokens'; Get = { Get-DiffusionPromptToken -Path $script:SdTiny -Prompt 'a dog' } }
        @{ Name = 'PromptShareItem'; View = 'Diffusion.Cmdlets.PromptShareItem'; Get = { 'a', 'b' | Split-Prompt -ProcessIndex 0 -NumProcesses 2 } }
        @{ Name = 'RankInfo'; View = 'Diffusion.Engine.Parallel.RankInfo'; Get = { Get-DiffusionRank } }
    ) {
        $objects = @(& $Get)
        $objects.Count | Should -BeGreaterThan 0
        $labels = $script:Views[$View]
        $labels | Should -Not -BeNullOrEmpty
        foreach ($label in $labels) { $objects[0].PSObject.Properties.Name | Should -Contain $label -Because "the $Name table's column '$label' must be a property" }
        $lines = ($objects | Format-Table | Out-String -Width 250) -split "`r?`n"
        ($lines | Measure-Object Length -Maximum).Maximum | Should -BeLessOrEqual 80
        ($lines | Where-Object { $_ -match '\S' })[0] | Should -Match ('^' + [regex]::Escape($labels[0]))
    }

    It 'DiffusionResult and DiffusionImageInfo tables show real properties within 80 columns' {
        $results = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a dog' -Steps 1 -Seed 2 -Height 64 -Width 64 -OutputPath (Join-Path $script:Temp 'result-{index}.png'))
        $info = @(Get-DiffusionImageInfo $results[0].Path)
        foreach ($pair in @(@($results, 'Diffusion.Cmdlets.DiffusionResult'), @($info, 'Diffusion.Cmdlets.DiffusionImageInfo'))) {
            foreach ($label in $script:Views[$pair[1]]) { $pair[0][0].PSObject.Properties.Name | Should -Contain $label }
            (($pair[0] | Format-Table | Out-String -Width 250) -split "`r?`n" | Measure-Object Length -Maximum).Maximum | Should -BeLessOrEqual 80
        }
    }
}

Describe 'Files written' {
    It 'Save-DiffusionImage outputs the provider''s file objects, shown as Get-Item shows them' {
        $files = @($script:Img | Save-DiffusionImage -Path (Join-Path $script:Temp 'save-{index}.png'))
        $files.Count | Should -Be 2
        $files[0].PSObject.Properties.Name | Should -Contain 'PSParentPath'
        $files[0].PSProvider.Name | Should -Be 'FileSystem'
        $files[0].Length | Should -BeGreaterThan 0
        $expected = Get-Item $files.FullName | Out-String
        ($files | Out-String) | Should -Be $expected
        ($files | Out-String) | Should -Match 'Directory: '
        ($files | Out-String) | Should -Match 'LastWriteTime'
    }

    It 'Export-DiffusionTensor outputs the provider''s file object' {
        $file = $script:Emb | Export-DiffusionTensor (Join-Path $script:Temp 'emb.safetensors')
        $file.PSProvider.Name | Should -Be 'FileSystem'
        ($file | Out-String) | Should -Be (Get-Item $file.FullName | Out-String)
    }

    It 'Invoke-Diffusion -OutputPath -PassThru returns the images with their Path' {
        $images = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a dog', 'a cat' -Steps 1 -Seed 4 -Height 64 -Width 64 -OutputPath (Join-Path $script:Temp 'pass-{index}.png') -PassThru)
        $images.Count | Should -Be 2
        $images[0].GetType().Name | Should -Be 'DiffusionImage'
        $images[1].Path | Should -Be (Join-Path $script:Temp 'pass-1.png')
        Test-Path $images[1].Path | Should -BeTrue
        $images[1].Seed | Should -Be 4
    }
}

Describe 'Memory figures' {
    It 'report the process''s resident size as /proc gives it, beside the engine''s ledger' -Skip:(-not $IsLinux) {
        $cpu = Get-DiffusionDevice cpu
        $rss = [long](((Get-Content /proc/self/status | Where-Object { $_ -like 'VmRSS:*' }) -split '\s+')[1]) * 1KB
        $hwm = [long](((Get-Content /proc/self/status | Where-Object { $_ -like 'VmHWM:*' }) -split '\s+')[1]) * 1KB
        # The same figure read a moment apart: within 64 MB of each other, and far above the engine's tensors alone.
        [math]::Abs($cpu.ProcessMemory - $rss) | Should -BeLessThan 64MB
        $cpu.ProcessPeakMemory | Should -BeGreaterOrEqual $cpu.ProcessMemory
        $cpu.ProcessPeakMemory | Should -BeLessOrEqual ($hwm + 64MB)
        $cpu.ProcessMemory | Should -BeGreaterThan $cpu.AllocatedByEngine
        $cpu.ProcessMB | Should -Be ([math]::Round($cpu.ProcessMemory / 1MB, 1))
        $cpu.EngineMB | Should -Be ([math]::Round($cpu.AllocatedByEngine / 1MB, 1))
        $cpu.UsedMemory | Should -Be ($cpu.TotalMemory - $cpu.FreeMemory)
    }

    It 'follow a 256 MB tensor in and out: resident size grows by it and goes back after Clear-DiffusionMemory' {
        $before = Get-DiffusionDevice cpu
        $t = $script:Torch::ones([long[]]@(64MB)) # float32: 256 MiB, every page written
        try { $held = Get-DiffusionDevice cpu }
        finally { $t.Dispose() }
        Clear-DiffusionMemory
        $after = Get-DiffusionDevice cpu
        ($held.ProcessMemory - $before.ProcessMemory) | Should -BeGreaterThan 200MB
        ($held.ProcessPeakMemory) | Should -BeGreaterOrEqual $held.ProcessMemory
        ($held.ProcessMemory - $after.ProcessMemory) | Should -BeGreaterThan 200MB
    }

    It 'grow when a pipeline loads, by at least what the engine counts' -Skip:(-not $IsLinux) {
        Clear-DiffusionMemory
        $before = Get-DiffusionDevice cpu
        $pipe = New-DiffusionPipeline $script:FluxTiny
        try {
            $loaded = Get-DiffusionDevice cpu
            $grew = $loaded.AllocatedByEngine - $before.AllocatedByEngine
            $grew | Should -Be $pipe.Bytes
            # Resident pages: the loaded weights are touched, so the peak rose by at least most of them.
            ($loaded.ProcessPeakMemory - $before.ProcessMemory) | Should -BeGreaterThan ($grew * 0.5)
        }
        finally { Remove-DiffusionPipeline $pipe; Clear-DiffusionMemory }
        (Get-DiffusionDevice cpu).AllocatedByEngine | Should -Be $before.AllocatedByEngine
    }
}

Describe 'Help' {
    # The manifest's list, read at discovery (the module is imported in BeforeAll); Module.Tests checks it is complete.
    It 'has SYNTAX with -WhatIf/-Confirm, INPUTS, OUTPUTS, default values and RELATED LINKS for <_>' -ForEach @(
        (Import-PowerShellDataFile (Join-Path $PSScriptRoot '../Diffusion.psd1')).CmdletsToExport) {
        $cmd = Get-Command $_
        $help = Get-Help $_ -Full
        $syntax = $help.syntax | Out-String -Width 400
        if ($cmd.Parameters.ContainsKey('WhatIf')) { $syntax | Should -Match '\[-WhatIf\] \[-Confirm\]' }
        @($help.inputTypes.inputType).Count | Should -BeGreaterThan 0
        @($help.returnValues.returnValue).Count | Should -BeGreaterThan 0
        foreach ($type in $cmd.OutputType.Type) { @($help.returnValues.returnValue.type.name) | Should -Contain $type.FullName }
        @($help.relatedLinks.navigationLink.linkText) | Should -Contain 'about_Diffusion'
        foreach ($p in $help.parameters.parameter) { "$($p.defaultValue)" | Should -Not -BeNullOrEmpty -Because "-$($p.name) of $_ needs a default value" }
    }

    It 'documents the output templates ({index:000}, {rank})' {
        $text = Get-Help Invoke-Diffusion -Parameter OutputPath | Out-String
        $text | Should -Match '\{rank\}'
        $text | Should -Match '\{index:000\}'
        (Get-Help Save-DiffusionImage -Full | Out-String -Width 300) | Should -Match '\{index:000\}'
    }

    It 'gives the real defaults' {
        (Get-Help Save-DiffusionImage -Parameter Quality).defaultValue | Should -Be '90'
        (Get-Help Invoke-Diffusion -Parameter Steps).defaultValue | Should -Match '50'
        (Get-Help New-DiffusionPipeline -Parameter DType).defaultValue | Should -Be 'float32'
    }
}

Describe 'Small things' {
    It 'Import-DiffusionTensor takes wildcards and -LiteralPath' {
        $dir = Join-Path $script:Temp 'tensors[1]'
        $null = [IO.Directory]::CreateDirectory($dir)
        $null = $script:Emb | Export-DiffusionTensor -Path (Join-Path $script:Temp 'wild-a.safetensors')
        $null = $script:Emb | Export-DiffusionTensor -Path (Join-Path $script:Temp 'wild-b.safetensors')
        @(Import-DiffusionTensor (Join-Path $script:Temp 'wild-*.safetensors')).Count | Should -Be 2
        # A literal path with wildcard characters in it.
        $literal = Join-Path $dir 'x.safetensors'
        [IO.File]::Copy((Join-Path $script:Temp 'wild-a.safetensors'), $literal)
        @(Import-DiffusionTensor -LiteralPath $literal).Count | Should -Be 1
        @(Get-Item -LiteralPath $literal | Import-DiffusionTensor).Count | Should -Be 1
        $err = $null
        Import-DiffusionTensor (Join-Path $script:Temp 'none-*.safetensors') -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'TensorFileNotFound*'
    }

    It 'Get-DiffusionDevice cuda:5 is an error' {
        if (@(Get-DiffusionDevice).Count -gt 6) { Set-ItResult -Skipped -Because 'this machine has a cuda:5' ; return }
        $err = $null
        $out = Get-DiffusionDevice cuda:5 -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'DeviceNotFound*'
        $err[0].ToString() | Should -Match 'cpu'
    }

    It '-Offload on a machine without a GPU warns' {
        if (@(Get-DiffusionDevice | Where-Object Type -eq 'cuda').Count) { Set-ItResult -Skipped -Because 'this machine has a GPU'; return }
        $w = $null
        $pipe = New-DiffusionPipeline $script:SdTiny -Component unet -Offload model -WarningVariable w -WarningAction SilentlyContinue
        try { ($w -join ' ') | Should -Match 'Offload model runs on the CPU' }
        finally { Remove-DiffusionPipeline $pipe }
    }

    It '-Device cuda -Offload model on a machine without a GPU names -Device, not -DeviceMap' {
        if (@(Get-DiffusionDevice | Where-Object Type -eq 'cuda').Count) { Set-ItResult -Skipped -Because 'this machine has a GPU'; return }
        $e = { New-DiffusionPipeline $script:SdTiny -Component unet -Device cuda -Offload model } | Should -Throw -PassThru
        $e.ToString() | Should -Not -Match 'DeviceMap'
        $e.ToString() | Should -Match '-Device'
    }

    It '$pipe.Scheduler shows the class when it came from a file or an alias' {
        $file = Join-Path $script:SdTiny 'scheduler/scheduler_config.json'
        $pipe = New-DiffusionPipeline $script:SdTiny -Component unet -Scheduler $file
        try { $pipe.Scheduler | Should -Be 'PNDMScheduler' } finally { Remove-DiffusionPipeline $pipe }
        $pipe = New-DiffusionPipeline $script:SdTiny -Component unet -Scheduler euler_a
        try { $pipe.Scheduler | Should -Be 'EulerAncestralDiscreteScheduler' } finally { Remove-DiffusionPipeline $pipe }
    }
}
