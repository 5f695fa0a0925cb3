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
        Description = 'Shows cpu and every CUDA device of the loaded backend: total and free memory (from the OS or the CUDA runtime; UsedMemory is total - free, all processes), the tensor memory the engine holds now (EngineMB: models, embeddings, latents, the engine''s own ledger) and its peak since the last Clear-DiffusionMemory (PeakMB), and for cpu the process''s real resident size and its peak since the process started (ProcessMB, ProcessPeakMB: VmRSS and VmHWM on Linux, the working set elsewhere), and the libtorch folder in use. The process figure is larger than the ledger: it also holds the loaded native libraries (libtorch''s code and data, a few hundred MB once touched), the .NET runtime and heap, the activations of a run while it runs, and memory the C allocator keeps after frees (Clear-DiffusionMemory returns that on Linux). On CUDA, libtorch''s caching allocator keeps freed blocks reserved for reuse; they show in UsedMemory until the process ends.'
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
            Path      = 'The model folder (the one holding model_index.json), or a Hugging Face repo id such as org/name: taken from the Hub cache (HF_HUB_CACHE), downloading only the files this load reads (with -Component, only those components). A single-file checkpoint (.safetensors) loads with -Config.'
            Revision  = 'With a Hugging Face repo id as -Path: the branch, tag or commit hash to load (default main).'
            Variant   = 'diffusers'' variant: load each component''s *.<variant>.safetensors files (e.g. -Variant fp16: diffusion_pytorch_model.fp16.safetensors, model.fp16.safetensors, or the sharded diffusion_pytorch_model.safetensors.index.fp16.json); a component without them loads its full-precision files. Without -Variant only non-variant files load, and a folder with only variant files is refused naming the variant to give. The weights are cast to -DType as usual.'
            Config    = 'For a single-file checkpoint as -Path (a .safetensors file: CompVis/LDM SD 1.x, Black Forest Labs FLUX.1 transformer or ae): the diffusers folder of the same model whose model_index.json, configs, tokenizers and scheduler go with it, as diffusers'' from_single_file(config=...). A file recognised as SD 1.5, FLUX.1-dev or FLUX.1-schnell without -Config is refused naming the Hub repository to take the configs from.'
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
            Path             = 'The model folder (the one holding model_index.json), or a Hugging Face repo id (org/name), taken from the Hub cache or downloaded into it. A single-file checkpoint (.safetensors) loads with -Config.'
            Revision         = 'With a Hugging Face repo id as -Path: the branch, tag or commit hash to load (default main).'
            Variant          = 'Plan from the headers of these variant files (e.g. fp16), as New-DiffusionPipeline -Variant.'
            Config           = 'For a single-file -Path: the diffusers folder with its configs, as New-DiffusionPipeline -Config.'
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
            Prompt            = 'The prompts. Or pipe them (-InputObject).'
            InputObject       = 'Piped input: strings, or rows read by property name (Import-Csv, hashtables, objects, Split-Prompt''s shares): Prompt, and per row NegativePrompt and Index (the embedding''s Index, which Invoke-Denoise -SeedPerPrompt seeds with). Other properties are ignored. An object without a Prompt property is an error for that item.'
            NegativePrompt    = 'One negative prompt for all prompts, or one per prompt (Stable Diffusion).'
            MaxSequenceLength = 'FLUX: T5 tokens, 1-512 (default 512 for dev, 256 for schnell).'
            Prompt2           = 'SDXL: the prompts for the second text encoder (diffusers'' prompt_2): one for all prompts or one per prompt. Default: the prompts.'
            NegativePrompt2   = 'SDXL: the negative prompts for the second text encoder (negative_prompt_2). Default: the negative prompts. Without any negative prompt SDXL''s unconditional embeddings are zeros (force_zeros_for_empty_prompt).'
            LoraScale         = 'The LoRA scale in the text encoders for this call (diffusers'' lora_scale), multiplying every added LoRA''s own -Scale. Default 1. Give the denoising stage the same value.'
        }
        Examples    = @(
            @{ Code = '$emb = ''a photo of a dog'', ''a cat'' | ConvertTo-DiffusionEmbedding -Pipeline $pipe -NegativePrompt ''blurry'''; Remarks = 'Two embeddings with a shared negative prompt.' }
        )
    }
    'Add-DiffusionLora' = @{
        Synopsis    = 'Applies a LoRA file to a pipeline''s models, as diffusers'' load_lora_weights does.'
        Description = 'Reads a LoRA .safetensors file in diffusers/PEFT format (unet.*.lora.down/up, text_encoder.*.lora_linear_layer, transformer.*.lora_A/lora_B; text-encoder keys with or without text_model.) or kohya-ss format (lora_unet_*, lora_te_*, lora_te1_/lora_te2_, .alpha; SDXL UNet layers also under the original UNet''s block names input_blocks_*, middle_block_*, output_blocks_*) and hooks each patched Linear (or 1x1 Conv2d) layer from outside, as PEFT computes it unfused: y = W x + b + s * (alpha / r) * B (A x), with s = -Scale times the run''s -LoraScale, the same in the text encoders and the denoiser. The weights are not changed, so Remove-DiffusionLora gives the model back bit for bit, and layers on other devices, offloaded or streamed from disk by a device map are patched the same way (A and B go to the device each layer computes on). Several LoRAs add up, each with its own scale. Layers for components the pipeline was loaded without (a staged pipeline) are skipped with a warning; layers that match nothing in the model are an error naming them, and nothing is applied. Pickle files are refused.'
        Parameters  = @{
            Pipeline = 'The pipeline whose models the LoRA patches.'
            Path     = 'The LoRA .safetensors file, or a folder holding pytorch_lora_weights.safetensors (or exactly one .safetensors file).'
            Scale    = 'This LoRA''s weight (diffusers'' adapter_weights). Default 1.'
            Name     = 'The adapter''s name (diffusers'' adapter_name). Default: the file name without extension. Names are unique per pipeline.'
        }
        Examples    = @(
            @{ Code = '$pipe = New-DiffusionPipeline ./sd-tiny; Add-DiffusionLora -Pipeline $pipe ./lora/sd-tiny-lora.safetensors -Scale 0.8'; Remarks = 'Applies a LoRA to the UNet and the text encoder at 0.8.' }
            @{ Code = 'Invoke-Diffusion -Pipeline $pipe -Prompt ''a cat'' -LoraScale 0.5 -OutputPath cat.png'; Remarks = 'One run at half the LoRA''s strength (diffusers'' cross_attention_kwargs={"scale": 0.5}).' }
        )
    }
    'Get-DiffusionLora' = @{
        Synopsis    = 'Lists the LoRAs applied to a pipeline.'
        Description = 'Outputs one object per applied LoRA: its name, file, format, rank, scale and the layers it patches per component.'
        Parameters  = @{
            Pipeline = 'The pipeline to list.'
            Name     = 'Names to list; wildcards allowed. Default: all.'
        }
        Examples    = @(
            @{ Code = 'Get-DiffusionLora -Pipeline $pipe | Format-Table Name, Scale, Rank, Format'; Remarks = 'The pipeline''s LoRAs as a table.' }
        )
    }
    'Remove-DiffusionLora' = @{
        Synopsis    = 'Takes LoRAs off a pipeline; its models then compute exactly as before.'
        Description = 'Removes the hooks the LoRA added and frees its weights (also the copies on GPUs). The model''s own weights were never changed, so the pipeline gives the same tensors bit for bit as before the LoRA was added.'
        Parameters  = @{
            Pipeline = 'The pipeline to remove LoRAs from.'
            Name     = 'Names to remove; wildcards allowed. Default: all.'
            Lora     = 'Adapters as Add-DiffusionLora or Get-DiffusionLora output them.'
        }
        Examples    = @(
            @{ Code = 'Remove-DiffusionLora -Pipeline $pipe -Name sd-tiny-lora'; Remarks = 'Removes one LoRA.' }
            @{ Code = 'Get-DiffusionLora -Pipeline $pipe | Remove-DiffusionLora -WhatIf'; Remarks = 'Says which LoRAs would be removed.' }
        )
    }
    'ConvertTo-DiffusionLatent' = @{
        Synopsis    = 'Encodes init images with the pipeline''s VAE for img2img (the encode half of AutoencoderKL).'
        Description = 'The img2img pipelines'' first stage on its own, for the staged flow: each image (a file or an image object) is converted to RGB (alpha dropped, gray spread to three channels, as PIL''s convert("RGB")), resized with Lanczos to -Width/-Height when given (otherwise kept at its size rounded down to a multiple the VAE takes: 8 for SD and SDXL, 16 for FLUX, as diffusers'' image processor), scaled to [-1, 1] and encoded. The output holds the latent distribution (mean and std); Invoke-Denoise -InitImage samples it with its seed, as diffusers'' latent_dist.sample(generator) does. Only the VAE is needed: New-DiffusionPipeline -Component vae.'
        Parameters  = @{
            Pipeline = 'A pipeline with the VAE loaded.'
            Image    = 'Image files (paths or Get-Item output) or image objects; from the pipeline too. One bad item is an error for that item; the others are encoded.'
            Height   = 'Resize the image to this height first (Lanczos). Default: its own height, rounded down.'
            Width    = 'Resize the image to this width first (Lanczos). Default: its own width, rounded down.'
        }
        Examples    = @(
            @{ Code = '$init = ConvertTo-DiffusionLatent -Pipeline $vae -Image ./sketch.png; $emb | Invoke-Denoise -Pipeline $unet -InitImage $init -Strength 0.6 -Seed 42'; Remarks = 'The staged img2img flow: encode the image, then denoise from it.' }
            @{ Code = 'Invoke-Diffusion -Pipeline $pipe -Prompt ''a watercolor fox'' -InitImage ./sketch.png -Strength 0.6 -OutputPath fox.png'; Remarks = 'The same in one call.' }
        )
    }
    'Invoke-Denoise' = @{
        Synopsis    = 'Runs the denoising loop (UNet or FLUX transformer) on embeddings and outputs one latent object per image.'
        Description = 'Collects the embeddings it receives and denoises them as one batch (or in batches of -BatchSize) with a progress bar per step. The initial noise comes from a CPU generator seeded with -Seed, so the same seed and batch give the same image as diffusers. Ctrl+C stops after the current step and frees the run''s memory. Only the denoiser and scheduler are needed: load them alone with New-DiffusionPipeline -Component unet (or transformer).'
        Defaults    = @{
            Steps         = '50 (SD), 28 (FLUX)'
            GuidanceScale = '7.5 (SD), 3.5 (FLUX)'
            Seed          = 'A random seed (recorded in the output)'
            Height        = 'The model''s sample size (512 for SD 1.5, 1024 for FLUX)'
            Width         = 'The model''s sample size (512 for SD 1.5, 1024 for FLUX)'
            Scheduler     = 'The model folder''s scheduler'
            BatchSize     = 'All prompts in one batch'
        }
        Parameters  = @{
            Pipeline      = 'A pipeline with the UNet (SD) or transformer (FLUX) loaded.'
            Embedding     = 'Embeddings from ConvertTo-DiffusionEmbedding or Import-DiffusionTensor; from the pipeline too.'
            Steps         = 'Denoising steps (default 50 for SD, 28 for FLUX).'
            GuidanceScale = 'Classifier-free guidance for SD (default 7.5; 1 turns it off), the guidance embedding for FLUX dev (default 3.5).'
            GuidanceRescale = 'SD: diffusers'' guidance_rescale, 0 to 1 (default 0, off). Rescales the guided noise prediction to the text prediction''s standard deviation ("Common Diffusion Noise Schedules and Sample Steps are Flawed", 3.4); 0.7 is the paper''s value for zero-terminal-SNR models such as SD 2.x with v-prediction. Recorded in the PNG. Refused for FLUX.'
            Seed          = 'Seed of the CPU generator for the initial noise. Default: a random seed, reported on the output.'
            Height        = 'Image height in pixels: a multiple of 8 for SD; FLUX rounds down to a multiple of 16 with a warning.'
            Width         = 'Image width in pixels, as -Height.'
            Scheduler     = 'A scheduler for this run instead of the pipeline''s (name, alias or scheduler_config.json path).'
            BatchSize     = 'Images denoised together. Default: all received.'
            IncludeSteps  = 'Also output the latents after every model evaluation but the last (Step below TotalSteps, IsFinal false), before the final latents (Step = TotalSteps). TotalSteps counts the scheduler''s timesteps: -Steps for most schedulers, -Steps + 1 for PNDM, whose first PLMS step evaluates the model twice (diffusers'' callback_on_step_end sees the same). The progress bar counts the steps asked for, as diffusers'' does.'
            InitialLatent = 'diffusers'' latents= argument: start from these latents (one per embedding, e.g. from Import-DiffusionTensor) instead of noise drawn from -Seed. SD latents are scaled by the scheduler''s init_noise_sigma as diffusers does.'
            SeedPerPrompt = 'Give each embedding its own generator seeded with -Seed plus its Index, and denoise it on its own (diffusers: one call per prompt with torch.Generator().manual_seed(seed + i)). An image then does not depend on which prompts ran with it. Cannot be combined with -BatchSize.'
            LoraScale     = 'The LoRA scale in the denoiser for this run (diffusers'' cross_attention_kwargs={"scale": s}), multiplying every added LoRA''s own -Scale. Default 1.'
            OriginalSize  = 'SDXL micro-conditioning (diffusers'' original_size): height, width. Default: the image size.'
            CropCoordinates = 'SDXL micro-conditioning (crops_coords_top_left): top, left. Default: 0, 0.'
            TargetSize    = 'SDXL micro-conditioning (target_size): height, width. Default: the image size.'
            InitImage     = 'img2img: the encoded init image (ConvertTo-DiffusionLatent -Image). The run samples its latent distribution with the -Seed generator (its first draw, as diffusers), scales it, and noises it with the next draw to the level of the first step -Strength leaves. The run takes the image''s size.'
            Strength      = 'img2img: how much of the init image is replaced, 0 to 1 (default 0.8). The run takes about Steps x Strength steps (SD and SDXL: int(Steps x Strength); FLUX keeps the fraction, as diffusers'' pipelines do); a strength that leaves no step is refused.'
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
        Synopsis    = 'Saves images as PNG, JPEG or WebP files with their generation parameters in the file.'
        Description = 'Writes each image to a file, a folder (default name {index:0000}-{seed}-{prompt}.png) or a template with {index}, {seed} and {prompt} (made safe for file names). The prompt, negative prompt, steps, scheduler, guidance, seed, size and model go into PNG text chunks (and an A1111-style "parameters" chunk). A name ending in .jpg, .jpeg or .webp writes JPEG or WebP (lossy, -Quality) with the A1111 parameters text in the EXIF UserComment, where AUTOMATIC1111 puts it; any other name gets .png added. Templates: {index} (the prompt''s place, from 0), {seed}, {prompt}, and .NET number formats such as {index:000} (001, 002, ...). Files are written whole or not at all; existing files are kept unless -Force. Outputs the files written as Get-Item does (Mode, LastWriteTime, Length, Name under a Directory header). Get-DiffusionImageInfo reads the parameters back.'
        Parameters  = @{
            Image = 'Images from ConvertFrom-DiffusionLatent or Invoke-Diffusion; from the pipeline too.'
            Path  = 'A file, a folder, or a template such as out/{index}-{seed}-{prompt}.png. Default: the current folder.'
            Force = 'Overwrite existing files.'
            Quality = 'JPEG and WebP quality, 1 to 100 (default 90). PNG is lossless and ignores it.'
        }
        Examples    = @(
            @{ Code = '$images | Save-DiffusionImage -Path ''out/{index:000}-{seed}.png'''; Remarks = 'Numbered files in out/.' }
            @{ Code = '$images | Save-DiffusionImage -Path ''out/{index}.jpg'' -Quality 95'; Remarks = 'JPEG files with the parameters in EXIF.' }
            @{ Code = '$images | Save-DiffusionImage split_transformer.png -WhatIf'; Remarks = 'Shows what would be written.' }
        )
    }
    'Invoke-Diffusion' = @{
        Synopsis    = 'Generates images from prompts in one call: encode, denoise, decode and optionally save; in one process or split between several.'
        Description = 'The one-call path, for a loaded pipeline (-Pipeline) or a model folder loaded for the call and freed afterwards (-Path). Without -OutputPath it outputs image objects; with it, it saves each image and outputs one result per prompt (index, prompt, seed, file, rank, device, seconds). By default the prompts are one batch drawn from one generator seeded with -Seed, as diffusers does. -SeedPerPrompt gives prompt i the seed Seed+i and generates it on its own. With -NumProcesses n (or several -Device) the prompts are split between n worker pwsh processes as accelerate''s split_between_processes does; each worker loads the model once, generates its prompts with seed Seed+i (so the images are the same however many processes run) and saves them under -OutputPath, which needs {index}; the results come back in prompt order with the rank and device that made each image. A worker that dies is reported with its rank and error; -Retry re-runs its prompts on the surviving workers, and prompts that still fail get one error each. Ctrl+C kills all workers.'
        Defaults    = @{
            Steps         = '50 (SD), 28 (FLUX)'
            GuidanceScale = '7.5 (SD), 3.5 (FLUX)'
            Seed          = 'A random seed (recorded in the output)'
            Height        = 'The model''s sample size (512 for SD 1.5, 1024 for FLUX)'
            Width         = 'The model''s sample size (512 for SD 1.5, 1024 for FLUX)'
            Scheduler     = 'The model folder''s scheduler'
            BatchSize     = 'All prompts in one batch'
        }
        Parameters  = @{
            Pipeline          = 'A loaded pipeline with all components.'
            Path              = 'A model folder to load for this call (in each worker process for a parallel run), or a Hugging Face repo id (org/name): resolved once, from the Hub cache or downloaded into it, and the workers load the local snapshot.'
            Revision          = 'With a Hugging Face repo id as -Path: the branch, tag or commit hash to load (default main).'
            Device            = 'With -Path: cpu, cuda or cuda:N. Several devices (cuda:0,cuda:1) start one worker process per device; with -NumProcesses, process i takes Device[i mod count].'
            DType             = 'With -Path: float32, float16 or bfloat16.'
            Variant           = 'With -Path: the weights'' variant (e.g. fp16), as New-DiffusionPipeline -Variant.'
            Config            = 'With -Path a single-file checkpoint: the diffusers folder with its configs, tokenizers and scheduler, as New-DiffusionPipeline -Config.'
            Prompt            = 'The prompts. Or pipe them (-InputObject).'
            InputObject       = 'Piped input: strings (Get-Content prompts.txt), or rows read by property name (Import-Csv prompts.csv, hashtables, objects): Prompt, and per row NegativePrompt, Seed, Steps, GuidanceScale, Width, Height, OutputPath and Index; other properties are ignored. A row''s values apply to that row only; the parameters given on the command line are the defaults for rows without the column (or with an empty cell). Rows with different values never share a batch. A row''s Seed is its image''s seed (also with -SeedPerPrompt); its Index (a Split-Prompt share brings its own) sets the image''s index, its Seed+index with -SeedPerPrompt and {index} in the output path. An object without a Prompt property, or a row with a value that does not convert, is an error for that row; the others go on.'
            NegativePrompt    = 'One negative prompt for all prompts, or one per prompt (SD).'
            Steps             = 'Denoising steps (default 50 SD, 28 FLUX).'
            GuidanceScale     = 'Guidance (default 7.5 SD, 3.5 FLUX dev).'
            GuidanceRescale   = 'SD: diffusers'' guidance_rescale, 0 to 1 (default 0, off); 0.7 for zero-terminal-SNR models such as SD 2.x. Recorded in the PNG; refused for FLUX.'
            Prompt2           = 'SDXL: the prompts for the second text encoder (prompt_2): one for all or one per prompt. Default: the prompts.'
            NegativePrompt2   = 'SDXL: the negative prompts for the second text encoder (negative_prompt_2). Default: the negative prompts.'
            OriginalSize      = 'SDXL micro-conditioning (original_size): height, width. Default: the image size.'
            CropCoordinates   = 'SDXL micro-conditioning (crops_coords_top_left): top, left. Default: 0, 0.'
            TargetSize        = 'SDXL micro-conditioning (target_size): height, width. Default: the image size.'
            InitImage         = 'img2img: the image to start from: a file path, Get-Item output, an image object (from Invoke-Diffusion or ConvertFrom-DiffusionLatent) or ConvertTo-DiffusionLatent output. Encoded once with the pipeline''s VAE; resized to -Width/-Height when given. A parallel run takes a file path.'
            Strength          = 'img2img: how much of the init image is replaced, 0 to 1 (default 0.8); the run takes about Steps x Strength steps.'
            LoraScale         = 'The LoRA scale for this run in the text encoders and the denoiser (diffusers'' cross_attention_kwargs={"scale": s}), multiplying every added LoRA''s own -Scale. Default 1.'
            Seed              = 'Seed of the CPU generator; random when omitted. With -SeedPerPrompt or in a parallel run, prompt i gets Seed+i. Seeds are 64-bit and taken modulo 2^64 as torch.manual_seed takes them: a negative seed s is torch''s seed s+2^64, and Seed+i past 9223372036854775807 wraps to the negative twin of the same generator.'
            Height            = 'Image height in pixels.'
            Width             = 'Image width in pixels.'
            Scheduler         = 'Scheduler name, alias or scheduler_config.json path.'
            MaxSequenceLength = 'FLUX: T5 tokens.'
            BatchSize         = 'Images denoised together. Default: all. Not with -SeedPerPrompt or a parallel run, which generate one prompt at a time.'
            OutputPath        = 'Save each image here (file, folder or template with {index}, {seed}, {prompt}, {rank} (the worker process), and number formats such as {index:000}; .jpg, .jpeg or .webp save JPEG or WebP) and output result objects. Required for a parallel run, with {index} (or a folder), so that the processes never write the same file.'
            Force             = 'Overwrite existing files.'
            PassThru          = 'With -OutputPath: output the saved images (with their Path) instead of result objects. Not for parallel runs.'
            Quality           = 'JPEG and WebP quality, 1 to 100 (default 90), for an -OutputPath ending in .jpg, .jpeg or .webp.'
            BatchPosition     = 'With -BatchSize n and one prompt: replay the image made at this place (from 0) of a batch of n images that shared one generator, as an image''s "Batch size" and "Batch pos" parameters record. The prompt fills the whole batch and only that image is kept, so it comes out identical. Get-DiffusionImageInfo -AsHashtable gives both.'
            SeedPerPrompt     = 'Prompt i gets its own generator seeded with Seed+i (its index, or -PromptIndex) and is generated on its own, so its image does not depend on the other prompts or on how they were split between processes. Parallel runs always work this way.'
            PromptIndex       = 'With -SeedPerPrompt: each prompt''s index in the whole job, e.g. the Index of Split-Prompt''s output under torchrun or srun. Used for the seed (Seed+index), {index} in -OutputPath and the result''s Index. Default: 0, 1, 2, ...'
            NumProcesses      = 'Split the prompts between this many worker pwsh processes (data parallel, with -Path). Each gets RANK, WORLD_SIZE and LOCAL_RANK, and a device: -Device, else cuda:LOCAL_RANK when there are GPUs, else the CPU (OMP_NUM_THREADS shares the cores out unless already set).'
            Retry             = 'Parallel runs: re-run the prompts of a failed worker on the surviving workers up to this many times (default 0).'
            Lora              = 'With -Path: LoRA files added to the pipeline this call loads, before generating (in a parallel run, by every worker, once). Paths (or Get-Item / Get-ChildItem output) are added at scale 1; a hashtable gives each file its scale: @{ ''style.safetensors'' = 0.8; ''detail.safetensors'' = 0.4 } (use [ordered] to keep the order). Each is named by its file name without extension (what <lora:name> tags name). -LoraScale multiplies them all, as for Add-DiffusionLora''s adapters.'
            ParseLoraTags     = 'A1111''s prompt syntax: <lora:name> and <lora:name:scale> tags are taken out of each prompt (the blanks and commas they leave tidied) and choose its LoRAs: the tagged adapters run at the tag''s scale (default 1; -LoraScale still multiplies it), every other adapter of the pipeline is off for that prompt. A name is an adapter of the pipeline (Add-DiffusionLora -Name, case-insensitive) or a -Lora file''s name. Prompts with other tags run in separate batches. A tag naming no adapter is an error for its prompt. The images'' parameters keep the prompt as written, tags and all, as A1111 records it.'
        }
        Examples    = @(
            @{ Code = 'Invoke-Diffusion -Path ./stable-diffusion-v1-5 -Prompt ''a photo of an astronaut riding a horse'' -Seed 0 -OutputPath astronaut.png'; Remarks = 'One image, saved.' }
            @{ Code = 'Get-Content prompts.txt | Invoke-Diffusion -Pipeline $pipe -Steps 25 -OutputPath ''out/{index}.png'''; Remarks = 'A file of prompts, one image each.' }
            @{ Code = 'Import-Csv prompts.csv | Invoke-Diffusion -Pipeline $pipe -Steps 25 -OutputPath ''out/{index}-{seed}.png'''; Remarks = 'Columns Prompt, NegativePrompt, Seed, Steps, GuidanceScale, Width, Height, OutputPath: each row is generated with its own values; -Steps 25 is for the rows whose Steps cell is empty.' }
            @{ Code = 'Get-Content prompts.txt | Split-Prompt | Invoke-Diffusion -Path ./sd -SeedPerPrompt -Seed 0 -OutputPath ''out/{index:0000}.png'''; Remarks = 'Under torchrun or srun: the shares keep their global Index, so every rank writes its own files with seeds 0+index.' }
            @{ Code = 'Get-Content prompts.txt | Invoke-Diffusion -Path ./stable-diffusion-v1-5 -Device cuda:0,cuda:1 -DType float16 -Seed 0 -OutputPath ''out/{index:0000}.png'' -Retry 1'; Remarks = 'Two GPUs, one worker process each; prompt i gets seed i, results come back in prompt order.' }
            @{ Code = 'Invoke-Diffusion -Path ./sd -Prompt $prompts -NumProcesses 4 -Seed 7 -OutputPath out/ | Sort-Object Seconds -Descending | Select-Object -First 3'; Remarks = 'Four processes (on the CPU, or cuda:0..3 when there are GPUs); the slowest images.' }
            @{ Code = 'Invoke-Diffusion -Path ./sd -Lora @{ ''./loras/ink.safetensors'' = 0.8 } -Prompt ''a fox'' -Seed 1 -OutputPath fox.png'; Remarks = 'One LoRA at scale 0.8 for this call.' }
            @{ Code = 'Get-Content prompts.txt | Invoke-Diffusion -Path ./sd -Lora (Get-ChildItem ./loras/*.safetensors) -ParseLoraTags -OutputPath ''out/{index}.png'''; Remarks = 'Lines such as ''a fox, <lora:ink:0.7>'': each prompt runs with the LoRAs it tags.' }
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
        Parameters  = @{
            Path        = 'The .safetensors file(s); wildcards expand (stage1/*.safetensors).'
            LiteralPath = 'The .safetensors file(s), taken literally (no wildcards); files piped from Get-ChildItem bind here.'
        }
        Examples    = @(
            @{ Code = 'Import-DiffusionTensor emb.safetensors | Invoke-Denoise -Pipeline $den -Seed 1'; Remarks = 'The denoising stage in its own process.' }
        )
    }
    'Get-DiffusionImageInfo' = @{
        Synopsis    = 'Reads the generation parameters of PNG, JPEG and WebP images back as objects that replay them.'
        Description = 'Reads the parameters this module writes (PNG text chunks, or the EXIF UserComment of JPEG and WebP) and AUTOMATIC1111''s "parameters" text. The object''s Prompt, NegativePrompt, Steps, GuidanceScale, GuidanceRescale, Seed, Width, Height, Scheduler, BatchSize and BatchPosition are Invoke-Diffusion parameters; -AsHashtable (or .ToParameters()) gives them as a hashtable to splat, which regenerates the image with the same model. Sampler, Model, ModelHash and Parameters (the text) describe it.'
        Parameters  = @{
            Path        = 'Image files; wildcards expand.'
            LiteralPath = 'Image files taken literally; files piped from Get-ChildItem bind here.'
            AsHashtable = 'Output the Invoke-Diffusion parameters as a hashtable, for splatting.'
        }
        Examples    = @(
            @{ Code = 'Get-DiffusionImageInfo out/0001.png | Format-List'; Remarks = 'How the image was made.' }
            @{ Code = '$p = Get-DiffusionImageInfo out/0001.png -AsHashtable; Invoke-Diffusion -Pipeline $pipe @p -OutputPath again.png'; Remarks = 'The same image again (same model).' }
            @{ Code = 'Get-ChildItem out/*.jpg | Get-DiffusionImageInfo | Where-Object Seed -eq 42'; Remarks = 'Finds images by their parameters.' }
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
        Description = 'Collects garbage so that released embeddings, latents and models free their native memory, hands the freed heap back to the operating system (glibc''s malloc_trim on Linux), and resets the peak values Get-DiffusionDevice reports. What stays resident afterwards, and why: the native libraries loaded once per process (libtorch, hundreds of MB; they cannot be unloaded), the .NET runtime and its heap, and on CUDA the blocks libtorch''s caching allocator keeps reserved (returning them is not available yet). Get-DiffusionDevice shows the process''s real figures (ProcessMB) beside the engine''s ledger (EngineMB).'
        Parameters  = @{ PassThru = 'Output the devices'' memory after clearing.' }
        Examples    = @(
            @{ Code = 'Remove-DiffusionPipeline $den; Clear-DiffusionMemory -PassThru'; Remarks = 'Frees the transformer between stages and shows what remains.' }
        )
    }
    'Split-Prompt' = @{
        Synopsis    = 'This process''s share of a list of prompts (or objects, or a hashtable of lists), split between processes as accelerate''s split_between_processes does.'
        Description = 'Collects its input and outputs the contiguous slice that belongs to this process: with N items and P processes, q = floor(N/P) and r = N mod P; process p takes the items from p*q + min(p, r), q+1 of them for the first r processes and q for the others. With -ApplyPadding a process with fewer items gets copies of the input''s last item, so every process has ceil(N/P) (for example to gather equal-sized results); unlike accelerate, each output says whether it is padding (IsPadding) and where it sits in the whole input (Index), so a gather never returns duplicates. A single hashtable of lists is split row by row, every list with the same indices (the lists must have the same length); each output''s Value is then a hashtable of that row. The rank and the number of processes come from -ProcessIndex and -NumProcesses, else from the launcher''s variables (see Get-DiffusionRank), else 0 of 1.'
        Parameters  = @{
            InputObject  = 'The prompts or objects to split, or one hashtable of equal-length lists; from the pipeline too (all of it is collected before splitting).'
            ProcessIndex = 'This process''s rank, 0..NumProcesses-1. Default: RANK, SLURM_PROCID, OMPI_COMM_WORLD_RANK or PMI_RANK, else 0.'
            NumProcesses = 'How many processes share the input. Default: WORLD_SIZE, SLURM_NTASKS, OMPI_COMM_WORLD_SIZE or PMI_SIZE, else 1.'
            ApplyPadding = 'Give every process the same number of items by repeating the input''s last item; the copies have IsPadding set.'
        }
        Examples    = @(
            @{ Code = '$share = Get-Content prompts.txt | Split-Prompt; Invoke-Diffusion -Path ./sd -Prompt $share.Value -PromptIndex $share.Index -SeedPerPrompt -Seed 0 -OutputPath ''out/{index:0000}.png'''; Remarks = 'In a script started by torchrun, srun or mpirun: each process generates its share; file names and seeds use the global index.' }
            @{ Code = '''a dog'', ''a cat'', ''a bird'' | Split-Prompt -ProcessIndex 1 -NumProcesses 2 -ApplyPadding'; Remarks = 'Rank 1 of 2 gets ''a bird'' (Index 2) and a padding copy of it.' }
            @{ Code = '(Split-Prompt @{ prompt = ''a'', ''b'', ''c''; seed = 1, 2, 3 } -ProcessIndex 0 -NumProcesses 2).Value.prompt'; Remarks = 'A hashtable of lists: rank 0 gets rows 0 and 1 of every list.' }
        )
    }
    'Get-DiffusionRank' = @{
        Synopsis    = 'Shows this process''s rank, world size and local rank in a data-parallel run, which launcher variables they came from, and its default device.'
        Description = 'Reads, in order: RANK/WORLD_SIZE/LOCAL_RANK (torchrun, accelerate launch, Start-DiffusionParallel), SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID (srun), OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE/OMPI_COMM_WORLD_LOCAL_RANK (Open MPI mpirun), PMI_RANK/PMI_SIZE with MPI_LOCALRANKID (MPICH, Intel MPI); the first launcher whose variables are set wins, else the process is rank 0 of 1. The object has ProcessRank, WorldSize, LocalRank, Launcher, Source (the variables used) and Device. Device is the default device of pipelines loaded without -Device: cuda:LOCAL_RANK when there are CUDA devices (wrapping round when there are fewer devices than local ranks), else cpu. A variable that is not a whole number, or a rank not below the world size, is an error naming the variable.'
        Parameters  = @{}
        Examples    = @(
            @{ Code = 'Get-DiffusionRank'; Remarks = 'Rank 0 of 1 on the CPU outside any launcher.' }
            @{ Code = 'srun -n 4 pwsh -c ''Import-Module Diffusion; Get-DiffusionRank | Format-List'''; Remarks = 'Four Slurm tasks, each showing its rank, its local rank and its GPU.' }
        )
    }
    'Start-DiffusionParallel' = @{
        Synopsis    = 'Runs a script in several worker pwsh processes, one device each, like accelerate launch: one progress view, the workers'' output in rank order.'
        Description = 'Starts -NumProcesses worker processes of the same pwsh as this session, each with the module imported and RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE set, so Split-Prompt, Get-DiffusionRank and pipelines loaded without -Device find their share and device. -Device gives each process one device: a CUDA device is the only GPU the process sees (CUDA_VISIBLE_DEVICES, so it is cuda:0 there), cpu hides the GPUs. Without -Device a process uses cuda:LOCAL_RANK when there are GPUs, else the CPU. OMP_NUM_THREADS shares the cores out unless it is already set. The script (-ScriptBlock, which cannot use $using: or variables of this session: pass them with -ArgumentList; or -FilePath) runs as a script file in each worker. Each rank''s progress shows as one bar under an overall bar; errors, warnings and messages come through marked with the rank; output objects come back deserialized (as from Start-Job), with a ProcessRank property, in rank order. A worker that fails (an error it throws, exit N with N other than 0, or a process that is killed or crashes) is reported with its rank, process id, exit code and error, and the other workers'' results are kept. Ctrl+C kills every worker and the processes they started.'
        Parameters  = @{
            NumProcesses = 'How many worker processes to start. Default: one per -Device entry.'
            Device       = 'cpu, or CUDA devices (cuda:0,cuda:1): process i takes Device[i mod count].'
            ScriptBlock  = 'The script every worker runs (as a script file: $args and param() work; exit N sets the exit code).'
            FilePath     = 'A .ps1 file every worker runs.'
            ArgumentList = 'Arguments for the script, the same in every worker.'
        }
        Examples    = @(
            @{ Code = 'Start-DiffusionParallel -NumProcesses 2 -ScriptBlock { Get-DiffusionRank }'; Remarks = 'Two workers report their rank, world size and device.' }
            @{ Code = 'Start-DiffusionParallel -Device cuda:0,cuda:1 -FilePath ./generate.ps1 -ArgumentList ./prompts.txt'; Remarks = 'generate.ps1 splits the prompts with Split-Prompt and generates its share on its GPU; the results come back in rank order.' }
            @{ Code = 'Start-DiffusionParallel -NumProcesses 3 { param($Model) $share = Get-Content ./prompts.txt | Split-Prompt; Invoke-Diffusion -Path $Model -Prompt $share.Value -PromptIndex $share.Index -SeedPerPrompt -Seed 0 -OutputPath ''out/{index}.png'' } -ArgumentList ./sd'; Remarks = 'What Invoke-Diffusion -NumProcesses 3 does, written out.' }
        )
    }
    'Save-DiffusionModel' = @{
        Synopsis    = 'Downloads a diffusers model from the Hugging Face Hub into the Hub cache, only the files a load reads, as hf download does.'
        Description = 'Reads the repo''s file list at -Revision, downloads model_index.json, then for each component (or only -Component, with the tokenizers and scheduler they need) its configs, tokenizer files and safetensors weights: the -Variant files (name.fp16.safetensors) where present, else the plain ones; a sharded model''s index and shards. Root-level single-file checkpoints, .bin/.ckpt/.pt/.pth/.msgpack/.onnx files and other variants are never downloaded; a component with only pickle weights is refused. Files go into the huggingface_hub cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub) in its layout: blobs named by etag/sha256, snapshots/<commit> of relative links, refs/<branch>; Python''s huggingface_hub and diffusers read it, and this module reads what they wrote. Downloads resume after a cut (HTTP Range), LFS files are checked against their sha256, a per-file lock lets several processes fetch one model at once, and Ctrl+C leaves nothing that looks complete. A token comes from $env:HF_TOKEN or the file hf auth login writes (HF_HOME/token). Outputs the snapshot folder (or -LocalDir).'
        Parameters  = @{
            RepoId    = 'The repo id on the Hub, org/name (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5). The Hub is $env:HF_ENDPOINT, default https://huggingface.co.'
            Component = 'Only these components, e.g. text_encoder,text_encoder_2 for an encode stage; a text encoder brings its tokenizer, the UNet or transformer the scheduler.'
            Variant   = 'The weights variant, e.g. fp16: downloads name.fp16.safetensors instead of name.safetensors where the repo has them (as diffusers'' variant=).'
            Revision  = 'The branch, tag or commit hash (default main); refs/pr/N for a pull request.'
            LocalDir  = 'Also copy the files (real files, not links) into this folder, as huggingface_hub''s local_dir.'
            Force     = 'Download the files again even if the cache has them; with -LocalDir, overwrite its files.'
        }
        Examples    = @(
            @{ Code = 'Save-DiffusionModel stable-diffusion-v1-5/stable-diffusion-v1-5 -Variant fp16'; Remarks = 'The fp16 weights of SD 1.5 and its configs, nothing else; outputs the snapshot folder.' }
            @{ Code = 'Save-DiffusionModel black-forest-labs/FLUX.1-dev -Component text_encoder,text_encoder_2'; Remarks = 'Only the text encoders and their tokenizers of the gated FLUX.1-dev (accept its licence on the model page and set $env:HF_TOKEN first).' }
            @{ Code = '$env:HF_HUB_OFFLINE = 1; New-DiffusionPipeline stable-diffusion-v1-5/stable-diffusion-v1-5'; Remarks = 'Later, without network: loads from the cache only.' }
        )
    }
    'Get-DiffusionModel' = @{
        Synopsis    = 'Lists the models in the Hugging Face Hub cache with their revisions, size on disk and times, as hf cache scan.'
        Description = 'Scans the cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), including what Python''s huggingface_hub downloaded. Each object has RepoId, Revisions (ref -> commit, and commits without a ref), SizeOnDisk (the blobs, counted once however many snapshots use them), Blobs, LastModified, LastAccessed, Path (the snapshot of main, else the newest: pipe it to New-DiffusionPipeline) and CachePath (the repo''s cache folder).'
        Parameters  = @{ RepoId = 'Only these repo ids; wildcards allowed (black-forest-labs/*).' }
        Examples    = @(
            @{ Code = 'Get-DiffusionModel | Sort-Object SizeOnDisk -Descending | Format-Table RepoId, SizeOnDisk, LastAccessed'; Remarks = 'The cached models, largest first.' }
            @{ Code = 'Get-DiffusionModel stable-diffusion-v1-5/* | New-DiffusionPipeline -DType float16'; Remarks = 'Loads a cached model from its snapshot folder.' }
        )
    }
    'Remove-DiffusionModel' = @{
        Synopsis    = 'Deletes a model, or one revision of it, from the Hugging Face Hub cache.'
        Description = 'Without -Revision the repo''s whole cache folder goes (blobs, snapshots, refs, locks). With -Revision only that revision''s snapshot, the refs that point to it and the blobs no other snapshot links to; when it is the last snapshot, the whole repo goes. Asks for confirmation (ConfirmImpact High); -WhatIf shows what would be deleted and the bytes freed without deleting.'
        Parameters  = @{
            RepoId   = 'The repo id(s) to delete; takes Get-DiffusionModel''s output from the pipeline.'
            Revision = 'Only this revision: a branch such as main, a tag or a commit hash.'
            PassThru = 'Output what was deleted (commits, refs, blobs, bytes freed).'
        }
        Examples    = @(
            @{ Code = 'Remove-DiffusionModel stable-diffusion-v1-5/stable-diffusion-v1-5 -WhatIf'; Remarks = 'Shows what would be deleted.' }
            @{ Code = 'Get-DiffusionModel | Where-Object LastAccessed -lt (Get-Date).AddMonths(-3) | Remove-DiffusionModel -Confirm:$false'; Remarks = 'Deletes the models not used for three months.' }
        )
    }
}
