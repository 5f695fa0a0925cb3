namespace Diffusion.Engine.IO;

/// <summary>
/// Writes a file all-or-nothing: the content goes to a hidden temp file in the target's folder, is flushed to disk,
/// then renamed over the target. A failure at any point deletes the temp file, so the target is either the old file
/// (or absent) or the complete new one, never half-written.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> (full path) with <paramref name="write"/>; creates its folder if needed.</summary>
    /// <exception cref="IOException">The target exists and <paramref name="overwrite"/> is false, or the write failed.</exception>
    public static void Write(string path, bool overwrite, Action<Stream> write)
    {
        var folder = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(folder);
        var temp = Path.Combine(folder, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
