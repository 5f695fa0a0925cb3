namespace Diffusion.Engine.IO;

/// <summary>The target of a no-replace <see cref="AtomicFile.Write"/> exists (it may have appeared while the file was being written).</summary>
internal sealed class TargetExistsException(string path) : IOException($"The file '{path}' already exists.")
{
    public string Path { get; } = path;
}

/// <summary>
/// Writes a file all-or-nothing: the content goes to a hidden temp file in the target's folder
/// (<c>.{name}.{guid}.tmp</c>, see <see cref="StaleTempFiles"/>), is flushed to disk, then published under the target's
/// name. A failure at any point deletes the temp file, so the target is either the old file (or absent) or the
/// complete new one, never half-written. Without overwrite the publishing step itself refuses an existing target
/// (<see cref="NoReplaceMove"/>), so of several writers racing for one path exactly one wins, also across processes.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> (full path) with <paramref name="write"/>; creates its folder if needed.</summary>
    /// <exception cref="TargetExistsException">The target exists and <paramref name="overwrite"/> is false.</exception>
    /// <exception cref="IOException">The write failed.</exception>
    public static void Write(string path, bool overwrite, Action<Stream> write)
    {
        var folder = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(folder);
        StaleTempFiles.RemoveOnce(folder);
        if (!overwrite && (File.Exists(path) || Directory.Exists(path))) throw new TargetExistsException(path); // early: skip the write
        var temp = Path.Combine(folder, StaleTempFiles.TempName(Path.GetFileName(path)));
        try
        {
            // FileShare.None also locks the temp file (flock on Unix) while it is written: a live writer's file is
            // never taken for a stale one. On Unix it stays open (and locked) until it has been published.
            var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20);
            try
            {
                write(stream);
                stream.Flush(flushToDisk: true);
                if (OperatingSystem.IsWindows()) { stream.Dispose(); stream = null; } // Windows cannot rename a file open without delete sharing
                if (overwrite) File.Move(temp, path, overwrite: true);
                else NoReplaceMove.Move(temp, path);
            }
            finally
            {
                stream?.Dispose();
            }
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
