using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// A diffusers scheduler: the timesteps to run the denoiser at and the update from one sample to the next.
/// Usage per run: <see cref="SetTimesteps"/> (resets all state), multiply the initial noise by
/// <see cref="InitNoiseSigma"/>, then for each <c>i</c> in <see cref="Timesteps"/>: run the model on
/// <see cref="ScaleModelInput"/>(sample, i) at timestep <c>Timesteps[i]</c>, and <see cref="Step"/> to the next sample.
/// </summary>
public interface IScheduler
{
    /// <summary>The diffusers class this mirrors, e.g. "PNDMScheduler".</summary>
    string Name { get; }

    /// <summary>The configuration it was built from.</summary>
    SchedulerConfig Config { get; }

    /// <summary>Computes the timesteps for a run of <paramref name="numInferenceSteps"/> steps and resets all state.</summary>
    /// <param name="mu">Flow matching with dynamic shifting only: the shift exponent (see
    /// <see cref="FlowMatchEulerDiscreteScheduler.CalculateShift"/>). Double, as diffusers computes it in Python floats.</param>
    void SetTimesteps(int numInferenceSteps, double? mu = null);

    /// <summary>After <see cref="SetTimesteps"/>: the timesteps the model gets, in order.</summary>
    float[] Timesteps { get; }

    /// <summary>The standard deviation of the initial noise (the pipeline multiplies the unit noise by it).</summary>
    float InitNoiseSigma { get; }

    /// <summary>diffusers' class attribute <c>order</c> (model evaluations per step).</summary>
    int Order { get; }

    /// <summary>The model input for step <paramref name="stepIndex"/> (some schedulers scale the sample by its sigma).</summary>
    Tensor ScaleModelInput(Tensor sample, int stepIndex);

    /// <summary>
    /// img2img: <paramref name="original"/> noised to the level of step <paramref name="stepIndex"/>, the first step the run
    /// takes (diffusers' <c>add_noise</c> at <c>timesteps[t_start]</c> with <c>set_begin_index(t_start)</c>, or
    /// <c>scale_noise</c> for flow matching).
    /// </summary>
    Tensor AddNoise(Tensor original, Tensor noise, int stepIndex);

    /// <summary>The sample after step <paramref name="stepIndex"/>, from the model's output at <c>Timesteps[stepIndex]</c>.</summary>
    /// <param name="generator">Random source of ancestral/stochastic schedulers (diffusers' <c>generator</c>); others ignore it.</param>
    Tensor Step(Tensor modelOutput, int stepIndex, Tensor sample, Generator? generator = null);
}
