# Data-parallel generation: Split-Prompt, rank detection, the worker launcher, and Invoke-Diffusion -NumProcesses.
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-parallel-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:RankEnvironment = Get-EngineType 'Diffusion.Engine.Parallel.RankEnvironment'
    # Launcher variables of whatever runs these tests (CI under Slurm, say) must not leak into them.
    $script:LauncherVariables = 'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID',
        'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK', 'PMI_RANK', 'PMI_SIZE', 'MPI_LOCALRANKID',
        'OMP_NUM_THREADS', 'DIFFUSION_TEST_EXIT_RANK'
    $script:SavedVariables = @{}
    foreach ($name in $script:LauncherVariables) {
        $script:SavedVariables[$name] = [Environment]::GetEnvironmentVariable($name)
        Remove-Item "env:$name" -ErrorAction Ignore
    }
    # Shares as text: ranks separated by '|', padding items marked '*'.
    function Format-Share($items) { ($items | ForEach-Object { "$($_.Index)$(if ($_.IsPadding) { '*' })" }) -join ',' }
    function Get-Hashes([string] $folder) {
        Get-ChildItem $folder -Filter *.png | Sort-Object Name | ForEach-Object { "$($_.Name)=$((Get-FileHash $_.FullName).Hash)" }
    }
}

AfterAll {
    foreach ($name in $script:LauncherVariables) {
        Remove-Item "env:$name" -ErrorAction Ignore
        if ($null -ne $script:SavedVariables[$name]) { Set-Item "env:$name" $script:SavedVariables[$name] }
    }
    Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Split-Prompt' {
    # Worked out by hand from accelerate's split_between_processes: q, r = divmod(N, P); rank p starts at p*q + min(p, r);
    # the first r ranks take q+1; padding fills every rank up to q + (r > 0) with the input's last item.
    It 'splits <N> prompts between <P> processes (padding: <Padding>) as accelerate does' -ForEach @(
        @{ N = 10; P = 3; Padding = $false; Expected = '0,1,2,3|4,5,6|7,8,9' }
        @{ N = 10; P = 3; Padding = $true; Expected = '0,1,2,3|4,5,6,9*|7,8,9,9*' }
        @{ N = 9; P = 3; Padding = $true; Expected = '0,1,2|3,4,5|6,7,8' }
        @{ N = 7; P = 4; Padding = $true; Expected = '0,1|2,3|4,5|6,6*' }
        @{ N = 2; P = 4; Padding = $false; Expected = '0|1||' }
        @{ N = 2; P = 4; Padding = $true; Expected = '0|1|1*|1*' }
        @{ N = 5; P = 1; Padding = $true; Expected = '0,1,2,3,4' }
    ) {
        $prompts = @(0..($N - 1) | ForEach-Object { "prompt $_" })
        $shares = foreach ($rank in 0..($P - 1)) {
            $items = @(Split-Prompt -InputObject $prompts -ProcessIndex $rank -NumProcesses $P -ApplyPadding:$Padding)
            foreach ($item in $items) {
                $item.Value | Should -Be $prompts[$item.Index]
                $item.ProcessIndex | Should -Be $rank
                $item.NumProcesses | Should -Be $P
            }
            Format-Share $items
        }
        $shares -join '|' | Should -Be $Expected
        # Gathering the shares and dropping padding gives every prompt once, in order.
        $gathered = foreach ($rank in 0..($P - 1)) { Split-Prompt -InputObject $prompts -ProcessIndex $rank -NumProcesses $P -ApplyPadding:$Padding | Where-Object { -not $_.IsPadding } }
        @($gathered.Value) | Should -Be $prompts
    }

    It 'collects pipeline input before splitting, and has the alias Split-Prompts' {
        $share = 'a', 'b', 'c', 'd', 'e' | Split-Prompts -ProcessIndex 1 -NumProcesses 2
        $share.Value | Should -Be 'd', 'e'
        $share.Index | Should -Be 3, 4
    }

    It 'splits objects and keeps them as they are' {
        $objects = 1..5 | ForEach-Object { [pscustomobject]@{ Prompt = "p$_"; Steps = $_ } }
        $share = $objects | Split-Prompt -ProcessIndex 0 -NumProcesses 2
        $share.Value.Prompt | Should -Be 'p1', 'p2', 'p3'
        $share[2].Value.Steps | Should -Be 3
    }

    It 'splits a hashtable of lists row by row, every list alike' {
        $table = [ordered]@{ prompt = 'a', 'b', 'c'; seed = 1, 2, 3 }
        $share = Split-Prompt $table -ProcessIndex 1 -NumProcesses 2 -ApplyPadding
        $share.Value.prompt | Should -Be 'c', 'c'
        $share.Value.seed | Should -Be 3, 3
        $share.IsPadding | Should -Be $false, $true
        { Split-Prompt @{ prompt = 'a', 'b'; seed = 1, 2, 3 } -ProcessIndex 0 -NumProcesses 2 } |
            Should -Throw -ErrorId 'SplitLengthMismatch*'
    }

    It 'takes rank and world size from the launcher''s variables' {
        try {
            $env:SLURM_PROCID = '2'; $env:SLURM_NTASKS = '3'
            (0..6 | Split-Prompt).Value | Should -Be 5, 6
            (0..6 | Split-Prompt -ProcessIndex 0).Value | Should -Be 0, 1, 2 # a parameter wins over its variable
        } finally { Remove-Item env:SLURM_PROCID, env:SLURM_NTASKS -ErrorAction Ignore }
    }

    It 'rejects a rank outside the world' {
        { 1..3 | Split-Prompt -ProcessIndex 3 -NumProcesses 3 } | Should -Throw -ErrorId 'RankOutOfRange*'
    }
}

