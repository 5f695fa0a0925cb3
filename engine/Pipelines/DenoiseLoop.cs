using System.Diagnostics;
using Diffusion.Engine.Devices;
using Diffusion.Engine.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// The loop every family denoises with: one model step per timestep in its own dispose scope, a progress item after each
/// step (with every image's latents when asked), the result split into one latent object per image, and the in-flight
/// latents counted in the memory ledger and freed however the loop ends (Ctrl+C included).
/// </summary>
internal static class DenoiseLoop
{
    /// <param name="latents">The initial latents [B, ...] on the model's device; the loop owns them.</param>
    /// <param name="step">(step index, current latents) -> next latents, computed inside the step's dispose scope.</param>
    /// <param name="firstStep">img2img: the index of the first timestep run (diffusers' begin index); the steps before it are skipped.</param>
    public static IEnumerable<DenoiseStep> Run(Tensor latents, IScheduler scheduler, DenoiseRunInfo run, IReadOnlyList<DiffusionEmbedding> batch,
        bool captureSteps, List<DiffusionLatent> results, Func<int, Tensor, Tensor> step, int firstStep = 0)
    {
        var clock = Stopwatch.StartNew();
        var inFlight = latents.numel() * latents.element_size();
        var deviceName = DeviceCatalog.Name(latents.device);
        MemoryLedger.Add(deviceName, inFlight);
        try
        {
            var timesteps = scheduler.Timesteps;
            int total = timesteps.Length - firstStep;
            for (int i = firstStep; i < timesteps.Length; i++)
            {
                using (var scope = torch.NewDisposeScope())
                using (var noGrad = torch.no_grad())
                {
                    var next = step(i, latents).MoveToOuterDisposeScope();
                    latents.Dispose();
                    latents = next;
                }
                int done = i - firstStep + 1;
                yield return new DenoiseStep(done - 1, total, timesteps[i], clock.Elapsed, captureSteps ? run.Split(latents, batch, done) : null);
            }
            OutputChecks.RequireFinite(latents, batch.Select(e => e.Index).ToList(), "Denoising", "latents",
                "weights with NaN or Inf (a damaged or badly converted file), a scheduler configuration that cannot work, " +
                "or float16 overflow (try -DType bfloat16 or float32)");
            results.AddRange(run.Split(latents, batch, total, clock.Elapsed.TotalSeconds));
        }
        finally
        {
            latents.Dispose();
            MemoryLedger.Remove(deviceName, inFlight);
        }
    }
}
