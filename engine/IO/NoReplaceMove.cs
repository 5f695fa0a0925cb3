using System.Runtime.InteropServices;

namespace Diffusion.Engine.IO;

/// <summary>
/// Renames a file to a name that must not exist yet, in one atomic step, so two processes publishing the same name
/// cannot both succeed. Linux: renameat2(RENAME_NOREPLACE), falling back to link() + unlink() where the file system
/// does not support it; macOS and other Unix: link() + unlink(); Windows: MoveFileEx without REPLACE_EXISTING, which is
/// already atomic. (.NET's File.Move(.., overwrite: false) on Unix checks for the target and then calls rename(),
/// which replaces: two steps, a race.)
/// </summary>
internal static partial class NoReplaceMove
{
    private const int AtFdCwd = -100;
    private const uint RenameNoReplace = 1;
    private const int EExist = 17, ENoSys = 38, EInval = 22, EPerm = 1, EOpNotSupp = 95, EOpNotSuppMac = 45, EMLink = 31;

    [LibraryImport("libc", EntryPoint = "renameat2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RenameAt2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string oldPath, string newPath);

    /// <exception cref="TargetExistsException"><paramref name="target"/> exists.</exception>
    public static void Move(string source, string target)
    {
        if (OperatingSystem.IsWindows())
        {
            try { File.Move(source, target, overwrite: false); }
            catch (IOException) when (File.Exists(target) || Directory.Exists(target)) { throw new TargetExistsException(target); }
            return;
        }
        if (OperatingSystem.IsLinux() && TryRenameNoReplace(source, target)) return;
        if (Link(source, target) == 0)
        {
            try { File.Delete(source); } catch (IOException) { } catch (UnauthorizedAccessException) { } // a leftover hard link, removed as stale later
            return;
        }
        int errno = Marshal.GetLastPInvokeError();
        if (errno == EExist) throw new TargetExistsException(target);
        if (errno is EPerm or EOpNotSupp or EOpNotSuppMac or EMLink)
        {
            PlaceholderMove(source, target); // a file system without hard links (FAT, some network shares)
            return;
        }
        throw new IOException($"Could not publish '{source}' as '{target}': {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
    }

    /// <summary>True when renamed; false when this kernel, C library or file system lacks RENAME_NOREPLACE.</summary>
    private static bool TryRenameNoReplace(string source, string target)
    {
        int result;
        try { result = RenameAt2(AtFdCwd, source, AtFdCwd, target, RenameNoReplace); }
        catch (EntryPointNotFoundException) { return false; } // a C library without renameat2 (glibc before 2.28)
        if (result == 0) return true;
        int errno = Marshal.GetLastPInvokeError();
        if (errno == EExist) throw new TargetExistsException(target);
        if (errno is EInval or ENoSys or EOpNotSupp) return false;
        throw new IOException($"Could not publish '{source}' as '{target}': {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
    }

    /// <summary>Last resort: claim the name by creating it exclusively (atomic everywhere), then rename the complete file over the claim.</summary>
    private static void PlaceholderMove(string source, string target)
    {
        try { new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None).Dispose(); }
        catch (IOException) when (File.Exists(target) || Directory.Exists(target)) { throw new TargetExistsException(target); }
        try { File.Move(source, target, overwrite: true); }
        catch
        {
            try { File.Delete(target); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
