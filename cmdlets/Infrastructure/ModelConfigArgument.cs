using System.Management.Automation;
using Diffusion.Engine;
using Diffusion.Engine.IO;
using Diffusion.Engine.SingleFile;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// -Config of a single-file load, in one spot: today a folder path (resolved against PowerShell's location). Without
/// -Config, a file recognised as a published architecture (SD 1.5, FLUX.1-dev, FLUX.1-schnell) is refused naming the
/// Hub repo whose configs fit it; this is where a Hub resolver takes over (the repo id -> its cached config folder).
/// </summary>
internal static class ModelConfigArgument
{
    /// <returns>The config folder for the engine, or null (a model folder, or a single file the engine will refuse itself).</returns>
    public static string? Resolve(PSCmdlet cmdlet, string modelPath, string? config)
    {
        if (config is not null) return cmdlet.GetUnresolvedProviderPathFromPSPath(config);
        if (!File.Exists(modelPath) || !modelPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return null;
        var checkpoint = SingleFileCheckpoint.Open(modelPath); // an unknown layout is refused here, naming its keys
        if (KnownArchitectures.Detect(checkpoint.Header) is not { } known) return null;
        throw new DiffusionException("SingleFileConfigNeeded", DiffusionErrorKind.InvalidArgument,
            $"'{modelPath}' is a {known.Name} checkpoint ({SingleFileCheckpoint.Describe(known.Layout)}). Its configs, tokenizers and scheduler are " +
            $"those of the Hub repository '{known.ConfigRepoId}': download them (e.g. `huggingface-cli download {known.ConfigRepoId} --include \"*.json\" \"*.txt\" \"*.model\" --local-dir <folder>`) " +
            "and pass the folder with -Config <folder>.", "Config");
    }
}
