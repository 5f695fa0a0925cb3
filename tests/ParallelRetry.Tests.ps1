# Invoke-Diffusion -NumProcesses with workers killed around their saves (issue 10, item 1): every prompt comes back
# exactly once, as a result or as a ParallelPromptFailed error, and the results are the files on disk.
# The workers kill themselves (SIGKILL) through the DIFFUSION_TEST_KILL hook (see cmdlets/Parallel/WorkerTestHooks.cs).
# RandomRuns: how many kills at random moments (CI: 1; bench/parallel-retry-soak.ps1 runs 50).
param([int] $RandomRuns = 1)

BeforeDiscovery {
    # Chosen here so that the test names say what was run: a failure can be rerun as it was.
    $script:RandomKills = @(1..$RandomRuns | ForEach-Object { @{ Run = $_; Rank = Get-Random -Minimum 0 -Maximum 2; Milliseconds = Get-Random -Minimum 0 -Maximum 1600 } })
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-parallel-retry-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    # Launcher variables of whatever runs these tests (CI under Slurm, say) must not leak into them.
    $script:LauncherVariables = 'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID',
        'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK', 'PMI_RANK', 'PMI_SIZE', 'MPI_LOCALRANKID',
        'OMP_NUM_THREADS', 'DIFFUSION_TEST_EXIT_RANK', 'DIFFUSION_TEST_KILL', 'DIFFUSION_TEST_LATE_OUTPUT', 'TMPDIR', 'TMP', 'TEMP'
    $script:SavedVariables = @{}
    foreach ($name in $script:LauncherVariables) {
        $script:SavedVariables[$name] = [Environment]::GetEnvironmentVariable($name)
        Remove-Item "env:$name" -ErrorAction Ignore
    }
    # CPU results depend on the number of threads: one per worker, whatever the number of processes.
    $env:OMP_NUM_THREADS = '1'
    # The runs' own temporary files (their journals) go here, so that a test can see that none is left behind.
    $script:RunTemp = Join-Path $script:Temp 'tmp'
    New-Item -ItemType Directory $script:RunTemp | Out-Null
    $env:TMPDIR = $env:TMP = $env:TEMP = $script:RunTemp

    $script:Prompts = 'a photo of a dog', 'a red car', 'a house', 'a tree'
    $script:Common = @{ Path = $script:SdTiny; Prompt = $script:Prompts; Seed = 10; Steps = 2; Height = 64; Width = 64 }
    # The images as an undisturbed run makes them: 2 workers, rank 0 with prompts #0 and #1, rank 1 with #2 and #3.
    $reference = Invoke-Diffusion @Common -NumProcesses 2 -OutputPath (Join-Path $script:Temp 'reference/{index:000}.png')
    $script:ReferenceHashes = @($reference | ForEach-Object { (Get-FileHash $_.Path).Hash })

    # Runs the prompts with a worker killed as $Kill says (DIFFUSION_TEST_KILL); returns what came back.
    function Invoke-KilledRun([string] $Kill, [int] $Retry, [int] $NumProcesses = 2, [string] $LateOutput, [string] $Folder) {
        $folder = if ($Folder) { $Folder } else { Join-Path $script:Temp ("run-" + [guid]::NewGuid().ToString('N').Substring(0, 8)) }
        $env:DIFFUSION_TEST_KILL = $Kill
        if ($LateOutput) { $env:DIFFUSION_TEST_LATE_OUTPUT = $LateOutput }
        try {
            $results = @(Invoke-Diffusion @script:Common -NumProcesses $NumProcesses -Retry $Retry -OutputPath "$folder/{index:000}.png" `
                    -ErrorVariable errors -ErrorAction SilentlyContinue -WarningVariable warnings -WarningAction SilentlyContinue)
        } finally { Remove-Item env:DIFFUSION_TEST_KILL, env:DIFFUSION_TEST_LATE_OUTPUT -ErrorAction Ignore }
        [pscustomobject]@{
            Results = $results
            Errors = @($errors)
            Warnings = @($warnings)
            Folder = $folder
            Failed = @($errors | Where-Object { $_.FullyQualifiedErrorId -like 'ParallelPromptFailed*' } | ForEach-Object { [int]$_.TargetObject })
            # A worker's own error for a prompt it could not save names the image: its index from the file name.
            Refused = @($errors | Where-Object { $_.FullyQualifiedErrorId -like 'ImageFileExists*' } | ForEach-Object { [int][IO.Path]::GetFileNameWithoutExtension("$($_.TargetObject)") })
            Workers = @($errors | Where-Object { $_.FullyQualifiedErrorId -like 'ParallelWorkerFailed*' } | ForEach-Object { $_.TargetObject })
        }
    }

    # What holds however a worker died: each prompt once, as a result or as an error for it (ParallelPromptFailed, or
    # the worker's ImageFileExists for a file that was there before: $Existing); the results in prompt order, each the
    # file on disk with the right image; no file besides them and $Existing; no other error; no journal left.
    function Assert-EveryPromptOnce($run, [int[]] $Existing = @()) {
        $indices = @($run.Results.Index) + $run.Failed + $run.Refused | Sort-Object
        $indices -join ',' | Should -Be '0,1,2,3' -Because "every prompt comes back once, as a result ($($run.Results.Index -join ',')) or an error for it ($(@($run.Failed) + $run.Refused -join ',')): LOST OR DOUBLED"
        @($run.Results.Index) -join ',' | Should -Be ((@($run.Results.Index) | Sort-Object) -join ',') -Because 'results come in prompt order'
        @($run.Refused | Where-Object { $_ -notin $Existing }) | Should -BeNullOrEmpty -Because 'only a file that was there before the run is refused'
        @($run.Errors | Where-Object { $_.FullyQualifiedErrorId -notlike 'ParallelWorkerFailed*' -and $_.FullyQualifiedErrorId -notlike 'ParallelPromptFailed*' -and $_.FullyQualifiedErrorId -notlike 'ImageFileExists*' } |
                ForEach-Object { "$($_.FullyQualifiedErrorId): $_" }) | Should -BeNullOrEmpty
        $files = @(Get-ChildItem $run.Folder -Recurse -File -Force -ErrorAction Ignore | ForEach-Object FullName | Sort-Object)
        $expected = @($run.Results.Path) + @($Existing | ForEach-Object { Join-Path $run.Folder ('{0:000}.png' -f $_) })
        $files -join "`n" | Should -Be (($expected | Sort-Object) -join "`n") -Because 'the results are the files on disk, and nothing else is left there'
        foreach ($r in $run.Results) {
            $r.Path | Should -Be (Join-Path $run.Folder ('{0:000}.png' -f $r.Index))
            $r.Prompt | Should -Be $script:Prompts[$r.Index]
            $r.Seed | Should -Be (10 + $r.Index)
            $r.Device | Should -Be 'cpu'
            $saved = $script:DiffusionImageType::ReadParameters($r.Path)
            $saved.Seed, $saved.Prompt | Should -Be $r.Seed, $r.Prompt
            (Get-FileHash $r.Path).Hash | Should -Be $script:ReferenceHashes[$r.Index] -Because "image #$($r.Index) is the one an undisturbed run makes"
        }
        @(Get-ChildItem $script:RunTemp -Filter 'diffusion-run-*' -Force) | Should -BeNullOrEmpty -Because 'the run leaves no journal behind'
    }

    # The one killed worker's error: its rank, and that its process died.
    function Assert-KilledWorker($run, [int] $rank) {
        $run.Workers.Count | Should -Be 1
        $run.Workers[0].ProcessRank | Should -Be $rank
        $run.Workers[0].ProcessDied | Should -BeTrue
    }
}

AfterAll {
    foreach ($name in $script:LauncherVariables) {
        Remove-Item "env:$name" -ErrorAction Ignore
        if ($null -ne $script:SavedVariables[$name]) { Set-Item "env:$name" $script:SavedVariables[$name] }
    }
    Remove-Item $script:Temp -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'A parallel run whose worker is killed around a save' {
    It 'killed right after saving an image, before anything else: the retry adopts the file instead of meeting ImageFileExists' {
        $run = Invoke-KilledRun -Kill '1:after-save:1' -Retry 1 # rank 1 has #2 and #3: dies with 002.png in place
        Assert-EveryPromptOnce $run
        Assert-KilledWorker $run 1
        $run.Results.Index -join ',' | Should -Be '0,1,2,3'
        $run.Results[2].ProcessRank | Should -Be 1 -Because 'rank 1 made 002.png before it died'
        $run.Results[3].ProcessRank | Should -Be 0
        "$($run.Warnings)" | Should -Match 'Retrying 1 prompt'
    }

    It 'killed after saving and recording an image, before its result reached the parent: the image is a result; without -Retry only the unsaved prompt fails' {
        $run = Invoke-KilledRun -Kill '1:before-result:1' -Retry 0
        Assert-EveryPromptOnce $run
        Assert-KilledWorker $run 1
        $run.Results.Index -join ',' | Should -Be '0,1,2'
        $run.Results[2].ProcessRank | Should -Be 1
        $run.Failed | Should -Be 3
        "$($run.Errors | Where-Object { $_.FullyQualifiedErrorId -like 'ParallelWorkerFailed*' })" | Should -Match '1 of its prompts was not generated: #3\.'
    }

    It 'killed right before a save: its prompts are made again on the surviving worker' {
        $run = Invoke-KilledRun -Kill '1:before-save:1' -Retry 1
        Assert-EveryPromptOnce $run
        Assert-KilledWorker $run 1
        $run.Results.Index -join ',' | Should -Be '0,1,2,3'
        $run.Results.ProcessRank -join ',' | Should -Be '0,0,0,0'
        "$($run.Warnings)" | Should -Match 'Retrying 2 prompt'
    }

    It 'a result that arrives after its worker''s end is taken once, in whatever round it arrives' {
        # Rank 1 sends #2's result, then dies before saving #3; the parent sees #2's result only after rank 1's end.
        $run = Invoke-KilledRun -Kill '1:before-save:2' -LateOutput '1' -Retry 1
        Assert-EveryPromptOnce $run
        Assert-KilledWorker $run 1
        $run.Results.Index -join ',' | Should -Be '0,1,2,3'
        $run.Results[2].ProcessRank | Should -Be 1
        $run.Results[3].ProcessRank | Should -Be 0
    }

    It 'a file that was there before the run is neither adopted nor overwritten, and its prompt gets one error (<Case>)' -ForEach @(
        # The worker kills itself (SIGKILL) right after its ImageFileExists error for #2: that error reaches the parent
        # only if the worker's transport sent it before the kill, so either id is the one error #2 gets.
        @{ Case = 'the worker''s error may arrive'; Late = ''; ErrorId = 'ImageFileExists', 'ParallelPromptFailed' }
        @{ Case = 'the worker''s error arrives only after its end'; Late = '1'; ErrorId = @('ParallelPromptFailed') }
    ) {
        $folder = Join-Path $script:Temp ("existing-" + [guid]::NewGuid().ToString('N').Substring(0, 8))
        New-Item -ItemType Directory $folder | Out-Null
        Copy-Item (Join-Path $script:Temp 'reference/000.png') (Join-Path $folder '002.png') # some other image as 002.png
        # Rank 1 cannot save #2 (the file is there), then dies right before saving #3.
        $run = Invoke-KilledRun -Kill '1:before-save:2' -Retry 1 -Folder $folder -LateOutput $Late
        Assert-EveryPromptOnce $run -Existing 2
        Assert-KilledWorker $run 1
        $run.Results.Index -join ',' | Should -Be '0,1,3'
        @($run.Errors | Where-Object { $id = $_.FullyQualifiedErrorId; @($ErrorId | Where-Object { $id -like "$_*" }).Count -gt 0 }).Count | Should -Be 1
        (Get-FileHash (Join-Path $folder '002.png')).Hash | Should -Be $script:ReferenceHashes[0] -Because 'the file is left as it was'
    }

    It 'with no worker left, the images the run saved are results and only the others are errors' {
        $run = Invoke-KilledRun -Kill '0:before-result:2' -Retry 1 -NumProcesses 1 # the only worker dies with 001.png saved
        Assert-EveryPromptOnce $run
        Assert-KilledWorker $run 0
        $run.Results.Index -join ',' | Should -Be '0,1'
        $run.Failed -join ',' | Should -Be '2,3'
    }

    It 'killed at a random moment (run <Run>: rank <Rank>, <Milliseconds> ms into its work), with -Retry 1: no prompt lost or doubled' -ForEach $script:RandomKills {
        $run = Invoke-KilledRun -Kill "${Rank}:random:$Milliseconds" -Retry 1
        Assert-EveryPromptOnce $run
        $run.Workers.Count | Should -BeLessOrEqual 1
        if ($run.Workers.Count -eq 1) {
            $run.Workers[0].ProcessRank | Should -Be $Rank
            $run.Failed | Should -BeNullOrEmpty -Because 'the other worker survives to take the retry'
        }
    }

    It 'Ctrl+C in the middle of a run leaves neither its journal nor half-written images' {
        $folder = Join-Path $script:Temp 'stopped'
        $ps = [powershell]::Create()
        try {
            # One script, not a batch of statements: stopping a batch can crash the host (a PowerShell bug).
            $null = $ps.AddScript('param($Module, $Arguments) Import-Module $Module; Invoke-Diffusion @Arguments').AddArgument($script:ModulePath).
                AddArgument($script:Common + @{ NumProcesses = 2; OutputPath = "$folder/{index:000}.png" })
            $async = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(120)
            while (-not (Test-Path "$folder/*.png") -and -not $async.IsCompleted -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
            @(Get-ChildItem $script:RunTemp -Filter 'diffusion-run-*').Count | Should -Be 1 -Because 'the run keeps its journal while it runs'
            $ps.Stop()
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        } finally { $ps.Dispose() }
        @(Get-ChildItem $script:RunTemp -Filter 'diffusion-run-*' -Force) | Should -BeNullOrEmpty
        @(Get-ChildItem $folder -Force | Where-Object Name -notmatch '^\d{3}\.png$') | Should -BeNullOrEmpty
    }
}
