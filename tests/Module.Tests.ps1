# The module itself: import, isolation, help, completion, devices.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Commands = Get-Command -Module Diffusion -CommandType Cmdlet
}

Describe 'Module' {
    It 'exports every cmdlet the manifest lists' {
        $manifest = Import-PowerShellDataFile (Join-Path $script:ModulePath 'Diffusion.psd1')
        ($script:Commands.Name | Sort-Object) | Should -Be ($manifest.CmdletsToExport | Sort-Object)
    }

    It 'loads the engine and TorchSharp in their own AssemblyLoadContext' {
        $null = Get-DiffusionDevice
        $engine = [System.Runtime.Loader.AssemblyLoadContext]::All | Where-Object Name -eq 'Diffusion.Engine'
        $engine | Should -Not -BeNullOrEmpty
        $engine.Assemblies.GetName().Name | Should -Contain 'TorchSharp'
        [System.Runtime.Loader.AssemblyLoadContext]::Default.Assemblies.GetName().Name | Should -Not -Contain 'TorchSharp'
    }

    It 'has help with a synopsis, a description and an example for <_>' -ForEach @(
        'Initialize-DiffusionBackend', 'Get-DiffusionDevice', 'New-DiffusionPipeline', 'Remove-DiffusionPipeline', 'ConvertTo-DiffusionEmbedding',
        'Invoke-Denoise', 'ConvertFrom-DiffusionLatent', 'Save-DiffusionImage', 'Invoke-Diffusion', 'Export-DiffusionTensor',
        'Import-DiffusionTensor', 'Get-DiffusionPromptToken', 'Clear-DiffusionMemory') {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis | Should -Not -Match '^\s*\S+ \[' # not the auto-generated syntax line
        $help.description | Should -Not -BeNullOrEmpty
        @($help.examples.example).Count | Should -BeGreaterThan 0
        foreach ($p in (Get-Command $_).Parameters.Values | Where-Object { $_.Name -notin [System.Management.Automation.PSCmdlet]::CommonParameters -and $_.Name -notin 'WhatIf', 'Confirm' }) {
            ($help.parameters.parameter | Where-Object name -eq $p.Name).description | Should -Not -BeNullOrEmpty -Because "-$($p.Name) of $_ needs a description"
        }
    }

    It 'completes -Device and -Scheduler' {
        $device = TabExpansion2 -inputScript 'New-DiffusionPipeline x -Device c' -cursorColumn 33
        $device.CompletionMatches.CompletionText | Should -Contain 'cpu'
        $sched = TabExpansion2 -inputScript 'New-DiffusionPipeline x -Scheduler eu' -cursorColumn 37
        $sched.CompletionMatches.CompletionText | Should -Contain 'euler'
    }

    It 'completes -Component from the model folder' {
        $line = "New-DiffusionPipeline -Path '$script:SdTiny' -Component un"
        $r = TabExpansion2 -inputScript $line -cursorColumn $line.Length
        $r.CompletionMatches.CompletionText | Should -Contain 'unet'
    }
}

Describe 'Get-DiffusionDevice' {
    It 'lists the CPU with memory and the backend it loaded' {
        $cpu = Get-DiffusionDevice cpu
        $cpu.Name | Should -Be 'cpu'
        $cpu.TotalMemory | Should -BeGreaterThan 1GB
        $cpu.FreeMemory | Should -BeGreaterThan 0
        $cpu.Backend | Should -Not -BeNullOrEmpty
        Test-Path (Join-Path $cpu.LibTorchPath ($IsWindows ? 'torch_cpu.dll' : 'libtorch_cpu.so')) | Should -BeTrue
    }

    It 'prints as a short table' {
        $text = Get-DiffusionDevice | Out-String
        $text | Should -Match 'Name'
        $text | Should -Match 'cpu'
        ($text -split "`n" | Where-Object { $_.Trim() }).Count | Should -BeLessOrEqual 6
    }
}

Describe 'Pipeline object' {
    BeforeAll { $script:Pipe = New-DiffusionPipeline $script:SdTiny }
    AfterAll { Remove-DiffusionPipeline $script:Pipe }

    It 'describes class, family, components with device and dtype, parameters and memory' {
        $script:Pipe.ClassName | Should -Be 'StableDiffusionPipeline'
        $script:Pipe.Family | Should -Be 'StableDiffusion'
        $script:Pipe.Components.Keys | Should -Contain 'unet'
        $script:Pipe.Components['unet'].Device | Should -Be 'cpu'
        $script:Pipe.Components['unet'].DType | Should -Be 'float32'
        $script:Pipe.Components['unet'].Parameters | Should -BeGreaterThan 0
        $script:Pipe.Bytes | Should -BeGreaterThan 0
        ($script:Pipe | Out-String) | Should -Match 'StableDiffusionPipeline'
    }

    It 'loads only the components asked for, with what they need' {
        $enc = New-DiffusionPipeline $script:SdTiny -Component text_encoder
        try { ($enc.Components.Keys | Sort-Object) | Should -Be @('text_encoder', 'tokenizer') }
        finally { Remove-DiffusionPipeline $enc }
    }

    It '-WhatIf loads nothing and says what it would load' {
        $before = (Get-DiffusionDevice cpu).AllocatedByEngine
        New-DiffusionPipeline $script:SdTiny -WhatIf | Should -BeNullOrEmpty
        (Get-DiffusionDevice cpu).AllocatedByEngine | Should -Be $before
        # What-if messages go to the host, so read them from a child pwsh's console output.
        $pwsh = (Get-Process -Id $PID).Path
        $pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
        $text = & $pwsh @pwshArgs -NoProfile -NonInteractive -Command "Import-Module '$script:ModulePath'; New-DiffusionPipeline '$script:SdTiny' -Component unet -WhatIf" | Out-String
        $text | Should -Match 'What if'
        $text | Should -Match 'unet \(UNet2DConditionModel\)'
        $text | Should -Match 'scheduler'
    }
}
