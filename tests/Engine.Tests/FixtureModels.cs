using Diffusion.Engine.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Tests;

/// <summary>
/// One model of a fixture folder, loaded the way New-DiffusionPipeline -Component loads it (ComponentLoader: the class
/// model_index.json names, built on the meta device, weights loaded strictly, eval mode), on the CPU.
/// </summary>
internal static class FixtureModels
{
    public static T Load<T>(string pipeline, string component, ScalarType dtype = ScalarType.Float32) where T : nn.Module
    {
        var weights = ComponentWeights.Open(Fixtures.PathOf(pipeline), new PipelineLoadOptions());
        var loaded = ComponentLoader.Load(weights, weights.Folder.Components[component], CPU, dtype);
        return loaded.As<T>(); // the caller owns the model; the component's finalizer takes it off the memory ledger
    }
}
