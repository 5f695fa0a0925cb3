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
        'Save-DiffusionImage'
        'Invoke-Diffusion'
        'Export-DiffusionTensor'
        'Import-DiffusionTensor'
        'Get-DiffusionPromptToken'
        'Clear-DiffusionMemory'
        'Get-DiffusionDeviceMap'
        'Split-Prompt'
        'Get-DiffusionRank'
        'Start-DiffusionParallel'
        'Save-DiffusionModel'
        'Get-DiffusionModel'
        'Remove-DiffusionModel'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @('Split-Prompts')
    PrivateData          = @{
        PSData = @{
            Tags       = @('diffusion', 'stable-diffusion', 'flux', 'torch', 'gpu', 'ai')
            LicenseUri = ''
            ProjectUri = ''
        }
    }
}
