using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine.Pipelines;

namespace Diffusion.Cmdlets;

/// <summary>
/// Invoke-Diffusion -BatchSize n -BatchPosition k: replays image k of a batch of n that shared one generator (what an
/// image's "Batch size" / "Batch pos" parameters record). The prompt fills all n places, so the noise, the scheduler's
/// draws and the batched kernels are those of the original batch; only the image at place k is kept (the engine's
/// <see cref="GenerationRequest.BatchPosition"/>).
/// </summary>
public sealed partial class InvokeDiffusionCommand
{
    private void CheckReplayModes()
    {
        if (PassThru && OutputPath is null)
            ThrowTerminatingError(ArgumentError("PassThruWithoutOutputPath", "-PassThru goes with -OutputPath: without it the images are output anyway.", "PassThru"));
        if (PassThru && IsParallel)
            ThrowTerminatingError(ArgumentError("ParallelPassThru", "-PassThru cannot be combined with -NumProcesses or several -Device: the images stay in the worker processes. Read the saved files instead (the results' Path, e.g. with Get-DiffusionImageInfo).", "PassThru"));
        if (BatchPosition is not int position) return;
        if (IsParallel || SeedPerPrompt)
            ThrowTerminatingError(ArgumentError("BatchPositionMode", "-BatchPosition replays one image of a single-process batch; it cannot be combined with -SeedPerPrompt, -NumProcesses or several -Device.", "BatchPosition"));
        if (BatchSize is not int size || position >= size)
            ThrowTerminatingError(ArgumentError("BatchPositionInvalid", $"-BatchPosition {position} needs -BatchSize greater than it: the batch the image was made in (its 'Batch size' parameter).", "BatchPosition"));
        if (_prompts.Count != 1)
            ThrowTerminatingError(ArgumentError("BatchPositionPrompts", $"-BatchPosition replays one image: give one prompt, not {_prompts.Count}.", "Prompt"));
    }
}
