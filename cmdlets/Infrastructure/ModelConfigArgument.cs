using System.Management.Automation;
using Diffusion.Engine;
using Diffusion.Engine.IO;
using Diffusion.Engine.SingleFile;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// -Config of a single-file load: a folder path (resolved against PowerShell's location) or a Hugging Face repo id,
/// of which only the configs, tokenizers and scheduler are fetched into the Hub cache (diffusers'
/// from_single_file(config=...)). Without -Config, a file recognised as a published architecture (SD 1.5,
/// FLUX.1-dev, FLUX.1-schnell) takes its configs from the Hub repository they are published in.
/// </summary>
internal static class ModelConfigArgument
{
    /// <returns>The config folder for the engine, or null (a model folder, or a single file the engine will refuse itself).</returns>
    public static string? Resolve(PSCmdlet cmdlet, string modelPath, string? config, CancellationToken cancel = default)
    {
        if (config is not null) return ModelResolution.Resolve(cmdlet, config, revision: null, variant: null, components: null, cancel, configsOnly: true);
        if (!File.Exists(modelPath) || !modelPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return null;
        var checkpoint = SingleFileCheckpoint.Open(modelPath); // an unknown layout is refused here, naming its keys
        if (KnownArchitectures.Detect(checkpoint.Header) is not { } known) return null;
        cmdlet.WriteVerbose($"'{modelPath}' is a {known.Name} checkpoint ({SingleFileCheckpoint.Describe(known.Layout)}): its configs come from '{known.ConfigRepoId}'.");
        try { return ModelResolution.Resolve(cmdlet, known.ConfigRepoId, revision: null, variant: null, components: null, cancel, configsOnly: true); }
        catch (DiffusionException e)
        {
            throw new DiffusionException("SingleFileConfigNeeded", DiffusionErrorKind.InvalidArgument,
                $"'{modelPath}' is a {known.Name} checkpoint ({SingleFileCheckpoint.Describe(known.Layout)}); its configs, tokenizers and scheduler are those of the " +
                $"Hub repository '{known.ConfigRepoId}', which could not be fetched ({e.Message}). Download them once (Save-DiffusionModel {known.ConfigRepoId}), " +
                "or pass a folder that holds them with -Config <folder>.", "Config", e);
        }
    }
}
