using System.Management.Automation;
using Diffusion.Engine;
using Diffusion.Engine.Imaging;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>What -InitImage / -Image accept: a path (through PowerShell's providers), a FileInfo, an image object, or an already encoded image.</summary>
internal static class InitImageArgument
{
    public static EncodedImage Encode(DiffusionCmdlet cmdlet, DiffusionPipeline pipeline, object? value, int? height, int? width)
    {
        var item = value is PSObject ps ? ps.BaseObject : value;
        return item switch
        {
            EncodedImage encoded => encoded,
            DiffusionImage image => ImageToImage.Encode(pipeline, image, height, width),
            FileInfo file => ImageToImage.Encode(pipeline, file.FullName, height, width),
            string path when path.Length > 0 => ImageToImage.Encode(pipeline, cmdlet.GetUnresolvedProviderPathFromPSPath(path), height, width),
            _ => throw new DiffusionException("InitImageInvalid", DiffusionErrorKind.InvalidArgument,
                $"-InitImage takes an image file's path, a file from Get-Item, an image from Invoke-Diffusion, or ConvertTo-DiffusionLatent -Image output; got {item?.GetType().Name ?? "nothing"}.",
                "InitImage"),
        };
    }
}
