using System.Management.Automation;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>Files as the FileSystem provider gives them (Get-Item's objects), so they print with Mode, LastWriteTime, Length and the Directory header.</summary>
internal static class FileItems
{
    /// <summary>The provider's item for <paramref name="path"/> (a FileInfo with PSPath, PSParentPath, ...); a bare FileInfo if the provider cannot give it.</summary>
    public static object Get(PSCmdlet cmdlet, string path)
    {
        try
        {
            var items = cmdlet.InvokeProvider.Item.Get([path], force: true, literalPath: true);
            if (items.Count == 1) return items[0];
        }
        catch (Exception e) when (e is ItemNotFoundException or ProviderNotFoundException or System.Management.Automation.DriveNotFoundException or ProviderInvocationException) { }
        return new FileInfo(path);
    }
}
