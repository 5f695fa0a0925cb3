using Diffusion.Engine.Pipelines;
using Diffusion.Engine.Schedulers;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// The denoise progress counts as diffusers' progress bar does (StableDiffusionPipeline.__call__): total =
/// num_inference_steps; after evaluation i it advances when i is the last or (i + 1) > num_warmup_steps and
/// (i + 1) % order == 0, with num_warmup_steps = len(timesteps) - num_inference_steps * order.
/// </summary>
public class ProgressCountTests
{
    private static int[] Counts(int timesteps, int steps, int order)
    {
        var count = new ProgressCount(timesteps, steps, order);
        return Enumerable.Range(0, timesteps).Select(count.After).ToArray();
    }

    [Fact]
    public void Pndm_with_200_steps_has_201_timesteps_and_counts_to_200()
    {
        var pndm = SchedulerFactory.Create(Fixtures.PathOf("sd-tiny", "scheduler", "scheduler_config.json"));
        Assert.IsType<PNDMScheduler>(pndm);
        pndm.SetTimesteps(200);
        Assert.Equal(201, pndm.Timesteps.Length);
        var counts = Counts(pndm.Timesteps.Length, 200, pndm.Order);
        Assert.Equal(0, counts[0]); // the warm-up evaluation of the repeated timestep is not a step
        Assert.Equal(Enumerable.Range(0, 201).ToArray(), counts); // after evaluation i, i steps
        Assert.Equal(200, counts[^1]);
    }

    [Fact]
    public void One_evaluation_per_step_counts_every_evaluation() =>
        Assert.Equal([1, 2, 3, 4], Counts(4, 4, 1));

    [Fact]
    public void Second_order_schedulers_count_every_other_evaluation() =>
        // Heun-like: 2 * steps - 1 timesteps, order 2: warm-up max(5 - 6, 0) = 0; updates at (i + 1) even, and at the last.
        Assert.Equal([0, 1, 1, 2, 3], Counts(5, 3, 2));
}
