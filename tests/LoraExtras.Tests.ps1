# Invoke-Diffusion -Lora (one process and parallel workers), -ParseLoraTags (A1111's <lora:name:scale>), and SDXL LoRA
# against the math done here. The -Lora and tag runs compute the same operations on the same numbers as the runs they
# are compared with (adapters added, or their scales set, by hand), so they are compared bit for bit (max diff 0).
BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:SdLora = Join-Path $script:Fixtures 'lora/sd-tiny-lora.safetensors'
    $script:KohyaLora = Join-Path $script:Fixtures 'lora/sd-tiny-lora-kohya.safetensors'
    $script:LoraTags = Get-EngineType 'Diffusion.Engine.Lora.LoraTags'
    $script:Temp = Join-Path ([IO.Path]::GetTempPath()) ("diffusion-loraextras-" + [guid]::NewGuid())
    New-Item -ItemType Directory $script:Temp | Out-Null
    $script:Pipe = New-DiffusionPipeline $script:SdTiny
    $script:Small = @{ Steps = 2; Width = 64; Height = 64 }

    function Get-Pixels($images) { Join-TensorStack @($images | ForEach-Object { $_.GetPixels() }) }
    function Assert-SamePixels($a, $b, [string] $what) { $null = Assert-TensorClose (Get-Pixels $a) (Get-Pixels $b) 0 0 $what }
    function Get-Hashes([string] $folder) {
        Get-ChildItem $folder -Filter *.png | Sort-Object Name | ForEach-Object { "$($_.Name)=$((Get-FileHash $_.FullName).Hash)" }
    }
}

AfterAll {
    if ($script:Pipe) { Remove-DiffusionPipeline $script:Pipe }
    Clear-DiffusionMemory
    if ($script:Temp -and $script:Temp.StartsWith([IO.Path]::GetTempPath()) -and (Split-Path $script:Temp -Leaf).StartsWith('diffusion-loraextras-')) {
        Remove-Item -LiteralPath $script:Temp -Recurse -Force -ErrorAction Ignore
    }
}

