# Every README code block and every Get-Help example that can run on this CPU machine with the tiny fixtures is
# extracted from README.md and module/help/Diffusion.help.psd1 (never copied here) and run, in a sandbox folder where
# the model names the examples use are the fixtures, and the Hub repo ids they name are served by the local test Hub
# (tests/Hub/HubTestServer.cs on 127.0.0.1). "Can run here" is the rewrite below: cuda devices become cpu, half
# precision float32, steps 2 and images 64x64 (the tiny models' sizes), 4 processes 2. An example that cannot run here
# at all is named in $script:NotHere with its reason; the test asserts how many ran, so a rule cannot silently skip them all.
BeforeDiscovery {
    # What cannot run on this machine, whatever the fixtures: (pattern, reason).
    $NotHere = @(
        @('Install-PSResource|Register-PSResourceRepository', 'installs the package into the user''s module path (Package.Tests installs it into a throw-away one)'),
        @('DIFFUSION_LIBTORCH|-LibTorchPath', 'needs a PyTorch installation''s libtorch (Backend.Tests load the bundled one)'),
        @('(?m)^\s*srun |srun -n', 'needs Slurm'),
        @('-DeviceMap (balanced|auto) -MaxMemory @\{0=(?!.*-WhatIf)', 'loads onto GPUs this machine does not have (the plan-only forms, Get-DiffusionDeviceMap and -WhatIf, run)'),
        @('-Offload model', 'offloads onto a GPU this machine does not have (Sharding.Tests run -Offload on the CPU)'),
        @('Get-DiffusionDevice cuda', 'lists CUDA devices, which this machine does not have (an error here, as it should be)')
    )
    function Get-NotHereReason([string] $code) {
        foreach ($rule in $NotHere) { if ($code -match $rule[0]) { return $rule[1] } }
        $null
    }

    $root = Join-Path $PSScriptRoot '..'
    $readme = Get-Content (Join-Path $root 'README.md') -Raw
    $blocks = @([regex]::Matches($readme, '(?s)```powershell\n(.*?)```') | ForEach-Object -Begin { $i = 0 } -Process {
            @{ Number = ++$i; Code = $_.Groups[1].Value; Line = ($readme.Substring(0, $_.Index) -split "`n").Count; Reason = $null } })
    foreach ($b in $blocks) { $b.Reason = Get-NotHereReason $b.Code }
    $script:ReadmeBlocks = @($blocks | Where-Object { -not $_.Reason })
    $script:ReadmeNotHere = @($blocks | Where-Object Reason)
    $help = Import-PowerShellDataFile (Join-Path $root 'module/help/Diffusion.help.psd1')
    $script:HelpExamples = @(foreach ($name in ($help.Keys | Sort-Object)) {
            $n = 0
            foreach ($e in $help[$name].Examples) { @{ Cmdlet = $name; Number = ++$n; Code = $e.Code; Reason = (Get-NotHereReason $e.Code) } }
        })
    $script:HelpNotHere = @($script:HelpExamples | Where-Object Reason)
    $script:HelpExamples = @($script:HelpExamples | Where-Object { -not $_.Reason })
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    Add-Type -Path (Join-Path $PSScriptRoot 'Hub/HubTestServer.cs')

    # The rewrite that makes an example run on this CPU with the tiny models.
    function ConvertTo-RunnableCode([string] $code) {
        $code = $code -replace '-Device cuda:0,cuda:1', '-Device cpu,cpu' -replace '-Device cuda(:\d+)?\b', '-Device cpu'
        $code = $code -replace '-DType (float16|bfloat16)', '-DType float32'
        $code = $code -replace '-Steps \d+', '-Steps 2' -replace '-Height \d+', '-Height 64' -replace '-Width \d+', '-Width 64'
        $code = $code -replace '-NumProcesses [3-9]\d*', '-NumProcesses 2'
        $code = $code -replace 'Import-Module (\./out/Diffusion|Diffusion)\b', "Import-Module '$($script:ModulePath)'"
        $code
    }

    # The sandbox: the model names the examples use, as links to the fixtures; prompts; an init image; a LoRA.
    $script:Sandbox = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-examples-" + [guid]::NewGuid().ToString('N'))
    New-Item -ItemType Directory $script:Sandbox | Out-Null
    $links = @{
        'stable-diffusion-v1-5' = $script:SdTiny; 'sd' = $script:SdTiny; 'sd-tiny' = $script:SdTiny; 'FLUX.1-dev' = $script:FluxTiny
        'stable-diffusion-xl-base-1.0' = (Join-Path $script:Fixtures 'sdxl-tiny'); 'lora' = (Join-Path $script:Fixtures 'lora')
        'v1-5-pruned-emaonly.safetensors' = (Join-Path $script:Fixtures 'single-file/sd-tiny.safetensors')
        'flux1-dev.safetensors' = (Join-Path $script:Fixtures 'single-file/flux-tiny-transformer-bfl.safetensors')
        'ae.safetensors' = (Join-Path $script:Fixtures 'single-file/flux-tiny-ae-bfl.safetensors')
        'sketch.png' = (Join-Path $script:Fixtures 'init-128.png'); 'my-lora.safetensors' = (Join-Path $script:Fixtures 'lora/sd-tiny-lora.safetensors')
    }
    function New-Sandbox([string] $dir) {
        New-Item -ItemType Directory $dir -Force | Out-Null
        foreach ($name in $links.Keys) { New-Item -ItemType SymbolicLink -Path (Join-Path $dir $name) -Target $links[$name] | Out-Null }
        # A folder of LoRA files with the names the examples give them.
        New-Item -ItemType Directory (Join-Path $dir 'loras') | Out-Null
        foreach ($lora in @{ 'ink.safetensors' = 'sd-tiny-lora.safetensors'; 'detail.safetensors' = 'sd-tiny-lora-kohya.safetensors' }.GetEnumerator()) {
            New-Item -ItemType SymbolicLink -Path (Join-Path $dir "loras/$($lora.Key)") -Target (Join-Path $script:Fixtures "lora/$($lora.Value)") | Out-Null
        }
        'a red cube', 'a blue sphere', 'a green cone' | Set-Content (Join-Path $dir 'prompts.txt')
        "Prompt,Seed,Steps`na red cube,11,2`na blue sphere,,3" | Set-Content (Join-Path $dir 'prompts.csv')
        'param($Prompts) Invoke-Diffusion -Path ./sd -Prompt (Get-Content $Prompts) -Steps 2 -Height 64 -Width 64' | Set-Content (Join-Path $dir 'generate.ps1')
    }
    New-Sandbox (Join-Path $script:Sandbox 'readme')

    # The Hub repo ids the examples name, served by the local test Hub from the fixtures.
    $script:Server = [DiffusionTests.HubTestServer]::new()
    $commit = '0123456789abcdef0123456789abcdef01234567'
    foreach ($repo in @{ 'stable-diffusion-v1-5/stable-diffusion-v1-5' = $script:SdTiny; 'black-forest-labs/FLUX.1-dev' = $script:FluxTiny }.GetEnumerator()) {
        $script:Server.AddRepo($repo.Key, $commit, $null)
        $script:Server.AddFolder($repo.Key, $repo.Value, '')
    }
    # stable-diffusion-v1-5 has fp16 variant weights beside the full ones, as the real repo does.
    $fp16 = Join-Path $script:Fixtures 'single-file/sd-tiny-fp16'
    foreach ($f in Get-ChildItem $fp16 -Recurse -Filter '*.fp16.safetensors') {
        $script:Server.AddFile('stable-diffusion-v1-5/stable-diffusion-v1-5', [IO.Path]::GetRelativePath($fp16, $f.FullName).Replace('\', '/'), $f.FullName)
    }
    $script:HubVariables = 'HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HOME', 'HF_TOKEN', 'HF_HUB_OFFLINE'
    $script:SavedVariables = @{}
    foreach ($v in $script:HubVariables) { $script:SavedVariables[$v] = [Environment]::GetEnvironmentVariable($v) }
    $env:HF_ENDPOINT = $script:Server.Endpoint
    $env:HF_HOME = Join-Path $script:Sandbox 'hf-home'
    $env:HF_HUB_CACHE = Join-Path $script:Sandbox 'hub'
    $env:HF_HUB_OFFLINE = $null

    # A runspace in the sandbox with the module imported and the tiny models' sizes as defaults.
    function New-ExampleRunspace([string] $dir) {
        $ps = [powershell]::Create()
        $null = $ps.AddScript(@"
Set-Location -LiteralPath '$dir'
Import-Module '$($script:ModulePath)'
`$ProgressPreference = 'SilentlyContinue'
`$PSDefaultParameterValues = @{ 'Invoke-Diffusion:Steps' = 2; 'Invoke-Diffusion:Height' = 64; 'Invoke-Diffusion:Width' = 64
    'Invoke-Denoise:Steps' = 2; 'Invoke-Denoise:Height' = 64; 'Invoke-Denoise:Width' = 64; 'Start-DiffusionParallel:NumProcesses' = 2 }
"@).Invoke()
        $ps.Commands.Clear()
        $ps
    }
    function Invoke-Example($ps, [string] $code) {
        $ps.Streams.Error.Clear()
        if ($code -match '-InitImage') { $code = "`$PSDefaultParameterValues.Remove('Invoke-Denoise:Height'); `$PSDefaultParameterValues.Remove('Invoke-Denoise:Width'); `$PSDefaultParameterValues.Remove('Invoke-Diffusion:Height'); `$PSDefaultParameterValues.Remove('Invoke-Diffusion:Width')`n" + $code }
        $null = $ps.AddScript($code).AddCommand('Out-Null')
        $hub = @{}; foreach ($v in $script:HubVariables) { $hub[$v] = [Environment]::GetEnvironmentVariable($v) }
        try { $null = $ps.Invoke() }
        catch { return "$($_.Exception.InnerException.Message ?? $_.Exception.Message)" }
        finally {
            $ps.Commands.Clear()
            foreach ($v in $script:HubVariables) { [Environment]::SetEnvironmentVariable($v, $hub[$v]) } # an example's $env:HF_HUB_OFFLINE = 1 is its own
        }
        if ($ps.Streams.Error.Count -gt 0) { return ($ps.Streams.Error | ForEach-Object { "$($_.FullyQualifiedErrorId): $_" }) -join "`n" }
        $null
    }
    $script:Readme = New-ExampleRunspace (Join-Path $script:Sandbox 'readme')
    $script:ReadmeRan = 0
    $script:HelpRan = 0

    # What the help examples take as given (their variables), per example: built only when the example names them.
    $script:HelpPrelude = [ordered]@{
        '\$pipe\b' = '$pipe = New-DiffusionPipeline ./sd'
        '\$path\b' = '$path = ''./FLUX.1-dev'''
        '\$enc\b' = '$enc = New-DiffusionPipeline ./FLUX.1-dev -Component text_encoder, text_encoder_2'
        '\$den\b' = '$den = New-DiffusionPipeline ./FLUX.1-dev -Component transformer'
        '\$unet\b' = '$unet = New-DiffusionPipeline ./sd -Component unet'
        '\$vae\b' = '$vae = New-DiffusionPipeline ./sd -Component vae'
        '\$prompts\b' = '$prompts = Get-Content prompts.txt'
        '\$images\b' = '$images = Invoke-Diffusion -Path ./sd -Prompt ''a red cube'' -Seed 42'
    }
    function Get-HelpPrelude([string] $code) {
        $lines = foreach ($k in $script:HelpPrelude.Keys) { if ($code -match $k) { $script:HelpPrelude[$k] } }
        if ($code -match '\$emb\b') {
            # The embeddings of the example's own family: FLUX where it denoises with $den, SD otherwise.
            $lines = @($lines) + $(if ($code -match '\$den\b') { '$emb = ''a cat'' | ConvertTo-DiffusionEmbedding -Pipeline (New-DiffusionPipeline ./FLUX.1-dev -Component text_encoder, text_encoder_2)' }
                                   else { '$emb = ''a cat'' | ConvertTo-DiffusionEmbedding -Pipeline (New-DiffusionPipeline ./sd -Component text_encoder)' })
        }
        if ($code -match '\$lat\b') {
            $lines = @($lines) + '$lat = ''a cat'' | ConvertTo-DiffusionEmbedding -Pipeline (New-DiffusionPipeline ./FLUX.1-dev -Component text_encoder, text_encoder_2) | Invoke-Denoise -Pipeline (New-DiffusionPipeline ./FLUX.1-dev -Component transformer)'
        }
        if ($code -match 'emb\.safetensors' -and $code -match 'Import-DiffusionTensor') {
            $lines = @($lines) + '''a cat'' | ConvertTo-DiffusionEmbedding -Pipeline (New-DiffusionPipeline ./FLUX.1-dev -Component text_encoder, text_encoder_2) | Export-DiffusionTensor emb.safetensors | Out-Null'
        }
        if ($code -match 'out/0001\.png|out/\*\.(png|jpg)') {
            $lines = @($lines) + 'Invoke-Diffusion -Path ./sd -Prompt ''a red cube'', ''a cat'' -Seed 42 -OutputPath ''out/{index:0000}.png'' | Out-Null'
        }
        if ($code -match 'sd-tiny-lora' -and $code -match 'Remove-DiffusionLora|Get-DiffusionLora') {
            $lines = @($lines) + 'Add-DiffusionLora -Pipeline $pipe ./lora/sd-tiny-lora.safetensors | Out-Null'
        }
        @($lines) -join "`n"
    }
}

AfterAll {
    if ($script:Readme) { $script:Readme.Dispose() }
    foreach ($v in $script:HubVariables) { [Environment]::SetEnvironmentVariable($v, $script:SavedVariables[$v]) }
    if ($script:Server) { $script:Server.Dispose() }
    if ($script:Sandbox -and $script:Sandbox.StartsWith([IO.Path]::GetTempPath()) -and (Test-Path $script:Sandbox)) {
        Remove-Item -LiteralPath $script:Sandbox -Recurse -Force -ErrorAction SilentlyContinue
    }
}

Describe 'README code blocks, in order, as a reader runs them' {
    It 'block <Number> (README line <Line>)' -ForEach $script:ReadmeBlocks {
        # Each block in a fresh folder (the runspace keeps the variables earlier blocks made), with the files it reads.
        $dir = Join-Path $script:Sandbox "readme-$Number"
        New-Sandbox $dir
        $files = Get-HelpPrelude ($Code -replace '\$\w+', '')
        $failure = Invoke-Example $script:Readme ("Set-Location -LiteralPath '$dir'`n" + $files + "`n" + (ConvertTo-RunnableCode $Code))
        $failure | Should -BeNullOrEmpty -Because "README block $Number (line $Line) runs:`n$Code"
        $script:ReadmeRan++
    }

    It 'ran every block but the ones that cannot run on this machine, each for its reason' -ForEach @(@{ NotHere = $script:ReadmeNotHere; Runnable = $script:ReadmeBlocks.Count }) {
        $script:ReadmeRan | Should -Be $Runnable
        # Three: the package install, a PyTorch libtorch, the balanced map onto two GPUs.
        @($NotHere).Count | Should -Be 3 -Because ('only these README blocks need what this machine lacks; a new one needs a rule with its reason: ' +
            (@($NotHere | ForEach-Object { "block $($_.Number) (line $($_.Line)): $($_.Reason)" }) -join '; '))
    }
}

Describe 'Get-Help examples' {
    It '<Cmdlet> example <Number>' -ForEach $script:HelpExamples {
        $dir = Join-Path $script:Sandbox "help-$Cmdlet-$Number"
        New-Sandbox $dir
        $ps = New-ExampleRunspace $dir
        try {
            $prelude = Get-HelpPrelude $Code
            if ($prelude) { Invoke-Example $ps $prelude | Should -BeNullOrEmpty -Because "the prelude of $Cmdlet example $Number runs:`n$prelude" }
            $failure = Invoke-Example $ps (ConvertTo-RunnableCode $Code)
            $failure | Should -BeNullOrEmpty -Because "$Cmdlet example $Number runs:`n$Code"
        }
        finally { $ps.Dispose() }
        $script:HelpRan++
    }

    It 'ran every example but the ones that cannot run on this machine, each for its reason' -ForEach @(@{ NotHere = $script:HelpNotHere; Runnable = $script:HelpExamples.Count }) {
        $script:HelpRan | Should -Be $Runnable
        @($NotHere | ForEach-Object { "$($_.Cmdlet) $($_.Number)" }) -join ', ' |
            Should -Be 'Get-DiffusionDevice 2, Get-DiffusionRank 2, Initialize-DiffusionBackend 1, Initialize-DiffusionBackend 2, New-DiffusionPipeline 2, New-DiffusionPipeline 3, New-DiffusionPipeline 5' -Because 'only these examples need what this machine lacks (a GPU, Slurm, a PyTorch libtorch); a new one needs a rule with its reason'
    }
}
