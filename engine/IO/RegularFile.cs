using System.Runtime.InteropServices;

namespace Diffusion.Engine.IO;

/// <summary>
/// The one checked way the engine reads model, tokenizer and config files: only regular files, after following
/// symbolic links (the Hugging Face cache links snapshots/&lt;rev&gt;/... to ../../blobs/&lt;sha&gt;). A FIFO or device
/// would hang the load (open() of a FIFO waits for a writer, /dev/zero never ends), and a dangling link gets an error
/// naming the link and its target instead of "does not exist".
/// </summary>
internal static partial class RegularFile
{
    /// <summary>
    /// Throws when <paramref name="path"/> is a dangling link (ModelFileLinkDangling) or something other than a regular
    /// file (ModelFileNotRegular). Returns quietly when nothing is there: the caller reports the missing file its way.
    /// </summary>
    public static void Require(string path)
    {
        path = Path.GetFullPath(path);
        var info = new FileInfo(path);
        string? link;
        try { link = info.LinkTarget; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { link = null; }
        if (link is not null)
        {
            string? final = null;
            bool exists;
            try
            {
                var target = info.ResolveLinkTarget(returnFinalTarget: true);
                final = target?.FullName;
                exists = target is not null && (File.Exists(target.FullName) || Directory.Exists(target.FullName));
            }
            catch (IOException) { exists = false; } // a loop of links
            if (!exists)
                throw new DiffusionException("ModelFileLinkDangling", DiffusionErrorKind.ObjectNotFound,
                    $"'{path}' is a symbolic link to '{link}'{(final is not null && final != link ? $" ('{final}')" : "")}, which does not exist. " +
                    "The download is incomplete (in a Hugging Face cache: the blob it points to is missing): download the model again, or fix the link.", path);
        }
        else if (!info.Exists && !Directory.Exists(path)) return;
        var kind = Kind(path);
        if (kind is not null)
            throw new DiffusionException("ModelFileNotRegular", DiffusionErrorKind.InvalidData,
                $"'{path}'{(link is not null ? $" (a link to '{link}')" : "")} is {kind}, not a regular file. Model, tokenizer and config files are read only from regular files " +
                "(a FIFO or device would hang the load or never end): replace it with the real file, or download the model again.", path);
    }

    public static byte[] ReadAllBytes(string path) { Require(path); return File.ReadAllBytes(path); }

    public static string ReadAllText(string path) { Require(path); return File.ReadAllText(path); }

    public static IEnumerable<string> ReadLines(string path) { Require(path); return File.ReadLines(path); }

    /// <summary>True for a regular file (after following links); false for anything else or nothing. Never throws.</summary>
    public static bool IsRegular(string path)
    {
        try { return File.Exists(path) && Kind(path) is null; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>Null for a regular file (or where the type cannot be told), else what it is ("a FIFO (named pipe)", ...).</summary>
    private static string? Kind(string path)
    {
        if (!OperatingSystem.IsLinux()) return Directory.Exists(path) ? "a folder" : null;
        var buffer = new byte[256];
        int result;
        try { unsafe { fixed (byte* b = buffer) result = Statx(AtFdCwd, path, 0, StatxType, b); } }
        catch (EntryPointNotFoundException) { return Directory.Exists(path) ? "a folder" : null; } // glibc before 2.28
        if (result != 0) return null; // vanished or unreadable: the open that follows reports it
        int mode = BitConverter.ToUInt16(buffer, StatxModeOffset) & 0xF000;
        return mode switch
        {
            0x8000 => null,
            0x4000 => "a folder",
            0x1000 => "a FIFO (named pipe)",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            _ => "not a plain file",
        };
    }

    private const int AtFdCwd = -100;
    private const uint StatxType = 1;
    /// <summary>struct statx: stx_mask, stx_blksize (u32), stx_attributes (u64), stx_nlink, stx_uid, stx_gid (u32), stx_mode (u16): the same on every Linux architecture.</summary>
    private const int StatxModeOffset = 28;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirFd, string path, int flags, uint mask, byte* buffer);
}
