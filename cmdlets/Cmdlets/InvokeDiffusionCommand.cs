using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine;
using Diffusion.Engine.Imaging;
using Diffusion.Engine.IO;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>One generated image as Invoke-Diffusion reports it.</summary>
public sealed class DiffusionResult
{
    public int Index { get; init; }
    public string Prompt { get; init; } = "";
    public long Seed { get; init; }
    public string? Path { get; init; }
    public string Device { get; init; } = "";
    public double Seconds { get; init; }
    public DiffusionImage? Image { get; init; }
}

/// <summary>All stages in one call: encode, denoise, decode, and (with -OutputPath) save.</summary>
[Cmdlet(VerbsLifecycle.Invoke, "Diffusion", DefaultParameterSetName = PipelineSet, SupportsShouldProcess = true)]
[OutputType(typeof(DiffusionImage), typeof(DiffusionResult))]
public sealed class InvokeDiffusionCommand : DiffusionCmdlet
{
    private const string PipelineSet = "Pipeline";
    private const string PathSet = "Path";

    [Parameter(Mandatory = true, ParameterSetName = PipelineSet)]
    public DiffusionPipeline Pipeline { get; set; } = null!;

    /// <summary>A model folder: loaded for this call and freed afterwards.</summary>
    [Parameter(Mandatory = true, ParameterSetName = PathSet)]
    [Alias("ModelPath")]
    public string Path { get; set; } = "";

    [Parameter(ParameterSetName = PathSet)] [ArgumentCompleter(typeof(DeviceCompleter))] public string? Device { get; set; }
    [Parameter(ParameterSetName = PathSet)] [ValidateSet("float32", "float16", "bfloat16")] public string DType { get; set; } = "float32";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [AllowEmptyString]
    public string[] Prompt { get; set; } = [];

    [Parameter] [AllowEmptyString] public string[]? NegativePrompt { get; set; }
    [Parameter] [ValidateRange(1, 1000)] public int? Steps { get; set; }
    [Parameter] [ValidateRange(0.0, 100.0)] public double? GuidanceScale { get; set; }
    [Parameter] public long? Seed { get; set; }
    [Parameter] public int? Height { get; set; }
    [Parameter] public int? Width { get; set; }
    [Parameter] [ArgumentCompleter(typeof(SchedulerCompleter))] public string? Scheduler { get; set; }
    [Parameter] [ValidateRange(1, 512)] public int? MaxSequenceLength { get; set; }
    [Parameter] [ValidateRange(1, int.MaxValue)] public int? BatchSize { get; set; }

    /// <summary>Save each image here (file, folder or template with {index}, {seed}, {prompt}) and output result objects.</summary>
    [Parameter] public string? OutputPath { get; set; }
    [Parameter] public SwitchParameter Force { get; set; }

    private readonly List<string> _prompts = new();

    protected override void ProcessRecord() => _prompts.AddRange(Prompt);

    protected override void EndProcessing()
    {
        if (_prompts.Count == 0) return;
        bool owned = ParameterSetName == PathSet;
        var pipeline = owned
            ? Run(() => DiffusionPipeline.Load(GetUnresolvedProviderPathFromPSPath(Path), new PipelineLoadOptions { Device = Device, DType = DType, Scheduler = Scheduler }))
            : Pipeline;
        try
        {
            var embeddings = Run(() => Generation.Encode(pipeline, _prompts, NegativePrompt, new EncodeOptions { MaxSequenceLength = MaxSequenceLength }, Warn));
            var options = new DenoiseOptions { Steps = Steps, GuidanceScale = GuidanceScale, Seed = Seed, Height = Height, Width = Width, Scheduler = owned ? null : Scheduler };
            try
            {
                InvokeDenoiseCommand.DenoiseBatches(this, pipeline, embeddings, options, BatchSize, latent =>
                {
                    using (latent)
                    {
                        var image = Run(() => Generation.Decode(pipeline, [latent]))[0];
                        Emit(image, latent, pipeline.Device);
                    }
                });
            }
            finally
            {
                foreach (var e in embeddings) e.Dispose();
            }
        }
        finally
        {
            if (owned) pipeline.Dispose();
        }
    }

    private void Emit(DiffusionImage image, DiffusionLatent latent, string device)
    {
        if (OutputPath is null)
        {
            WriteObject(image);
            return;
        }
        var target = Run(() => new OutputPathTemplate(GetUnresolvedProviderPathFromPSPath(OutputPath)).Expand(image.Index, latent.Seed, latent.Prompt));
        if (!ShouldProcess(target, $"Save image #{image.Index}")) return;
        try { image.SavePng(target, overwrite: Force); }
        catch (DiffusionException e) { WriteEngineError(e, target); return; }
        WriteObject(new DiffusionResult
        {
            Index = image.Index, Prompt = latent.Prompt, Seed = latent.Seed, Path = target, Device = device, Seconds = latent.Seconds,
        });
    }
}