Describe 'Rank detection' {
    It 'reads <Launcher>''s variables' -ForEach @(
        @{ Launcher = 'torchrun/accelerate'; Variables = @{ RANK = '5'; WORLD_SIZE = '8'; LOCAL_RANK = '1' } }
        @{ Launcher = 'Slurm'; Variables = @{ SLURM_PROCID = '5'; SLURM_NTASKS = '8'; SLURM_LOCALID = '1' } }
        @{ Launcher = 'Open MPI'; Variables = @{ OMPI_COMM_WORLD_RANK = '5'; OMPI_COMM_WORLD_SIZE = '8'; OMPI_COMM_WORLD_LOCAL_RANK = '1' } }
        @{ Launcher = 'MPICH/Intel MPI (PMI)'; Variables = @{ PMI_RANK = '5'; PMI_SIZE = '8'; MPI_LOCALRANKID = '1' } }
    ) {
        $info = $script:RankEnvironment::Detect($Variables, $null, $null)
        $info.Launcher | Should -Be $Launcher
        $info.ProcessRank, $info.WorldSize, $info.LocalRank | Should -Be 5, 8, 1
        foreach ($name in $Variables.Keys) { $info.Source | Should -Match $name }
        $info.DefaultDevice(4) | Should -Be 'cuda:1'
        $info.DefaultDevice(0) | Should -Be 'cpu'
    }

    It 'prefers torchrun over Slurm over Open MPI over PMI, and names a bad variable' {
        $all = @{ RANK = '1'; WORLD_SIZE = '4'; SLURM_PROCID = '2'; SLURM_NTASKS = '4'; OMPI_COMM_WORLD_RANK = '3'; OMPI_COMM_WORLD_SIZE = '4' }
        $script:RankEnvironment::Detect($all, $null, $null).ProcessRank | Should -Be 1
        $all.Remove('RANK'); $all.Remove('WORLD_SIZE')
        $script:RankEnvironment::Detect($all, $null, $null).ProcessRank | Should -Be 2
        $e = { $script:RankEnvironment::Detect(@{ SLURM_PROCID = 'x'; SLURM_NTASKS = '4' }, $null, $null) } | Should -Throw -PassThru
        $e.Exception.InnerException.ErrorId | Should -Be 'RankVariableInvalid'
        $e.Exception.InnerException.Message | Should -Match "SLURM_PROCID='x'"
    }

    It 'Get-DiffusionRank in a process started by mpirun sees its rank, and rank 0 of 1 outside a launcher' {
        $outside = Get-DiffusionRank
        $outside.ProcessRank, $outside.WorldSize, $outside.Launcher, $outside.Device | Should -Be 0, 1, 'none', 'cpu'
        $start = [Diagnostics.ProcessStartInfo]::new((Get-Process -Id $PID).Path)
        if ((Split-Path $start.FileName -Leaf) -like 'dotnet*') { $start.ArgumentList.Add([Reflection.Assembly]::GetEntryAssembly().Location) }
        '-NoProfile', '-NonInteractive', '-Command', "Import-Module '$script:ModulePath'; Get-DiffusionRank | ConvertTo-Json -Compress" | ForEach-Object { $start.ArgumentList.Add($_) }
        $start.Environment['OMPI_COMM_WORLD_RANK'] = '2'; $start.Environment['OMPI_COMM_WORLD_SIZE'] = '3'; $start.Environment['OMPI_COMM_WORLD_LOCAL_RANK'] = '0'
        $start.RedirectStandardOutput = $true
        $process = [Diagnostics.Process]::Start($start)
        $json = $process.StandardOutput.ReadToEnd(); $process.WaitForExit()
        $info = $json | ConvertFrom-Json
        $info.ProcessRank, $info.WorldSize, $info.Launcher, $info.Device | Should -Be 2, 3, 'Open MPI', 'cpu'
    }

    It 'a bad variable is an error that names it' {
        try {
            $env:WORLD_SIZE = 'four'; $env:RANK = '0'
            { Get-DiffusionRank } | Should -Throw -ErrorId 'RankVariableInvalid*' -ExpectedMessage "*WORLD_SIZE='four'*"
            $env:WORLD_SIZE = '2'; $env:RANK = '2'
            { Get-DiffusionRank } | Should -Throw -ExpectedMessage '*RANK 2 is not below WORLD_SIZE 2*'
        } finally { Remove-Item env:WORLD_SIZE, env:RANK -ErrorAction Ignore }
    }
}

