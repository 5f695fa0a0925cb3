# The module as a package: a Gallery-complete manifest, a .nupkg that PSResourceGet installs from a local repository
# into a fresh module path, and a clean pwsh that imports the installed module and generates an image.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-package-test-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:Manifest = Import-PowerShellDataFile (Join-Path $script:ModulePath 'Diffusion.psd1')
}

AfterAll {
    if ($script:Temp.StartsWith([IO.Path]::GetTempPath()) -and (Split-Path $script:Temp -Leaf).StartsWith('diffusion-package-test-')) {
        Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
    }
}

Describe 'Manifest' {
    It 'has what the Gallery asks for' {
        $m = $script:Manifest
        foreach ($key in 'Description', 'Author', 'ModuleVersion', 'GUID', 'Copyright') { $m[$key] | Should -Not -BeNullOrEmpty -Because $key }
        $m.PrivateData.PSData.ProjectUri | Should -Match '^https://'
        $m.PrivateData.PSData.LicenseUri | Should -Match '^https://.*LICENSE$'
        @($m.PrivateData.PSData.Tags).Count | Should -BeGreaterThan 3
        $m.PrivateData.PSData.Tags | Should -Not -Match '\s'
        $m.CompatiblePSEditions | Should -Be @('Core')
        $m.PowerShellVersion | Should -Be '7.4'
        foreach ($key in 'CmdletsToExport', 'AliasesToExport', 'FunctionsToExport', 'VariablesToExport') {
            $m.ContainsKey($key) | Should -BeTrue -Because "$key must be explicit"
            @($m[$key]) -join ',' | Should -Not -Match '\*' -Because "$key must not use wildcards"
        }
        $m.CmdletsToExport | Should -Contain 'Get-DiffusionImageInfo'
        $m.AliasesToExport | Should -Be @('Split-Prompts')
        Test-Path (Join-Path $PSScriptRoot '../LICENSE') | Should -BeTrue
        { Test-ModuleManifest (Join-Path $script:ModulePath 'Diffusion.psd1') -ErrorAction Stop } | Should -Not -Throw
    }

    It 'build.ps1 has a Package task' {
        (Get-Command (Join-Path $PSScriptRoot '../build.ps1')).Parameters['Task'].Attributes.ValidValues | Should -Contain 'Package'
    }
}

Describe 'Package' {
    It 'installs with Install-PSResource into a fresh module path, imports in a clean pwsh and generates an image' {
        # All of it in a child pwsh whose HOME (and XDG folders) is a fresh temp folder: PSResourceGet's settings, the
        # repository and the CurrentUser modules it installs go there, never into the user's own. The package is made
        # by the script ./build.ps1 -Task Package runs, from the module the tests use, without libtorch: the child
        # brings the test module's, as a user brings a PyTorch install's through DIFFUSION_LIBTORCH.
        $repo = Join-Path $script:Temp 'repo'
        $fakeHome = Join-Path $script:Temp 'home'
        $data = Join-Path $fakeHome '.local/share'
        New-Item -ItemType Directory $data | Out-Null
        $image = Join-Path $script:Temp 'installed.png'
        $libtorch = if ($env:DIFFUSION_LIBTORCH) { $env:DIFFUSION_LIBTORCH } else { Join-Path $script:ModulePath 'deps' }
        $child = @"
`$ErrorActionPreference = 'Stop'
`$null = & '$(Join-Path $PSScriptRoot '../build/New-ModulePackage.ps1')' -ModulePath '$script:ModulePath' -OutputPath '$repo' -NoBundledLibTorch
Register-PSResourceRepository -Name DiffusionLocal -Uri '$repo' -Trusted
Install-PSResource Diffusion -Repository DiffusionLocal -Scope CurrentUser -TrustRepository -Quiet
`$env:DIFFUSION_LIBTORCH = '$libtorch'
Import-Module Diffusion
`$r = Invoke-Diffusion -Path '$script:SdTiny' -Prompt 'a dog' -Steps 1 -Seed 1 -Height 64 -Width 64 -OutputPath '$image'
[pscustomobject]@{ ModuleBase = (Get-Module Diffusion).ModuleBase; Path = `$r.Path; Seed = `$r.Seed } | ConvertTo-Json -Compress
"@
        $pwsh = (Get-Process -Id $PID).Path
        $pwshArgs = @(if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { [Reflection.Assembly]::GetEntryAssembly().Location })
        $saved = @{}
        foreach ($name in 'HOME', 'USERPROFILE', 'LOCALAPPDATA', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'XDG_CACHE_HOME', 'PSModulePath', 'DIFFUSION_MODULE') { $saved[$name] = [Environment]::GetEnvironmentVariable($name) }
        try {
            [Environment]::SetEnvironmentVariable('HOME', $fakeHome)
            [Environment]::SetEnvironmentVariable('USERPROFILE', $fakeHome)
            [Environment]::SetEnvironmentVariable('LOCALAPPDATA', $data)
            $env:XDG_DATA_HOME = $data
            $env:XDG_CONFIG_HOME = Join-Path $fakeHome '.config'
            $env:XDG_CACHE_HOME = Join-Path $fakeHome '.cache'
            # Only the fresh user path and PowerShell's own modules (PSResourceGet ships there).
            $env:PSModulePath = (Join-Path $data 'powershell/Modules') + [IO.Path]::PathSeparator + (Join-Path $PSHOME 'Modules')
            $env:DIFFUSION_MODULE = $null
            $output = & $pwsh @pwshArgs -NoProfile -NonInteractive -Command $child 2>&1
            $exit = $LASTEXITCODE
        }
        finally {
            foreach ($name in $saved.Keys) { [Environment]::SetEnvironmentVariable($name, $saved[$name]) }
        }
        $exit | Should -Be 0 -Because ($output | Out-String)
        $result = ($output | Where-Object { "$_" -like '{*' } | Select-Object -Last 1) | ConvertFrom-Json
        $result.ModuleBase | Should -BeLike (Join-Path $fakeHome '*')
        $nupkg = Get-Item (Join-Path $repo "Diffusion.$($script:Manifest.ModuleVersion).nupkg")
        $zip = [IO.Compression.ZipFile]::OpenRead($nupkg.FullName)
        try {
            $entries = $zip.Entries.FullName
            foreach ($file in 'Diffusion.psd1', 'Diffusion.dll', 'Diffusion.format.ps1xml', 'LICENSE', 'en-US/Diffusion.dll-Help.xml', 'deps/Diffusion.Engine.dll') { $entries | Should -Contain $file }
            $entries | Should -Not -Contain 'deps/libtorch_cpu.so'
        }
        finally { $zip.Dispose() }
        $result.Path | Should -Be $image
        Test-Path $image | Should -BeTrue
        (Get-DiffusionImageInfo $image).Seed | Should -Be 1
    }
}
