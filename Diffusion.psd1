@{
    RootModule           = 'Diffusion.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = 'f3c1a6d2-5b8e-4c1f-9a7d-2e6b4d8c0a15'
    Author               = 'Diffusion contributors'
    CompanyName          = 'Diffusion'
    Copyright            = '(c) Diffusion contributors. MIT License.'
    Description          = 'Runs diffusion models (Stable Diffusion 1.x, FLUX.1) natively in PowerShell on CPU or GPUs: staged inference, data-parallel generation and model sharding, with the same images as diffusers.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('Diffusion.format.ps1xml')
    CmdletsToExport      = @(
        'Initialize-DiffusionBackend'
        'Get-DiffusionDevice'
        'New-DiffusionPipeline'
        'Remove-DiffusionPipeline'
        'ConvertTo-DiffusionEmbedding'
        'Invoke-Denoise'
        'ConvertFrom-DiffusionLatent'
        'ConvertTo-DiffusionLatent'
        'Save-DiffusionImage'
        'Invoke-Diffusion'
        'Add-DiffusionLora'
        'Get-DiffusionLora'
        'Remove-DiffusionLora'
        'Export-DiffusionTensor'
        'Import-DiffusionTensor'
        'Get-DiffusionPromptToken'
        'Clear-DiffusionMemory'
        'Get-DiffusionDeviceMap'
        'Split-Prompt'
        'Get-DiffusionRank'
        'Start-DiffusionParallel'
        'Get-DiffusionImageInfo'
        'Save-DiffusionModel'
        'Get-DiffusionModel'
        'Remove-DiffusionModel'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @('Split-Prompts')
    PrivateData          = @{
        PSData = @{
            Tags         = @('diffusion', 'stable-diffusion', 'flux', 'diffusers', 'torch', 'gpu', 'cuda', 'ai', 'image-generation', 'PSEdition_Core', 'Linux', 'Windows')
            # The repository has no published address yet: these follow GitHub's layout for an owner 'diffusion-contributors';
            # change both to the real repository before publishing to the Gallery. The LICENSE file ships in the package.
            ProjectUri   = 'https://github.com/diffusion-contributors/Diffusion'
            LicenseUri   = 'https://github.com/diffusion-contributors/Diffusion/blob/main/LICENSE'
            ReleaseNotes = 'Stable Diffusion 1.x and FLUX.1 on CPU and CUDA: staged inference, data-parallel generation, device maps; PNG/JPEG/WebP with A1111 parameters that replay.'
        }
    }
}
