using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Diffusion.Engine.IO;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// What an image's parameters name its model by: A1111's "Model" (the folder's name, or the Hugging Face repo of a
/// hub cache snapshot) and "Model hash" (A1111's short hash: the first 10 hex digits of the SHA-256 of the weights file).
/// </summary>
public static partial class ModelIdentity
{
    private static readonly ConcurrentDictionary<(string Path, long Length, DateTime Written), string> Hashes = new();

    /// <summary>"stable-diffusion-v1-5" for ./stable-diffusion-v1-5; "org/name" for …/models--org--name/snapshots/&lt;commit&gt;.</summary>
    public static string Name(string modelPath)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelPath));
        var hub = HubSnapshot().Match(full.Replace('\\', '/'));
        return hub.Success ? hub.Groups["repo"].Value.Replace("--", "/") : Path.GetFileName(full);
    }

    /// <summary>
    /// A1111's short hash of a diffusers folder's denoiser (<paramref name="component"/>: unet or transformer) when its
    /// weights are one safetensors file, as A1111 hashes a checkpoint file (sha256, first 10 hex digits). A folder has no
    /// single checkpoint file, so this identifies the denoiser's weights, not a file A1111 or a model site lists. Null for
    /// sharded weights (no one file to hash) or a folder without that component. Computed once per file and process.
    /// </summary>
    public static string? Hash(string modelPath, string component)
    {
        var dir = Path.Combine(modelPath, component);
        if (!Directory.Exists(dir)) return null;
        IReadOnlyList<string> files;
        try { files = WeightLoader.FindWeightFiles(dir); }
        catch (DiffusionException) { return null; }
        if (files.Count != 1) return null;
        var info = new FileInfo(files[0]);
        var resolved = info.LinkTarget is null ? info : new FileInfo(info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? info.FullName);
        return Hashes.GetOrAdd((resolved.FullName, resolved.Length, resolved.LastWriteTimeUtc), key =>
        {
            using var stream = new FileStream(key.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            return Convert.ToHexString(SHA256.HashData(stream))[..10].ToLowerInvariant();
        });
    }

    [GeneratedRegex(@"/models--(?<repo>[^/]+?)/snapshots/[^/]+$")]
    private static partial Regex HubSnapshot();
}
