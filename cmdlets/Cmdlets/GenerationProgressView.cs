using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Cmdlets.Parallel;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>
/// Invoke-Diffusion's view of the engine's progress, written on the pipeline thread as the engine reports it: a bar
/// per denoise batch (under an "image k/n" bar with -SeedPerPrompt), the -Verbose lines of each stage, and in a worker
/// of a parallel run a report to the parent after each step (see <see cref="WorkerReports"/>).
/// </summary>
internal sealed class GenerationProgressView(DiffusionCmdlet cmdlet, DiffusionPipeline pipeline, GenerationRequest request, bool inWorker)
    : IProgress<GenerationProgress>
{
    private const int ImagesActivityId = 1;
    private ProgressRecord? _images, _batch;
    private readonly List<float> _timesteps = new();

    public void Report(GenerationProgress p)
    {
        switch (p.Stage)
        {
            case GenerationStage.RunStarted when request.SeedPerPrompt:
                _images ??= new ProgressRecord(ImagesActivityId, $"Generating {p.Runs} image(s), one seed per prompt", "starting");
                _images.StatusDescription = $"image {p.Run + 1}/{p.Runs}";
                _images.PercentComplete = 100 * p.Run / p.Runs;
                cmdlet.WriteProgressSnapshot(_images);
                break;
            case GenerationStage.Encoded:
                cmdlet.WriteVerbose($"Encoded {string.Join(", ", p.Indices.Select(i => $"#{i}"))} in {VerboseReport.Seconds(p.Elapsed.TotalSeconds)}.");
                break;
            case GenerationStage.DenoiseStep:
                Step(p, p.Step!);
                break;
            case GenerationStage.DenoiseEnded:
                Ended(p);
                break;
            case GenerationStage.Decoded:
                cmdlet.WriteVerbose($"Decoded #{p.Indices[0]} in {VerboseReport.Seconds(p.Elapsed.TotalSeconds)}.");
                VerboseReport.Memory(cmdlet, "after decoding");
                break;
        }
    }

    private void Step(GenerationProgress p, DenoiseStep s)
    {
        if (_batch is null)
        {
            _batch = DenoiseProgressText.Bar(p.Prompts, _images?.ActivityId ?? -1);
            _timesteps.Clear();
        }
        _timesteps.Add(s.Timestep);
        if (s.Index == 0) cmdlet.WriteVerbose(DenoiseProgressText.Run(pipeline, p.Indices, request.Scheduler, s));
        DenoiseProgressText.Show(_batch, s);
        cmdlet.WriteProgressSnapshot(_batch);
        if (inWorker && request.SeedPerPrompt) // the parent shows each rank's step
            cmdlet.WriteInformation(WorkerReports.Step(p.Indices[0], p.Run + 1, p.Runs, s.StepsDone, s.StepsAsked, pipeline.Device));
    }

    private void Ended(GenerationProgress p)
    {
        if (p.Latents is not null) cmdlet.WriteDebug(DenoiseProgressText.Timesteps(_timesteps));
        var bar = _batch ?? DenoiseProgressText.Bar(p.Prompts, _images?.ActivityId ?? -1);
        _batch = null;
        bar.RecordType = ProgressRecordType.Completed;
        cmdlet.WriteProgressSnapshot(bar);
        if (p.Latents is not { } latents) return;
        if (latents.Count > 0) cmdlet.WriteVerbose(DenoiseProgressText.Result(latents));
        VerboseReport.Memory(cmdlet, "after denoising");
    }

    /// <summary>After the generation, however it ended: the -SeedPerPrompt bar is completed.</summary>
    public void Complete()
    {
        if (_images is null) return;
        _images.RecordType = ProgressRecordType.Completed;
        cmdlet.WriteProgressSnapshot(_images);
    }
}
