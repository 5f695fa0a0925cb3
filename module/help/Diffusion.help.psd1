# Help text of every cmdlet; build/New-MamlHelp.ps1 merges it with the cmdlets' metadata into en-US/Diffusion.dll-Help.xml.
@{
    'Initialize-DiffusionBackend' = @{
        Synopsis    = 'Loads the torch backend now, from the bundled CPU libtorch or from a libtorch folder such as a PyTorch install.'
        Description = 'The module loads libtorch once per process, on first use. Run this first to choose where it comes from: -LibTorchPath (or $env:DIFFUSION_LIBTORCH) pointing at a folder with libc10, libtorch_cpu and, for CUDA, libtorch_cuda, such as the torch/lib folder of a PyTorch 2.10/2.11 install. Without either, the CPU libtorch shipped with the module is used. Native libraries cannot be swapped within a process: to change the backend, start a new pwsh.'
        Parameters  = @{ LibTorchPath = 'Folder holding libtorch''s libraries. Default: $env:DIFFUSION_LIBTORCH, else the bundled CPU libtorch.' }
        Examples    = @(
            @{ Code = 'Initialize-DiffusionBackend -LibTorchPath (python3 -c "import torch,os;print(os.path.dirname(torch.__file__)+''/lib'')")'; Remarks = 'Runs on the GPUs of the PyTorch install (Linux CUDA).' }
            @{ Code = '$env:DIFFUSION_LIBTORCH = ''/opt/torch/lib''; pwsh -c ''Import-Module Diffusion; Get-DiffusionDevice'''; Remarks = 'The same through the environment, for scripts and worker processes.' }
        )
    }
    'Get-DiffusionDevice' = @{
        Synopsis    = 'Lists the compute devices with their total and free memory, what the engine holds on each, and where the backend came from.'
        Description = 'Shows cpu and every CUDA device of the loaded backend: total and free memory (from the OS or the CUDA runtime), the tensor memory the engine holds now (models, embeddings, latents) and its peak since the last Clear-DiffusionMemory, and the libtorch folder in use.'
        Parameters  = @{ Name = 'Only these devices: cpu, cuda, or cuda:N.' }
        Examples    = @(
            @{ Code = 'Get-DiffusionDevice'; Remarks = 'All devices as a short table.' }
            @{ Code = 'Get-DiffusionDevice cuda | Sort-Object FreeMemory -Descending | Select-Object -First 1'; Remarks = 'The GPU with the most free memory.' }
        )
    }
    'New-DiffusionPipeline' = @{
        Synopsis    = 'Loads a diffusers model folder (Stable Diffusion 1.x or FLUX.1), all of it or only the components one stage needs.'
        Description = 'Reads model_index.json and loads each component from its sub-folder: text encoders, UNet or transformer, VAE (safetensors only, strictly checked against config.json), tokenizers and the scheduler configuration. The pipeline object lists its components with device, dtype, parameter count and memory. For staged inference load only what a stage needs with -Component, and free it with Remove-DiffusionPipeline before the next stage. -WhatIf shows what would be loaded without loading anything.'
        Parameters  = @{
            Path      = 'The model folder: the one holding model_index.json.'
            Device    = 'cpu, cuda or cuda:N. Default: the backend''s default device.'
            DType     = 'float32 (default), float16 or bfloat16.'
            Component = 'Load only these components, e.g. text_encoder,text_encoder_2 or transformer. A text encoder brings its tokenizer, the UNet or transformer brings the scheduler.'
            Scheduler = 'A scheduler to use instead of the folder''s: a class name (EulerDiscreteScheduler) or alias (pndm, ddim, euler, euler_a, dpm++2m, dpm++2m-karras, flow-euler), or the path of a scheduler_config.json.'
            DeviceMap = 'Where the weights go, planned from the safetensors headers before loading (see about_Diffusion, "Device maps"). Several components: balanced (diffusers'' pipeline balanced: whole components dealt to the GPUs by size; one that fits no GPU is split by blocks across them), or a hashtable component -> device, e.g. @{transformer=0; text_encoder_2=1; text_encoder=1; vae=1}. One model component (-Component transformer or unet): auto or balanced (blocks spread evenly over the GPUs), balanced_low_0 (as little as possible on cuda:0), sequential (fill cuda:0, then cuda:1, then cpu, then disk), or a hashtable module path -> device, e.g. @{''''=''cpu''; transformer_blocks=0}. Blocks (FluxTransformerBlock, FluxSingleTransformerBlock, UNet down/mid/up blocks, T5 blocks, CLIP layers) are never split. Blocks on cpu or disk run on the first GPU with their weights streamed in. The plan is in $pipe.DevicePlan, $pipe.DeviceMap and $pipe.Components.<name>.DeviceMap.'
            MaxMemory = 'Memory per device for -DeviceMap, as accelerate''s max_memory: keys 0, 1 or ''cuda:0'', ''cpu'', ''disk''; values bytes or strings: ''16GB'' (10^9), ''16GiB'' (2^30), ''512MB'', ''512MiB''. A lowercase final b means bits (''8Gb'' is 1 GB), as in accelerate. Unquoted 16GB is PowerShell''s number, 16 GiB. Only the devices named are used. Default: each device''s free memory.'
            Offload   = 'The guide''s CPU offload for one GPU (-Device): model keeps every model in CPU memory and moves each to the GPU while it is used (the denoiser stays there for the whole loop); sequential streams block by block for each call, using the least GPU memory and the most time. Not with -DeviceMap.'
            Height    = 'With -DeviceMap: the image height the plan keeps activation head-room for. Default: the model''s default size (1024 for FLUX, 512 for SD 1.5).'
            Width     = 'With -DeviceMap: the image width the plan keeps activation head-room for. Default as -Height.'
        }
        Examples    = @(
            @{ Code = '$pipe = New-DiffusionPipeline ./stable-diffusion-v1-5 -Device cuda -DType float16'; Remarks = 'The whole SD 1.5 pipeline on the GPU in half precision.' }
            @{ Code = '$pipe = New-DiffusionPipeline ./FLUX.1-dev -DType bfloat16 -DeviceMap balanced -MaxMemory @{0=''16GB''; 1=''16GB''; cpu=''64GB''}; $pipe.DeviceMap'; Remarks = 'FLUX across two 16 GB GPUs: the components dealt by size; the transformer, which fits neither, split by blocks across both.' }
            @{ Code = '$den = New-DiffusionPipeline ./FLUX.1-dev -Component transformer -DType bfloat16 -DeviceMap auto -MaxMemory @{0=''16GB''; cpu=''64GB''}; $den.Components.transformer.DeviceMap | ConvertTo-Json'; Remarks = 'The transformer on one 16 GB GPU, the blocks that do not fit streamed from CPU memory; prints the module map as JSON.' }
            @{ Code = 'New-DiffusionPipeline ./FLUX.1-dev -Component transformer -DType bfloat16 -DeviceMap auto -MaxMemory @{0=''24GB''; 1=''24GB''} -Height 1360 -Width 768 -WhatIf'; Remarks = 'Prints the plan (and the head-room kept for 1360x768 activations) without loading; GPUs need not be present.' }
            @{ Code = '$pipe = New-DiffusionPipeline ./FLUX.1-dev -DType bfloat16 -Device cuda -Offload model'; Remarks = 'One GPU: each model moves to the GPU while it is used.' }
            @{ Code = '$enc = New-DiffusionPipeline ./FLUX.1-dev -Component text_encoder,text_encoder_2 -DType bfloat16'; Remarks = 'Only FLUX''s text encoders, for the first stage of staged inference.' }
            @{ Code = 'New-DiffusionPipeline ./stable-diffusion-v1-5 -Scheduler dpm++2m-karras -WhatIf'; Remarks = 'Shows what would be loaded.' }
        )
    }
    'Get-DiffusionDeviceMap' = @{
        Synopsis    = 'Plans where a model folder''s components, or one component''s blocks, would go across GPUs, CPU and disk, without loading anything.'
        Description = 'Reads the safetensors headers and configs and makes the plan New-DiffusionPipeline -DeviceMap would follow: component -> device for several components (DeviceMap), module path -> device for each model (Components.<name>.DeviceMap), and per device the weights, the activation head-room kept for the image size, the streaming buffer for offloaded blocks and the budget. The placement follows accelerate (infer_auto_device_map, get_balanced_memory) and diffusers (pipeline balanced); the head-room is computed for the model at -Height x -Width instead of reserving the largest layer on every main device. GPUs named in -MaxMemory need not be present, so plans for another machine can be made here. The plan prints as text; .ToJson() and .DeviceMap give the map.'
        Parameters  = @{
            Path             = 'The model folder: the one holding model_index.json.'
            Component        = 'Plan only these components; with one model component the plan is module by module.'
            DeviceMap        = 'auto, balanced, balanced_low_0, sequential or a hashtable, as New-DiffusionPipeline -DeviceMap. Default: auto for one model component, balanced for several.'
            MaxMemory        = 'Memory per device: @{0=''16GB''; 1=''16GB''; cpu=''64GB''}; see New-DiffusionPipeline -MaxMemory. Default: each device''s free memory.'
            Offload          = 'Plan model or sequential CPU offload onto -Device instead of a device map.'
            Device           = 'With -Offload: the device that runs the offloaded models (cuda, cuda:N).'
            DType            = 'The dtype the weights would be loaded in: float32 (default), float16 or bfloat16.'
            Height           = 'The image height to keep activation head-room for. Default: the model''s default size.'
            Width            = 'The image width to keep activation head-room for. Default: the model''s default size.'
            AcceleratePolicy = 'Keep accelerate''s head-room instead (the largest remaining layer on the first GPU and on the CPU, no activations), to compare.'
        }
        Examples    = @(
            @{ Code = 'Get-DiffusionDeviceMap ./FLUX.1-dev -Component transformer -DType bfloat16 -MaxMemory @{0=''16GB''; cpu=''64GB''}'; Remarks = 'Which FLUX blocks stay on a 16 GB GPU and which stream from CPU memory.' }
            @{ Code = '(Get-DiffusionDeviceMap ./FLUX.1-dev -DType bfloat16 -MaxMemory @{0=''16GB''; 1=''16GB''}).DeviceMap | ConvertTo-Json'; Remarks = 'The pipeline map for two 16 GB GPUs as JSON.' }
        )
    }
    'Remove-DiffusionPipeline' = @{
        Synopsis    = 'Frees a pipeline''s components (their weights), like `del pipeline` in the diffusers guide.'
        Description = 'Disposes every loaded component of the pipeline. Objects made with it (embeddings, latents) stay valid. Follow with Clear-DiffusionMemory to return cached memory.'
        Parameters  = @{ Pipeline = 'The pipeline(s) to free.' }
        Examples    = @(
            @{ Code = 'Remove-DiffusionPipeline $enc; Clear-DiffusionMemory'; Remarks = 'Frees the text encoders before the denoising stage.' }
        )
    }
    'ConvertTo-DiffusionEmbedding' = @{
        Synopsis    = 'Encodes prompts with the pipeline''s text encoders into embedding objects, one per prompt.'
        Description = 'Stable Diffusion: CLIP embeddings of the prompt and of its negative prompt ("" when none is given), padded to 77 tokens. FLUX: T5 sequence embeddings (padded to -MaxSequenceLength) and CLIP''s pooled embedding. Prompts longer than the tokenizer allows are truncated with a warning naming the dropped text. Only the text encoders are needed: load them alone with New-DiffusionPipeline -Component.'
        Parameters  = @{
            Pipeline          = 'A pipeline with the text encoders (and tokenizers) loaded.'
            Prompt            = 'The prompts; from the pipeline too.'
            NegativePrompt    = 'One negative prompt for all prompts, or one per prompt (Stable Diffusion).'
            MaxSequenceLength = 'FLUX: T5 tokens, 1-512 (default 512 for dev, 256 for schnell).'
        }
        Examples    = @(
            @{ Code = '$emb = ''a photo of a dog'', ''a cat'' | ConvertTo-DiffusionEmbedding -Pipeline $pipe -NegativePrompt ''blurry'''; Remarks = 'Two embeddings with a shared negative prompt.' }
        )
    }
    'Invoke-Denoise' = @{
        Synopsis    = 'Runs the denoising loop (UNet or FLUX transformer) on embeddings and outputs one latent object per image.'
        Description = 'Collects the embeddings it receives and denoises them as one batch (or in batches of -BatchSize) with a progress bar per step. The initial noise comes from a CPU generator seeded with -Seed, so the same seed and batch give the same image as diffusers. Ctrl+C stops after the current step and frees the run''s memory. Only the denoiser and scheduler are needed: load them alone with New-DiffusionPipeline -Component unet (or transformer).'
        Parameters  = @{
            Pipeline      = 'A pipeline with the UNet (SD) or transformer (FLUX) loaded.'
            Embedding     = 'Embeddings from ConvertTo-DiffusionEmbedding or Import-DiffusionTensor; from the pipeline too.'
            Steps         = 'Denoising steps (default 50 for SD, 28 for FLUX).'
            GuidanceScale = 'Classifier-free guidance for SD (default 7.5; 1 turns it off), the guidance embedding for FLUX dev (default 3.5).'
            Seed          = 'Seed of the CPU generator for the initial noise. Default: a random seed, reported on the output.'
            Height        = 'Image height in pixels: a multiple of 8 for SD; FLUX rounds down to a multiple of 16 with a warning.'
            Width         = 'Image width in pixels, as -Height.'
            Scheduler     = 'A scheduler for this run instead of the pipeline''s (name, alias or scheduler_config.json path).'
            BatchSize     = 'Images denoised together. Default: all received.'
            IncludeSteps  = 'Also output the latents after every step (Step below Steps), before the final latents.'
            InitialLatent = 'diffusers'' latents= argument: start from these latents (one per embedding, e.g. from Import-DiffusionTensor) instead of noise drawn from -Seed. SD latents are scaled by the scheduler''s init_noise_sigma as diffusers does.'
        }
        Examples    = @(
            @{ Code = '$lat = $emb | Invoke-Denoise -Pipeline $pipe -Steps 30 -Seed 42 -Height 512 -Width 512'; Remarks = 'Denoises the embeddings as one batch.' }
            @{ Code = '$emb | Invoke-Denoise -Pipeline $den -Steps 50 -GuidanceScale 3.5 -Height 768 -Width 1360 | Export-DiffusionTensor latents.safetensors'; Remarks = 'FLUX denoising stage whose result goes to a file for the decode stage.' }
        )
    }
    'ConvertFrom-DiffusionLatent' = @{
        Synopsis    = 'Decodes latents with the pipeline''s VAE into image objects, one per image.'
        Description = 'Unscales (and for FLUX unpacks and shifts) the latents and decodes them with the VAE; latents of the same size are decoded together. Image objects keep the generation parameters, which Save-DiffusionImage writes into the PNG.'
        Parameters  = @{
            Pipeline = 'A pipeline with the VAE loaded.'
            Latent   = 'Latents from Invoke-Denoise or Import-DiffusionTensor; from the pipeline too.'
        }
        Examples    = @(
            @{ Code = '$lat | ConvertFrom-DiffusionLatent -Pipeline (New-DiffusionPipeline $path -Component vae) | Save-DiffusionImage out/'; Remarks = 'Decode stage with only the VAE loaded.' }
        )
    }
    'Save-DiffusionImage' = @{
        Synopsis    = 'Saves images as PNG files with their generation parameters in the file.'
        Description = 'Writes each image to a file, a folder (default name {index:0000}-{seed}-{prompt}.png) or a template with {index}, {seed} and {prompt} (made safe for file names). The prompt, negative prompt, steps, scheduler, guidance, seed, size and model go into PNG text chunks (and an A1111-style "parameters" chunk). Files are written whole or not at all; existing files are kept unless -Force. Outputs the files written.'
        Parameters  = @{
            Image = 'Images from ConvertFrom-DiffusionLatent or Invoke-Diffusion; from the pipeline too.'
            Path  = 'A file, a folder, or a template such as out/{index}-{seed}-{prompt}.png. Default: the current folder.'
            Force = 'Overwrite existing files.'
        }
        Examples    = @(
            @{ Code = '$images | Save-DiffusionImage -Path ''out/{index:000}-{seed}.png'''; Remarks = 'Numbered files in out/.' }
            @{ Code = '$images | Save-DiffusionImage split_transformer.png -WhatIf'; Remarks = 'Shows what would be written.' }
        )
    }
    'Invoke-Diffusion' = @{
        Synopsis    = 'Generates images from prompts in one call: encode, denoise, decode and optionally save.'
        Description = 'The one-call path, for a loaded pipeline (-Pipeline) or a model folder loaded for the call and freed afterwards (-Path). Without -OutputPath it outputs image objects; with it, it saves each image and outputs one result per prompt (index, prompt, seed, file, device, seconds).'
        Parameters  = @{
            Pipeline          = 'A loaded pipeline with all components.'
            Path              = 'A model folder to load for this call.'
            Device            = 'With -Path: cpu, cuda or cuda:N.'
            DType             = 'With -Path: float32, float16 or bfloat16.'
            Prompt            = 'The prompts; from the pipeline too.'
            NegativePrompt    = 'One negative prompt for all prompts, or one per prompt (SD).'
            Steps             = 'Denoising steps (default 50 SD, 28 FLUX).'
            GuidanceScale     = 'Guidance (default 7.5 SD, 3.5 FLUX dev).'
            Seed              = 'Seed of the CPU generator; random when omitted.'
            Height            = 'Image height in pixels.'
            Width             = 'Image width in pixels.'
            Scheduler         = 'Scheduler name, alias or scheduler_config.json path.'
            MaxSequenceLength = 'FLUX: T5 tokens.'
            BatchSize         = 'Images denoised together. Default: all.'
            OutputPath        = 'Save each image here (file, folder or template) and output result objects.'
            Force             = 'Overwrite existing files.'
        }
        Examples    = @(
            @{ Code = 'Invoke-Diffusion -Path ./stable-diffusion-v1-5 -Prompt ''a photo of an astronaut riding a horse'' -Seed 0 -OutputPath astronaut.png'; Remarks = 'One image, saved.' }
            @{ Code = 'Get-Content prompts.txt | Invoke-Diffusion -Pipeline $pipe -Steps 25 -OutputPath ''out/{index}.png'''; Remarks = 'A file of prompts, one image each.' }
        )
    }
    'Export-DiffusionTensor' = @{
        Synopsis    = 'Writes embeddings or latents to a safetensors file, so the next stage can run in another process or on another machine.'
        Description = 'All objects received go into one file, batched on the first dimension under diffusers'' names (prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, latents), with prompts, seeds and sizes in the header metadata. The file is written whole or not at all; an existing file is kept unless -Force.'
        Parameters  = @{
            InputObject = 'Embeddings or latents (one kind per file); from the pipeline.'
            Path        = 'The .safetensors file to write.'
            Force       = 'Overwrite an existing file.'
        }
        Examples    = @(
            @{ Code = '''a cat'' | ConvertTo-DiffusionEmbedding -Pipeline $enc | Export-DiffusionTensor emb.safetensors'; Remarks = 'The encode stage''s result, for a denoising process.' }
        )
    }
    'Import-DiffusionTensor' = @{
        Synopsis    = 'Reads embeddings or latents written by Export-DiffusionTensor back as objects.'
        Description = 'Outputs one embedding or latent object per item in the file, with the prompts, seeds and sizes that were exported.'
        Parameters  = @{ Path = 'The .safetensors file(s); from the pipeline too (FileInfo objects work).' }
        Examples    = @(
            @{ Code = 'Import-DiffusionTensor emb.safetensors | Invoke-Denoise -Pipeline $den -Seed 1'; Remarks = 'The denoising stage in its own process.' }
        )
    }
    'Get-DiffusionPromptToken' = @{
        Synopsis    = 'Tokenizes a prompt with a model''s tokenizer: the ids, how many, and whether it was truncated.'
        Description = 'Use it to check that prompts fit: CLIP takes 77 tokens (start and end included), T5 takes max_sequence_length. -Path is a tokenizer folder (CLIP vocab.json and merges.txt, or T5 spiece.model or tokenizer.json) or a model folder, whose tokenizer/ is used.'
        Parameters  = @{
            Path      = 'A tokenizer folder, or a model folder (its tokenizer/ is used; for FLUX''s T5 give <model>/tokenizer_2).'
            Prompt    = 'The prompts; from the pipeline too.'
            MaxLength = 'Maximum tokens (default 77 for CLIP, 512 for T5).'
        }
        Examples    = @(
            @{ Code = 'Get-Content prompts.txt | Get-DiffusionPromptToken -Path ./stable-diffusion-v1-5 | Where-Object Truncated'; Remarks = 'The prompts that are too long for CLIP.' }
        )
    }
    'Clear-DiffusionMemory' = @{
        Synopsis    = 'Frees the tensors nothing refers to any more and resets the peak counters: the guide''s flush().'
        Description = 'Collects garbage so that released embeddings, latents and models free their native memory, and resets the peak values Get-DiffusionDevice reports. (On CUDA, libtorch''s caching allocator keeps its reserve: returning it is not available yet.)'
        Parameters  = @{ PassThru = 'Output the devices'' memory after clearing.' }
        Examples    = @(
            @{ Code = 'Remove-DiffusionPipeline $den; Clear-DiffusionMemory -PassThru'; Remarks = 'Frees the transformer between stages and shows what remains.' }
        )
    }
}
