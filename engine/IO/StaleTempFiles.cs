using System.Collections.Concurrent;
using System.Text.RegularExpressions;

namespace Diffusion.Engine.IO;

/// <summary>
/// The temp files <see cref="AtomicFile"/> writes (<c>.{name}.{32 hex digits}.tmp</c>) and the removal of stale ones: a
/// writer killed mid-write (SIGKILL, power loss) leaves its temp file behind, and the next save into that folder
/// removes it. A temp file is stale only when it is at least <see cref="MinimumAge"/> old and no writer holds it: a
/// writer keeps its temp file open with FileShare.None (a flock on Unix, a sharing lock on Windows), so it is only
/// removed while this process holds that lock itself. Files of other programs (other names) are never touched.
/// </summary>
public static partial class StaleTempFiles
{
    /// <summary>How old (last written) a temp file must be before it may be taken for stale.</summary>
    public static readonly TimeSpan MinimumAge = TimeSpan.FromMinutes(5);

    /// <summary>How often one process looks into the same folder again (folders of many images are not listed per save).</summary>
    private static readonly TimeSpan RescanAfter = TimeSpan.FromMinutes(10);

    private static readonly ConcurrentDictionary<string, DateTime> LastScan = new(OperatingSystem.IsLinux() ? StringComparer.Ordinal : StringComparer.OrdinalIgnoreCase);

    [GeneratedRegex(@"^\..+\.[0-9a-f]{32}\.tmp$", RegexOptions.CultureInvariant)]
    private static partial Regex TempNamePattern();

    public static string TempName(string fileName) => $".{fileName}.{Guid.NewGuid():N}.tmp";

    public static bool IsTempName(string fileName) => TempNamePattern().IsMatch(fileName);

    /// <summary>Whether <paramref name="fileName"/> is a temp file <see cref="TempName"/> made for <paramref name="targetFileName"/>.</summary>
    public static bool IsTempNameOf(string fileName, string targetFileName) =>
        IsTempName(fileName) && fileName.Length == targetFileName.Length + ".".Length + ".".Length + 32 + ".tmp".Length
        && fileName.AsSpan(1).StartsWith(targetFileName + ".", StringComparison.Ordinal);

    /// <summary><see cref="RemoveIn"/> unless this process looked into <paramref name="folder"/> recently; never throws.</summary>
    public static void RemoveOnce(string folder)
    {
        var now = DateTime.UtcNow;
        if (LastScan.TryGetValue(folder, out var last) && now - last < RescanAfter) return;
        LastScan[folder] = now;
        RemoveIn(folder);
    }

    /// <summary>Removes the stale temp files in <paramref name="folder"/> (not its sub-folders); returns their names. Never throws.</summary>
    public static IReadOnlyList<string> RemoveIn(string folder)
    {
        var removed = new List<string>();
        IEnumerable<string> candidates;
        try { candidates = Directory.EnumerateFiles(folder, ".*.tmp").Where(f => IsTempName(Path.GetFileName(f))).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return removed; }
        foreach (var file in candidates)
            if (TryRemove(file)) removed.Add(Path.GetFileName(file));
        return removed;
    }

    private static bool TryRemove(string file)
    {
        try
        {
            var info = new FileInfo(file);
            if (info.LinkTarget is not null || !RegularFile.IsRegular(file)) return false; // only plain files this module wrote (a FIFO would hang the probe)
            if (DateTime.UtcNow - info.LastWriteTimeUtc < MinimumAge) return false;
            // Succeeds only when no writer holds the file; DeleteOnClose removes it while the lock is still ours.
            using var probe = new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // held by a live writer, already gone, or not ours to remove
        }
    }
}
