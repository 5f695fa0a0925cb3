using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.Imaging;
using Diffusion.Engine.IO;

namespace Diffusion.Cmdlets;

/// <summary>
/// Saves images with their generation parameters: PNG (text chunks), or JPEG / WebP (EXIF UserComment) when the
/// name ends in .jpg, .jpeg or .webp. -Path is a file, a folder, or a template with {index}, {seed}, {prompt}; existing
/// files are kept unless -Force. Outputs the files as Get-Item does.
/// </summary>
[Cmdlet(VerbsData.Save, "DiffusionImage", SupportsShouldProcess = true)]
[OutputType(typeof(FileInfo))]
public sealed class SaveDiffusionImageCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    public DiffusionImage[] Image { get; set; } = [];

    [Parameter(Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = ".";

    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>JPEG and WebP quality, 1-100.</summary>
    [Parameter] [ValidateRange(1, 100)] public int Quality { get; set; } = ImageFileFormats.DefaultQuality;

    private readonly HashSet<string> _written = new(StringComparer.Ordinal);
    private OutputPathTemplate _template = null!;

    protected override void BeginProcessing() =>
        _template = Run(() => new OutputPathTemplate(ResolveTemplatePath(Path)));

    protected override void ProcessRecord()
    {
        foreach (var image in Image)
        {
            var target = Run(() => _template.Expand(image.Index, image.Parameters?.Seed ?? 0, image.Parameters?.Prompt ?? ""));
            if (!_written.Add(target))
            {
                WriteError(ArgumentError("ImagePathCollision",
                    $"Image #{image.Index} would be written to '{target}', which this command already wrote for another image. Put {{index}} in -Path (e.g. 'out/{{index}}-{{seed}}.png') or give a folder.", target));
                continue;
            }
            if (!ShouldProcess(target, $"Save image #{image.Index} ({image.Width}x{image.Height})")) continue;
            try
            {
                image.Save(target, overwrite: Force, Quality);
                WriteObject(FileItems.Get(this, target));
            }
            catch (DiffusionException e) { WriteEngineError(e, target); }
            catch (IOException e)
            {
                WriteError(new ErrorRecord(e, "ImageWriteFailed", ErrorCategory.WriteError, target)
                { ErrorDetails = new ErrorDetails($"Could not write '{target}': {e.Message}") });
            }
            catch (UnauthorizedAccessException e)
            {
                WriteError(new ErrorRecord(e, "ImageWriteDenied", ErrorCategory.PermissionDenied, target)
                { ErrorDetails = new ErrorDetails($"Not allowed to write '{target}': {e.Message}. Choose another -Path.") });
            }
        }
    }
}
