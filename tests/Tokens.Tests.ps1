# Get-DiffusionPromptToken: what users run to check prompt length.
BeforeAll { . (Join-Path $PSScriptRoot 'TestHelpers.ps1') }

Describe 'Get-DiffusionPromptToken' {
    It 'gives the CLIP ids of a prompt, as transformers does' {
        $cases = Get-Content (Join-Path $script:Fixtures 'tokenizer_cases.json') -Raw | ConvertFrom-Json
        $case = $cases.cases | Select-Object -First 5
        foreach ($c in $case) {
            $t = Get-DiffusionPromptToken -Path (Join-Path $script:Fixtures 'tokenizers/clip') -Prompt $c.text
            $t.Ids | Should -Be $c.clip_ids_unpadded
            $t.Count | Should -Be $c.clip_ids_unpadded.Count
        }
    }

    It 'uses a model folder''s tokenizer/' {
        $t = Get-DiffusionPromptToken -Path $script:SdTiny -Prompt 'a cat'
        $t.Ids[0] | Should -Be 1512
        $t.Truncated | Should -BeFalse
    }

    It 'reports truncation and the dropped text for a long prompt' {
        $long = (1..100 | ForEach-Object { "word$_" }) -join ' '
        $t = Get-DiffusionPromptToken -Path (Join-Path $script:Fixtures 'tokenizers/clip') -Prompt $long
        $t.Truncated | Should -BeTrue
        $t.Count | Should -Be 77
        # diffusers' warning decodes the dropped ids: CLIP splits digits, so 'word100' reads 'word 1 0 0'.
        $t.TruncatedText | Should -Match 'word 1 0 0$'
    }

    It 'reads T5 tokenizers with -MaxLength' {
        $t = Get-DiffusionPromptToken -Path (Join-Path $script:FluxTiny 'tokenizer_2') -Prompt 'a photo of a dog' -MaxLength 4
        $t.Count | Should -Be 4
        $t.Ids[-1] | Should -Be 1
        $t.Truncated | Should -BeTrue
    }
}