Describe 'Invoke-Diffusion -Lora' {
    It 'with -Path adds the files (Get-Item output, at scale 1): the images of the pipeline with the LoRA added' {
        $byHand = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora
        try { $expected = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat', 'a dog' -Seed 5 @script:Small -LoraScale 0.7) }
        finally { $byHand | Remove-DiffusionLora }
        $images = @(Invoke-Diffusion -Path $script:SdTiny -Lora (Get-Item $script:SdLora) -Prompt 'a cat', 'a dog' -Seed 5 @script:Small -LoraScale 0.7)
        Assert-SamePixels $expected $images '-Lora images'
        $images[0].Parameters.Loras | Should -Match '^sd-tiny-lora: [0-9a-f]{12}: 0\.7$'
        $plain = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat' -Seed 5 @script:Small)
        ($script:TensorComparison::Compare((Get-Pixels $plain), (Get-Pixels $images[0]), 0, 0, 'plain').MaxAbsDifference) | Should -BeGreaterThan 0
    }

    # CPU kernels sum in an order that depends on their thread count: both sides compute on one thread (the workers
    # through OMP_NUM_THREADS, this session through torch.set_num_threads), so the bytes can be compared.
    It 'two processes with -Lora @{ path = scale } save byte-identical images to one process with the LoRA added' {
        $byHand = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora -Scale 0.5
        $threads = $script:Torch::get_num_threads()
        try {
            $script:Torch::set_num_threads(1)
            $one = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat', 'a dog' -SeedPerPrompt -Seed 10 @script:Small -LoraScale 0.8 `
                    -OutputPath (Join-Path $script:Temp 'one/{index:000}.png'))
        }
        finally { $script:Torch::set_num_threads($threads); $byHand | Remove-DiffusionLora }
        $omp = $env:OMP_NUM_THREADS
        try {
            $env:OMP_NUM_THREADS = '1'
            $two = @(Invoke-Diffusion -Path $script:SdTiny -Lora @{ $script:SdLora = 0.5 } -Prompt 'a cat', 'a dog' -NumProcesses 2 -Seed 10 @script:Small `
                    -LoraScale 0.8 -OutputPath (Join-Path $script:Temp 'two/{index:000}.png'))
        }
        finally { $env:OMP_NUM_THREADS = $omp }
        $two.Index | Should -Be 0, 1
        $two.ProcessRank | Should -Be 0, 1
        $one.Count | Should -Be 2
        Get-Hashes (Join-Path $script:Temp 'two') | Should -Be (Get-Hashes (Join-Path $script:Temp 'one'))
        (Get-DiffusionImageInfo -LiteralPath $two[1].Path).Loras | Should -Match '^sd-tiny-lora: [0-9a-f]{12}: 0\.4$'
    }

    It 'a -Lora file that does not exist stops the call before any model is loaded' {
        { Invoke-Diffusion -Path $script:SdTiny -Lora (Join-Path $script:Temp 'missing.safetensors') -Prompt 'a cat' @script:Small -ErrorAction Stop } |
            Should -Throw -ErrorId 'LoraFileNotFound,Diffusion.Cmdlets.InvokeDiffusionCommand'
    }

    It 'a -Lora scale that is not a number is refused when the argument is bound' {
        { Invoke-Diffusion -Path $script:SdTiny -Lora @{ $script:SdLora = 'strong' } -Prompt 'a cat' -ErrorAction Stop } |
            Should -Throw -ErrorId 'ParameterArgumentTransformationError,Diffusion.Cmdlets.InvokeDiffusionCommand'
    }
}

Describe 'Invoke-Diffusion -ParseLoraTags' {
    BeforeAll {
        # Before any adapter: the no-LoRA images.
        $script:Plain = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat', 'a dog' -Seed 3 @script:Small)
        $script:Style = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:SdLora -Name style
        $script:Ink = Add-DiffusionLora -Pipeline $script:Pipe -Path $script:KohyaLora -Name ink -Scale 0.3
    }
    AfterAll { Remove-DiffusionLora -Pipeline $script:Pipe }

    It 'takes the tags out of the text and tidies what they leave, as <text> from <prompt>' -ForEach @(
        @{ Prompt = 'a cat, <lora:style:0.5>, in snow'; Text = 'a cat, in snow' }
        @{ Prompt = '<lora:style>  a cat   <LORA:ink:-1.25>'; Text = 'a cat' }
        @{ Prompt = 'a cat, <lora:style:0.5>'; Text = 'a cat' }
        @{ Prompt = 'a cat <hypernet:x:1>'; Text = 'a cat <hypernet:x:1>' }
    ) {
        $script:LoraTags::Parse($Prompt).Item1 | Should -BeExactly $Text
    }

    It 'reads names and scales (default 1; a name tagged twice adds up) and refuses a scale that is not a number' {
        $tags = $script:LoraTags::Parse('<lora:style:0.5> a <lora:ink> b <lora:Style:0.25>').Item2
        $tags.Name | Should -Be 'style', 'ink'
        $tags.Scale | Should -Be 0.75, 1
        { $script:LoraTags::Parse('a <lora:style:strong>') } | Should -Throw '*not a number*'
    }

    It 'tagged prompts give the images of the same runs with the adapters'' scales set by hand; prompts with other tags run apart' {
        $prompts = 'a cat <lora:style:0.5>', 'a dog <lora:STYLE:0.5>', 'a cat, <lora:ink>'
        $tagged = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt $prompts -ParseLoraTags -Seed 3 @script:Small -LoraScale 0.9)
        $tagged.Count | Should -Be 3
        try {
            $script:Style.Scale = 0.5; $script:Ink.Scale = 0
            $first = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat', 'a dog' -Seed 3 @script:Small -LoraScale 0.9) # one batch, as the tagged pair
            $script:Style.Scale = 0; $script:Ink.Scale = 1
            $second = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat' -Seed 3 @script:Small -LoraScale 0.9)            # a run of its own
        }
        finally { $script:Style.Scale = 1; $script:Ink.Scale = 0.3 }
        Assert-SamePixels ($first + $second) $tagged 'tagged images'
        $tagged.Prompt | Should -Be $prompts -Because 'the parameters keep the prompt as written, as A1111 records it'
        $tagged[0].Parameters.ToString() | Should -Match ([regex]::Escape('a cat <lora:style:0.5>'))
        $tagged[0].Parameters.Loras | Should -Match '^style: [0-9a-f]{12}: 0\.45$'
        $tagged[2].Parameters.Loras | Should -Match '^ink: [0-9a-f]{12}: 0\.9$'
        $script:Style.Scale | Should -Be 1 -Because 'the tags set scales for their run only'
        $script:Ink.Scale | Should -Be 0.3
    }

    It 'a prompt without tags runs with every adapter off: the no-LoRA images' {
        $untagged = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat', 'a dog' -ParseLoraTags -Seed 3 @script:Small)
        Assert-SamePixels $script:Plain $untagged 'untagged images'
        $untagged[0].Parameters.ToString() | Should -Not -Match 'Lora'
    }

    It 'a tag naming no adapter is an error for its prompt, naming the adapters there are; the others are made' {
        $images = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat <lora:nope>', 'a dog <lora:style>' -ParseLoraTags -Seed 3 @script:Small `
                -ErrorVariable failures -ErrorAction SilentlyContinue)
        $images.Count | Should -Be 1
        $images[0].Prompt | Should -Be 'a dog <lora:style>'
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'LoraNotFound*'
        $failures[0].ToString() | Should -Match "'nope'.*style, ink"
    }

    It 'in a parallel run the workers read the tags: -Lora files by name; an unknown tag is one error for its prompt' {
        $results = @(Invoke-Diffusion -Path $script:SdTiny -Lora $script:SdLora -ParseLoraTags -Prompt 'a cat <lora:SD-TINY-LORA:0.5>', 'a dog <lora:nope>' `
                -NumProcesses 2 -Seed 10 -Steps 1 -Width 64 -Height 64 -OutputPath (Join-Path $script:Temp 'tags/{index:000}.png') -ErrorVariable failures -ErrorAction SilentlyContinue)
        $results.Index | Should -Be 0
        (Get-DiffusionImageInfo -LiteralPath $results[0].Path).Loras | Should -Match '^sd-tiny-lora: [0-9a-f]{12}: 0\.5$'
        $failures.Count | Should -Be 1 -Because 'the worker''s error is the prompt''s outcome, not followed by a second one'
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'LoraNotFound*'
        $failures[0].ToString() | Should -Match 'sd-tiny-lora'
    }

    It 'without the switch the tags are plain prompt text, and every adapter runs at its own scale' {
        $image = @(Invoke-Diffusion -Pipeline $script:Pipe -Prompt 'a cat <lora:nope>' -Seed 3 -Steps 1 -Width 64 -Height 64)
        $image.Count | Should -Be 1
        $image[0].Parameters.Loras | Should -Match '^style: [0-9a-f]{12}: 1, ink: [0-9a-f]{12}: 0\.3$'
    }
}

# No diffusers reference exists for SDXL LoRA (the reference rig has no peft): the test makes a LoRA for sdxl-tiny
# itself (seeded random A and B for every attention projection of the UNet and both text encoders) and checks the
# patched pipeline against a copy of the model whose weights it fused itself, W' = W + s * (alpha / r) * B A: the
# embeddings and latents agree within 1e-5 of their scale (the fused and the unfused sums round differently).
Describe 'SDXL LoRA against weights fused by the test' {
    BeforeAll {
        $script:Writer = Get-EngineType 'Diffusion.Engine.IO.SafeTensorsWriter'
        $script:SdxlTiny = Join-Path $script:Fixtures 'sdxl-tiny'
        $script:Rank = 2
        $script:Alpha = 1.0   # kohya's alpha: scaling alpha / r = 0.5; the diffusers file (no alpha: 1) carries 0.5 * B
        $script:AdapterScale = 0.7
        $weightFiles = [ordered]@{
            unet = 'unet/diffusion_pytorch_model.safetensors'; text_encoder = 'text_encoder/model.safetensors'; text_encoder_2 = 'text_encoder_2/model.safetensors'
        }
        $kohyaPrefix = @{ unet = 'lora_unet_'; text_encoder = 'lora_te1_'; text_encoder_2 = 'lora_te2_' }
        $targets = @{ unet = '\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$'; text_encoder = '\.self_attn\.(q|k|v|out)_proj\.weight$'; text_encoder_2 = '\.self_attn\.(q|k|v|out)_proj\.weight$' }

        $script:Fused = Join-Path $script:Temp 'sdxl-fused'
        Copy-Item $script:SdxlTiny $script:Fused -Recurse
        function Get-Scaled($t, [double] $k) { $t.mul($script:Torch::tensor([float] $k)) } # a float32 0-dim factor: Tensor.mul(Scalar) is ambiguous from PowerShell
        function New-TensorMap { [Activator]::CreateInstance([Collections.Generic.Dictionary`2].MakeGenericType([string], $script:TensorType)) }
        $diffusers = New-TensorMap
        $kohya = New-TensorMap
        $kohyaSgm = New-TensorMap
        # kohya's SDXL files name the UNet blocks as the original UNet does (layers_per_block 2: three input blocks a
        # down block, conv_in first; three output blocks an up block).
        function ConvertTo-SgmName([string] $module) {
            $m = [regex]::Match($module, '^(down|up)_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$')
            if ($m.Success) {
                $k, $j = [int]$m.Groups[2].Value, [int]$m.Groups[3].Value
                if ($m.Groups[1].Value -eq 'down') { return "input_blocks.$(3 * $k + 1 + $j).1.$($m.Groups[4].Value)" }
                return "output_blocks.$(3 * $k + $j).1.$($m.Groups[4].Value)"
            }
            if ($module.StartsWith('mid_block.attentions.0.')) { return 'middle_block.1.' + $module.Substring('mid_block.attentions.0.'.Length) }
            throw "No SGM name for $module"
        }
        $null = $script:Torch::manual_seed(20260101)
        $script:Patched = @{}
        foreach ($component in $weightFiles.Keys) {
            $file = $script:SafeTensorsFile::Open((Join-Path $script:SdxlTiny $weightFiles[$component]))
            try {
                $weights = New-TensorMap
                foreach ($key in @($file.Tensors.Keys | Sort-Object)) {
                    $w = $file.Load($key)
                    if ($key -match $targets[$component]) {
                        $module = $key.Substring(0, $key.Length - '.weight'.Length)
                        # Text encoders: diffusers' files spell the layers with transformers' text_model level.
                        if ($component -ne 'unet' -and -not $module.StartsWith('text_model.')) { $module = "text_model.$module" }
                        $a = Get-Scaled ($script:Torch::randn([long[]]($script:Rank, $w.shape[1]))) 0.3   # A [r, in]
                        $b = Get-Scaled ($script:Torch::randn([long[]]($w.shape[0], $script:Rank))) 0.3   # B [out, r]
                        $scaling = $script:Alpha / $script:Rank
                        $w = $w.add((Get-Scaled $b.matmul($a) ($script:AdapterScale * $scaling)))            # W + s (alpha/r) B A
                        $suffix = if ($component -eq 'unet') { 'lora' } else { 'lora_linear_layer' }
                        $diffusers["$component.$module.$suffix.down.weight"] = $a
                        $diffusers["$component.$module.$suffix.up.weight"] = Get-Scaled $b $scaling
                        $flat = $kohyaPrefix[$component] + $module.Replace('.', '_')
                        $kohya["$flat.lora_down.weight"] = $a
                        $kohya["$flat.lora_up.weight"] = $b
                        $kohya["$flat.alpha"] = $script:Torch::tensor([float] $script:Alpha)
                        $sgm = if ($component -eq 'unet') { $kohyaPrefix[$component] + (ConvertTo-SgmName $module).Replace('.', '_') } else { $flat }
                        $kohyaSgm["$sgm.lora_down.weight"] = $a
                        $kohyaSgm["$sgm.lora_up.weight"] = $b
                        $kohyaSgm["$sgm.alpha"] = $script:Torch::tensor([float] $script:Alpha)
                        $script:Patched[$component]++
                    }
                    $weights[$key] = $w
                }
            }
            finally { $file.Dispose() }
            $script:Writer::Save((Join-Path $script:Fused $weightFiles[$component]), $weights, $null)
        }
        $script:DiffusersFile = Join-Path $script:Temp 'sdxl-lora.safetensors'
        $script:KohyaFile = Join-Path $script:Temp 'sdxl-lora-kohya.safetensors'
        $script:Writer::Save($script:DiffusersFile, $diffusers, $null)
        $script:Writer::Save($script:KohyaFile, $kohya, $null)
        $script:KohyaSgmFile = Join-Path $script:Temp 'sdxl-lora-kohya-sgm.safetensors'
        $script:Writer::Save($script:KohyaSgmFile, $kohyaSgm, $null)

        function Invoke-SdxlRun($pipe) {
            $emb = @('a red fox in snow', 'a lighthouse' | ConvertTo-DiffusionEmbedding -Pipeline $pipe)
            $lat = @($emb | Invoke-Denoise -Pipeline $pipe -Steps 2 -Seed 9 -Height 64 -Width 64)
            [pscustomobject]@{
                Embeds = Join-Tensor $emb.PromptEmbeds; Pooled = Join-Tensor $emb.PooledPromptEmbeds; Latents = Join-Tensor $lat.Latents
            }
        }
        function Assert-RunsClose($expected, $actual, [double] $tolerance) {
            $null = Assert-TensorScaled $expected.Embeds $actual.Embeds $tolerance 'prompt_embeds'
            $null = Assert-TensorScaled $expected.Pooled $actual.Pooled $tolerance 'pooled_prompt_embeds'
            $null = Assert-TensorScaled $expected.Latents $actual.Latents $tolerance 'latents'
        }

        $script:Sdxl = New-DiffusionPipeline $script:SdxlTiny
        $script:PlainRun = Invoke-SdxlRun $script:Sdxl
        $fusedPipe = New-DiffusionPipeline $script:Fused
        try { $script:FusedRun = Invoke-SdxlRun $fusedPipe } finally { Remove-DiffusionPipeline $fusedPipe }
    }
    AfterAll { if ($script:Sdxl) { Remove-DiffusionPipeline $script:Sdxl } }

    It 'the fused weights change the run (the LoRA is not too small to see)' {
        $script:Patched['unet'] | Should -BeGreaterThan 0
        $script:Patched['text_encoder'] | Should -Be 12
        $script:Patched['text_encoder_2'] | Should -Be 12
        $c = $script:TensorComparison::Compare($script:PlainRun.Latents, $script:FusedRun.Latents, 0, 0, 'latents')
        $c.ScaledMaxDifference | Should -BeGreaterThan 1e-2
        $c = $script:TensorComparison::Compare($script:PlainRun.Pooled, $script:FusedRun.Pooled, 0, 0, 'pooled')
        $c.ScaledMaxDifference | Should -BeGreaterThan 1e-2
    }

    It 'the <Format> file (<Name>) patches the UNet and both text encoders and gives the fused run (1e-5 of scale); removing it restores bit for bit' -ForEach @(
        @{ Format = 'Diffusers'; Name = 'DiffusersFile' }
        @{ Format = 'Kohya'; Name = 'KohyaFile' }
        @{ Format = 'Kohya'; Name = 'KohyaSgmFile' }
    ) {
        $adapter = Add-DiffusionLora -Pipeline $script:Sdxl -Path (Get-Variable $Name -Scope Script -ValueOnly) -Scale $script:AdapterScale
        try {
            $adapter.Format | Should -Be $Format
            $adapter.Rank | Should -Be $script:Rank
            $adapter.Layers['unet'] | Should -Be $script:Patched['unet']
            $adapter.Layers['text_encoder'] | Should -Be 12
            $adapter.Layers['text_encoder_2'] | Should -Be 12
            $run = Invoke-SdxlRun $script:Sdxl
        }
        finally { $adapter | Remove-DiffusionLora }
        Assert-RunsClose $script:FusedRun $run 1e-5
        $after = Invoke-SdxlRun $script:Sdxl
        Assert-RunsClose $script:PlainRun $after 0
    }
}
