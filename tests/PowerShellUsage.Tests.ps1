# PowerShell as its users expect (first items): output templates resolve against the current location and drives, and
# -WhatIf on Invoke-Diffusion generates nothing.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-usage-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:Pipe = New-DiffusionPipeline $script:SdTiny
    $script:Small = @{ Steps = 1; Height = 64; Width = 64; Seed = 3 }
}

AfterAll {
    if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe }
    Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Output templates with a format resolve against the current location' {
    BeforeEach { Push-Location $script:Temp }
    AfterEach { Pop-Location }

    It 'Invoke-Diffusion -OutputPath ''out/{index:0000}.png''' {
        $r = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a', 'b' @script:Small -SeedPerPrompt -OutputPath 'single/{index:0000}.png'
        $r.Path | Should -Be (Join-Path $script:Temp 'single/0000.png'), (Join-Path $script:Temp 'single/0001.png')
        $r.Path | ForEach-Object { Test-Path $_ | Should -BeTrue }
    }

    It 'Save-DiffusionImage ''out/{index:000}-{seed}.png''' {
        $file = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a' @script:Small | Save-DiffusionImage 'saved/{index:000}-{seed}.png'
        $file.FullName | Should -Be (Join-Path $script:Temp 'saved/000-3.png')
    }

    It 'a parallel run, in the parent and in every worker' {
        $env:OMP_NUM_THREADS = '1'
        try { $r = Invoke-Diffusion -Path $script:SdTiny -Prompt 'a', 'b' @script:Small -NumProcesses 2 -OutputPath 'parallel/{index:0000}.png' }
        finally { Remove-Item env:OMP_NUM_THREADS }
        (Get-ChildItem (Join-Path $script:Temp 'parallel')).Name | Should -Be '0000.png', '0001.png'
        $r.Path | Should -Be (Join-Path $script:Temp 'parallel/0000.png'), (Join-Path $script:Temp 'parallel/0001.png')
    }

    It 'a template on a PowerShell drive' {
        $null = New-PSDrive -Name DiffusionOut -PSProvider FileSystem -Root $script:Temp
        try {
            $r = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a' @script:Small -OutputPath 'DiffusionOut:/drive/{index:00}-{seed}.png'
            $r.Path | Should -Be (Join-Path $script:Temp 'drive/00-3.png')
        }
        finally { Remove-PSDrive DiffusionOut }
    }
}

Describe 'Invoke-Diffusion -WhatIf' {
    It 'loads and generates nothing with a model path, and says what it would do' {
        $missing = Join-Path $script:Temp 'no-such-model'
        $out = Join-Path $script:Temp 'whatif/{index}.png'
        # Loading the missing folder would fail: no error proves nothing was loaded.
        # -WhatIf writes to the host: run it in a pwsh of its own to read what it says.
        $pwsh = (Get-Process -Id $PID).Path
        $pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
        $said = & $pwsh @pwshArgs -NoProfile -NonInteractive -Command "`$ErrorActionPreference = 'Stop'; Import-Module '$script:ModulePath'; Invoke-Diffusion -Path '$missing' -Prompt 'a', 'b' -Steps 1 -OutputPath '$out' -WhatIf; 'exit ok'" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($said -join "`n")
        $said -join "`n" | Should -Match 'What if: Performing the operation "Generate 2 image\(s\) with .*no-such-model.* and save them as .*whatif.\{index\}\.png'
        $said[-1] | Should -Be 'exit ok'
        Test-Path (Join-Path $script:Temp 'whatif') | Should -BeFalse
    }

    It 'outputs no image with a loaded pipeline' {
        $r = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a' @script:Small -WhatIf
        $r | Should -BeNullOrEmpty
    }
}
