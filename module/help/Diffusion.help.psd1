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
            Path      = 'The model folder (the one holding model_index.json), or a Hugging Face repo id such as org/name: taken from the Hub cache (HF_HUB_CACHE), downloading only the files this load reads (with -Component, only those components).'
            Revision  = 'With a Hugging Face repo id as -Path: the branch, tag or commit hash to load (default main).'
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
            Path             = 'The model folder (the one holding model_index.json), or a Hugging Face repo id (org/name), taken from the Hub cache or downloaded into it.'
            Revision         = 'With a Hugging Face repo id as -Path: the branch, tag or commit hash to load (default main).'
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
            GuidanceRescale = 'SD: diffusers'' guidance_rescale, 0 to 1 (default 0, off). Rescales the guided noise prediction to the text prediction''s standard deviation ("Common Diffusion Noise Schedules and Sample Steps are Flawed", 3.4); 0.7 is the paper''s value for zero-terminal-SNR models such as SD 2.x with v-prediction. Recorded in the PNG. Refused for FLUX.'
            Seed          = 'Seed of the CPU generator for the initial noise. Default: a random seed, reported on the output.'
            Height        = 'Image height in pixels: a multiple of 8 for SD; FLUX rounds down to a multiple of 16 with a warning.'
            Width         = 'Image width in pixels, as -Height.'
            Scheduler     = 'A scheduler for this run instead of the pipeline''s (name, alias or scheduler_config.json path).'
            BatchSize     = 'Images denoised together. Default: all received.'
            IncludeSteps  = 'Also output the latents after every step (Step below Steps), before the final latents.'
            InitialLatent = 'diffusers'' latents= argument: start from these latents (one per embedding, e.g. from Import-DiffusionTensor) instead of noise drawn from -Seed. SD latents are scaled by the scheduler''s init_noise_sigma as diffusers does.'
            SeedPerPrompt = 'Give each embedding its own generator seeded with -Seed plus its Index, and denoise it on its own (diffusers: one call per prompt with torch.Generator().manual_seed(seed + i)). An image then does not depend on which prompts ran with it. Cannot be combined with -BatchSize.'
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
        Synopsis    = 'Generates images from prompts in one call: encode, denoise, decode and optionally save; in one process or split between several.'
        Description = 'The one-call path, for a loaded pipeline (-Pipeline) or a model folder loaded for the call and freed afterwards (-Path). Without -OutputPath it outputs image objects; with it, it saves each image and outputs one result per prompt (index, prompt, seed, file, rank, device, seconds). By default the prompts are one batch drawn from one generator seeded with -Seed, as diffusers does. -SeedPerPrompt gives prompt i the seed Seed+i and generates it on its own. With -NumProcesses n (or several -Device) the prompts are split between n worker pwsh processes as accelerate''s split_between_processes does; each worker loads the model once, generates its prompts with seed Seed+i (so the images are the same however many processes run) and saves them under -OutputPath, which needs {index}; the results come back in prompt order with the rank and device that made each image. A worker that dies is reported with its rank and error; -Retry re-runs its prompts on the surviving workers, and prompts that still fail get one error each. Ctrl+C kills all workers.'
        Parameters  = @{
            Pipeline          = 'A loaded pipeline with all components.'
            Path              = 'A model folder to load for this call (in each worker process for a parallel run), or a Hugging Face repo id (org/name): resolved once, from the Hub cache or downloaded into it, and the workers load the local snapshot.'
            Revision          = 'With a Hugging Face repo id as -Path: the branch, tag or commit hash to load (default main).'
            Device            = 'With -Path: cpu, cuda or cuda:N. Several devices (cuda:0,cuda:1) start one worker process per device; with -NumProcesses, process i takes Device[i mod count].'
            DType             = 'With -Path: float32, float16 or bfloat16.'
            Prompt            = 'The prompts; from the pipeline too.'
            NegativePrompt    = 'One negative prompt for all prompts, or one per prompt (SD).'
            Steps             = 'Denoising steps (default 50 SD, 28 FLUX).'
            GuidanceScale     = 'Guidance (default 7.5 SD, 3.5 FLUX dev).'
            GuidanceRescale   = 'SD: diffusers'' guidance_rescale, 0 to 1 (default 0, off); 0.7 for zero-terminal-SNR models such as SD 2.x. Recorded in the PNG; refused for FLUX.'
            Seed              = 'Seed of the CPU generator; random when omitted. With -SeedPerPrompt or in a parallel run, prompt i gets Seed+i. Seeds are 64-bit and taken modulo 2^64 as torch.manual_seed takes them: a negative seed s is torch''s seed s+2^64, and Seed+i past 9223372036854775807 wraps to the negative twin of the same generator.'
            Height            = 'Image height in pixels.'
            Width             = 'Image width in pixels.'
            Scheduler         = 'Scheduler name, alias or scheduler_config.json path.'
            MaxSequenceLength = 'FLUX: T5 tokens.'
            BatchSize         = 'Images denoised together. Default: all. Not with -SeedPerPrompt or a parallel run, which generate one prompt at a time.'
            OutputPath        = 'Save each image here (file, folder or template with {index}, {seed}, {prompt}, {rank}) and output result objects. Required for a parallel run, with {index} (or a folder), so that the processes never write the same file.'
            Force             = 'Overwrite existing files.'
            SeedPerPrompt     = 'Prompt i gets its own generator seeded with Seed+i (its index, or -PromptIndex) and is generated on its own, so its image does not depend on the other prompts or on how they were split between processes. Parallel runs always work this way.'
            PromptIndex       = 'With -SeedPerPrompt: each prompt''s index in the whole job, e.g. the Index of Split-Prompt''s output under torchrun or srun. Used for the seed (Seed+index), {index} in -OutputPath and the result''s Index. Default: 0, 1, 2, ...'
            NumProcesses      = 'Split the prompts between this many worker pwsh processes (data parallel, with -Path). Each gets RANK, WORLD_SIZE and LOCAL_RANK, and a device: -Device, else cuda:LOCAL_RANK when there are GPUs, else the CPU (OMP_NUM_THREADS shares the cores out unless already set).'
            Retry             = 'Parallel runs: re-run the prompts of a failed worker on the surviving workers up to this many times (default 0).'
        }
        Examples    = @(
            @{ Code = 'Invoke-Diffusion -Path ./stable-diffusion-v1-5 -Prompt ''a photo of an astronaut riding a horse'' -Seed 0 -OutputPath astronaut.png'; Remarks = 'One image, saved.' }
            @{ Code = 'Get-Content prompts.txt | Invoke-Diffusion -Pipeline $pipe -Steps 25 -OutputPath ''out/{index}.png'''; Remarks = 'A file of prompts, one image each.' }
            @{ Code = 'Get-Content prompts.txt | Invoke-Diffusion -Path ./stable-diffusion-v1-5 -Device cuda:0,cuda:1 -DType float16 -Seed 0 -OutputPath ''out/{index:0000}.png'' -Retry 1'; Remarks = 'Two GPUs, one worker process each; prompt i gets seed i, results come back in prompt order.' }
            @{ Code = 'Invoke-Diffusion -Path ./sd -Prompt $prompts -NumProcesses 4 -Seed 7 -OutputPath out/ | Sort-Object Seconds -Descending | Select-Object -First 3'; Remarks = 'Four processes (on the CPU, or cuda:0..3 when there are GPUs); the slowest images.' }
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