Describe 'Start-DiffusionParallel' {
    It 'starts workers with rank variables and one device each, and outputs their objects in rank order' {
        # Rank 0 finishes last: its objects still come first.
        $out = Start-DiffusionParallel -NumProcesses 3 -Device cpu -ArgumentList 'hello' -ScriptBlock {
            param($Greeting)
            if ($env:RANK -eq '0') { Start-Sleep -Milliseconds 1500 }
            if ($env:RANK -eq '1') { Write-Error 'a non-terminating error'; Write-Warning 'a warning' }
            [pscustomobject]@{ Greeting = $Greeting; Pid = $PID; Visible = $env:CUDA_VISIBLE_DEVICES; Threads = $env:OMP_NUM_THREADS; Info = Get-DiffusionRank }
        } -ErrorVariable errors -ErrorAction SilentlyContinue -WarningVariable warnings -WarningAction SilentlyContinue
        $out.ProcessRank | Should -Be 0, 1, 2
        $out.Info.ProcessRank | Should -Be 0, 1, 2
        $out.Info.WorldSize | Should -Be 3, 3, 3
        $out.Info.LocalRank | Should -Be 0, 1, 2
        $out.Info.Device | Should -Be 'cpu', 'cpu', 'cpu'
        $out.Greeting | Should -Be 'hello', 'hello', 'hello'
        $out.Visible | Should -Be '', '', ''
        $out.Threads | Sort-Object -Unique | Should -Be ([string][Math]::Max(1, [Math]::Floor([Environment]::ProcessorCount / 3)))
        ($out.Pid + $PID | Sort-Object -Unique).Count | Should -Be 4
        "$errors" | Should -Match '\[rank 1\] a non-terminating error'
        "$warnings" | Should -Match '\[rank 1\] a warning'
    }

    It 'reports a worker that throws, exits with a code or dies, with its rank, and keeps the others'' results' {
        $script = Join-Path $script:Temp 'worker.ps1'
        Set-Content $script @'
"output of rank $env:RANK"
switch ($env:RANK) {
    '1' { throw 'a bad prompt' }
    '2' { exit 4 }
    '3' { [Environment]::Exit(3) }
}
'@
        $out = Start-DiffusionParallel -NumProcesses 4 -FilePath $script -ErrorVariable errors -ErrorAction SilentlyContinue
        $out | Should -Be 'output of rank 0', 'output of rank 1', 'output of rank 2', 'output of rank 3'
        $failed = @($errors | Where-Object { $_.FullyQualifiedErrorId -like 'ParallelWorkerFailed*' } | Sort-Object { $_.TargetObject.ProcessRank })
        $failed.TargetObject.ProcessRank | Should -Be 1, 2, 3
        "$($failed[0])" | Should -Match 'Worker rank 1 .*a bad prompt'
        "$($failed[1])" | Should -Match 'Worker rank 2 .*exited with code 4'
        $failed[2].TargetObject.ExitCode | Should -Be 3
        $failed[2].TargetObject.ProcessDied | Should -BeTrue
        "$($failed[2])" | Should -Match 'Worker rank 3 .*exit code 3'
    }

    It 'Ctrl+C kills every worker and what the workers started' {
        $pids = Join-Path $script:Temp 'pids'
        New-Item -ItemType Directory $pids | Out-Null
        $scriptCopies = { @(Get-ChildItem ([IO.Path]::GetTempPath()) -Filter 'diffusion-worker-*.ps1').Count }
        $copiesBefore = & $scriptCopies
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript(@"
Import-Module '$script:ModulePath'
Start-DiffusionParallel -NumProcesses 2 -ArgumentList '$pids' -ScriptBlock {
    param(`$Folder)
    `$child = if (`$IsWindows) { Start-Process ping.exe '-n 300 127.0.0.1' -PassThru -WindowStyle Hidden } else { Start-Process sleep 300 -PassThru }
    "`$PID `$(`$child.Id)" | Set-Content (Join-Path `$Folder "`$env:RANK.txt")
    Start-Sleep 300
}
"@)
            $async = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(90)
            while (@(Get-ChildItem $pids -Filter *.txt).Count -lt 2 -and -not $async.IsCompleted -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
            Start-Sleep -Milliseconds 300 # both files fully written
            $ids = @(Get-ChildItem $pids -Filter *.txt | ForEach-Object { (Get-Content $_.FullName) -split ' ' } | ForEach-Object { [int]$_ })
            $ids.Count | Should -Be 4
            $ps.Stop()
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            $deadline = [DateTime]::UtcNow.AddSeconds(10)
            while (@(Get-Process -Id $ids -ErrorAction Ignore).Count -gt 0 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
            @(Get-Process -Id $ids -ErrorAction Ignore) | Should -BeNullOrEmpty
            & $scriptCopies | Should -Be $copiesBefore -Because 'the script block''s file is deleted however the workers end'
        } finally { $ps.Dispose() }
    }
}

Describe 'Invoke-Diffusion in several processes' {
    BeforeAll {
        # CPU results depend on the number of threads: give every worker one, whatever the number of processes.
        $env:OMP_NUM_THREADS = '1'
        $script:Prompts = 'a photo of a dog', 'a red car', 'a house', 'a tree', 'a cat on a roof'
        $script:Common = @{ Path = $script:SdTiny; Prompt = $script:Prompts; Seed = 10; Steps = 2; Height = 64; Width = 64 }
        $script:One = Invoke-Diffusion @Common -NumProcesses 1 -OutputPath (Join-Path $script:Temp 'one/{index:000}.png')
        $script:OneHashes = Get-Hashes (Join-Path $script:Temp 'one')
    }
    AfterAll { Remove-Item env:OMP_NUM_THREADS, env:DIFFUSION_TEST_EXIT_RANK -ErrorAction Ignore }

    It 'writes the same files with 3 processes as with 1, and returns one result per prompt in prompt order' {
        $three = Invoke-Diffusion @Common -NumProcesses 3 -OutputPath (Join-Path $script:Temp 'three/{index:000}.png')
        $three.Index | Should -Be 0, 1, 2, 3, 4
        $three.Prompt | Should -Be $script:Prompts
        $three.Seed | Should -Be 10, 11, 12, 13, 14
        $three.ProcessRank | Should -Be 0, 0, 1, 1, 2
        $three.Device | Should -Be 'cpu', 'cpu', 'cpu', 'cpu', 'cpu'
        $three.Path | ForEach-Object { Test-Path $_ | Should -BeTrue }
        $script:One.ProcessRank | Should -Be 0, 0, 0, 0, 0
        $script:OneHashes.Count | Should -Be 5
        Get-Hashes (Join-Path $script:Temp 'three') | Should -Be $script:OneHashes
    }

    It 'reports the prompts of a worker that died and keeps the others'' images' {
        $env:DIFFUSION_TEST_EXIT_RANK = '1:1' # rank 1 exits after its first image (#2), before #3
        try {
            $folder = Join-Path $script:Temp 'died'
            $results = Invoke-Diffusion @Common -NumProcesses 3 -OutputPath "$folder/{index:000}.png" -ErrorVariable errors -ErrorAction SilentlyContinue
        } finally { Remove-Item env:DIFFUSION_TEST_EXIT_RANK }
        $results.Index | Should -Be 0, 1, 2, 4
        $worker = @($errors | Where-Object { $_.FullyQualifiedErrorId -like 'ParallelWorkerFailed*' })
        $worker.Count | Should -Be 1
        $worker[0].TargetObject.ProcessRank | Should -Be 1
        $worker[0].TargetObject.ExitCode | Should -Be 86
        $prompt = @($errors | Where-Object { $_.FullyQualifiedErrorId -like 'ParallelPromptFailed*' })
        $prompt.TargetObject | Should -Be 3
        "$($prompt[0])" | Should -Match "Prompt #3 'a tree' was not generated: worker rank 1"
        Get-Hashes $folder | Should -Be ($script:OneHashes | Where-Object { $_ -notlike '003.png=*' })
    }

    It 'with -Retry reruns them on the surviving workers: no prompt missing, none twice, the same images' {
        $env:DIFFUSION_TEST_EXIT_RANK = '1:1'
        try {
            $folder = Join-Path $script:Temp 'retried'
            $results = Invoke-Diffusion @Common -NumProcesses 3 -Retry 1 -OutputPath "$folder/{index:000}.png" -ErrorVariable errors -ErrorAction SilentlyContinue -WarningVariable warnings -WarningAction SilentlyContinue
        } finally { Remove-Item env:DIFFUSION_TEST_EXIT_RANK }
        $results.Index | Should -Be 0, 1, 2, 3, 4
        $results[3].ProcessRank | Should -BeIn 0, 2
        @($errors | Where-Object { $_.FullyQualifiedErrorId -like 'ParallelPromptFailed*' }) | Should -BeNullOrEmpty
        "$warnings" | Should -Match 'Retrying 1 prompt'
        Get-Hashes $folder | Should -Be $script:OneHashes
    }

    It 'passes -GuidanceRescale to the workers: the PNGs record it and equal a one-worker run' {
        $rescaled = @{ Path = $script:SdTiny; Prompt = $script:Prompts[0..1]; Seed = 10; Steps = 2; Height = 64; Width = 64; GuidanceRescale = 0.7 }
        $two = Invoke-Diffusion @rescaled -NumProcesses 2 -OutputPath (Join-Path $script:Temp 'rescale-two/{index:000}.png')
        $two.Index | Should -Be 0, 1
        $single = Invoke-Diffusion @rescaled -NumProcesses 1 -OutputPath (Join-Path $script:Temp 'rescale-one/{index:000}.png')
        Get-Hashes (Join-Path $script:Temp 'rescale-two') | Should -Be (Get-Hashes (Join-Path $script:Temp 'rescale-one'))
        $script:DiffusionImageType::ReadParameters($two[0].Path).GuidanceRescale | Should -Be 0.7
        Get-Hashes (Join-Path $script:Temp 'rescale-two') | Should -Not -Be ($script:OneHashes[0..1])
    }

    It 'needs an -OutputPath that names every image apart' {
        { Invoke-Diffusion -Path $script:SdTiny -Prompt 'a', 'b' -NumProcesses 2 } | Should -Throw -ErrorId 'ParallelOutputPathMissing*'
        { Invoke-Diffusion -Path $script:SdTiny -Prompt 'a', 'b' -NumProcesses 2 -OutputPath (Join-Path $script:Temp 'same.png') } | Should -Throw -ErrorId 'ParallelOutputPathNeedsIndex*'
        { Invoke-Diffusion -Path $script:SdTiny -Prompt 'a' -Retry 1 -OutputPath (Join-Path $script:Temp 'x.png') } | Should -Throw -ErrorId 'RetryWithoutParallel*'
    }
}

Describe 'A seed per prompt' {
    BeforeAll { $script:Pipe = New-DiffusionPipeline $script:SdTiny }
    AfterAll { Remove-DiffusionPipeline $script:Pipe }

    It 'gives prompt i the seed Seed+i, so an image does not depend on the prompts beside it' {
        $both = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a dog', 'a cat' -SeedPerPrompt -Seed 5 -Steps 2 -Height 64 -Width 64
        $both.Parameters.Seed | Should -Be 5, 6
        $alone = Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat' -PromptIndex 1 -SeedPerPrompt -Seed 5 -Steps 2 -Height 64 -Width 64
        $alone.Index | Should -Be 1
        [Convert]::ToBase64String($alone.GetRgb()) | Should -Be ([Convert]::ToBase64String($both[1].GetRgb()))
        # The default stays diffusers' batch: one generator, seeded once, for all prompts.
        (Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a dog', 'a cat' -Seed 5 -Steps 2 -Height 64 -Width 64).Parameters.Seed | Should -Be 5, 5
    }

    It 'works the same in Invoke-Denoise, one embedding per run' {
        $emb = ConvertTo-DiffusionEmbedding -Pipeline $script:Pipe 'a dog', 'a cat'
        $lat = $emb | Invoke-Denoise -Pipeline $script:Pipe -SeedPerPrompt -Seed 5 -Steps 2 -Height 64 -Width 64
        $lat.Seed | Should -Be 5, 6
        $second = $emb[1] | Invoke-Denoise -Pipeline $script:Pipe -SeedPerPrompt -Seed 5 -Steps 2 -Height 64 -Width 64
        Assert-TensorClose $lat[1].Latents $second.Latents 0 0 'latents of prompt #1' | Out-Null
        { $emb | Invoke-Denoise -Pipeline $script:Pipe -SeedPerPrompt -BatchSize 2 -Steps 2 } | Should -Throw -ErrorId 'SeedPerPromptBatch*'
    }
}

Describe 'Help of the parallel cmdlets' {
    It 'has a synopsis, a description, examples and every parameter for <_>' -ForEach 'Split-Prompt', 'Get-DiffusionRank', 'Start-DiffusionParallel', 'Invoke-Diffusion' {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -Match '^\s*\S+ \['
        $help.description | Should -Not -BeNullOrEmpty
        @($help.examples.example).Count | Should -BeGreaterThan 0
        foreach ($p in (Get-Command $_).Parameters.Values | Where-Object { $_.Name -notin [System.Management.Automation.PSCmdlet]::CommonParameters -and $_.Name -notin 'WhatIf', 'Confirm' }) {
            ($help.parameters.parameter | Where-Object name -eq $p.Name).description | Should -Not -BeNullOrEmpty -Because "-$($p.Name) of $_ needs a description"
        }
    }
}
