using Diffusion.Engine.Pipelines;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace Diffusion.Engine.Tests;

/// <summary>sd-tiny loaded once for the whole-generation tests (CPU, float32, its own PNDM scheduler: the reference runs' config).</summary>
public sealed class SdTinyPipeline : IDisposable
{
    public DiffusionPipeline Pipe { get; } = DiffusionPipeline.Load(Fixtures.PathOf("sd-tiny"), new PipelineLoadOptions { Device = "cpu" });
    public void Dispose() => Pipe.Dispose();
}

/// <summary>A progress sink that keeps every report, and can act on one (the cancellation test cancels at the first step).</summary>
internal sealed class RecordedProgress(Action<GenerationProgress>? act = null) : IProgress<GenerationProgress>
{
    public List<GenerationProgress> Reports { get; } = new();
    public void Report(GenerationProgress value)
    {
        Reports.Add(value);
        act?.Invoke(value);
    }
    public List<GenerationProgress> Of(GenerationStage stage) => Reports.Where(r => r.Stage == stage).ToList();
}

/// <summary>
/// <see cref="GenerationRunner"/>: a whole generation (encode, denoise, decode per latent, save) against diffusers'
/// reference run, and its batching, seed per prompt, cancellation and output-path rules.
/// </summary>
public sealed class GenerationRunTests(SdTinyPipeline fixture, ITestOutputHelper output) : IClassFixture<SdTinyPipeline>
{
    private DiffusionPipeline Pipe => fixture.Pipe;

    private static GenerationRequest Small(params string[] prompts) => new()
    {
        Prompts = prompts.Select((p, k) => new GenerationPrompt(p, k)).ToList(), Steps = 2, GuidanceScale = 7.5, Seed = 7, Height = 64, Width = 64,
    };

    private static double MaxAbsDiff(torch.Tensor a, torch.Tensor b)
    {
        using var d = (a.to(torch.float64) - b.to(torch.float64)).abs().max();
        return d.item<double>();
    }

    [Fact]
    public void WholeGenerationMatchesDiffusersBatchCall()
    {
        // diffusers' StableDiffusionPipeline(prompts, num_inference_steps=4, guidance_scale=7.5, generator=manual_seed(42)), 128x128, PNDM.
        var run = Fixtures.Json("sd-tiny-refs.json").EnumerateArray().Single(r => r.GetProperty("file").GetString() == "sd-tiny-ref-pndm.safetensors");
        var prompts = run.GetProperty("prompts").EnumerateArray().Select(p => p.GetString()!).ToList();
        var request = new GenerationRequest
        {
            Prompts = prompts.Select((p, k) => new GenerationPrompt(p, k)).ToList(),
            Steps = run.GetProperty("steps").GetInt32(), GuidanceScale = run.GetProperty("guidance_scale").GetDouble(), Seed = run.GetProperty("seed").GetInt64(),
            Height = run.GetProperty("height").GetInt32(), Width = run.GetProperty("width").GetInt32(),
        };
        var results = GenerationRunner.Run(Pipe, request);

        Assert.Equal([0, 1], results.Select(r => r.Index));
        Assert.All(results, r => Assert.True(r.Succeeded, r.Error?.Message));
        Assert.Equal(prompts, results.Select(r => r.Prompt));
        Assert.All(results, r => Assert.Equal(42, r.Seed));
        using var actual = torch.stack(results.Select(r => r.Image!.GetPixels()!).ToArray());
        var expected = Fixtures.Tensors("sd-tiny-ref-pndm.safetensors")["image"]; // [2,3,128,128] in [0,1]
        output.WriteLine($"image max |diff| {MaxAbsDiff(expected, actual):g3}");
        // The tolerance of the stage tests for the same image (StableDiffusion.Tests.ps1, UNetVaeTests): 2e-3 absolute.
        Fixtures.AssertClose(expected, actual, rtol: 0, atol: 2e-3, "whole-generation image");
    }

    [Fact]
    public void BatchesFollowThePromptOrderAndRowsWithValuesOfTheirOwnRunAlone()
    {
        var request = Small("a red fox", "a blue bird", "a green frog", "a grey owl") with { BatchSize = 2 };
        var prompts = request.Prompts.ToList();
        prompts[3] = prompts[3] with { Steps = 3 }; // its own steps: a run of its own
        request = request with { Prompts = prompts };
        var progress = new RecordedProgress();
        var results = GenerationRunner.Run(Pipe, request, progress);

        Assert.Equal([0, 1, 2, 3], results.Select(r => r.Index));
        Assert.Equal(request.Prompts.Select(p => p.Prompt), results.Select(r => r.Prompt));
        // Two runs: [0,1,2] in batches of 2 from one generator, then [3] alone.
        Assert.Equal([[0, 1, 2], [3]], progress.Of(GenerationStage.RunStarted).Select(r => r.Indices.ToArray()));
        var batches = progress.Of(GenerationStage.DenoiseEnded).Select(r => r.Indices.ToArray()).ToList();
        Assert.Equal([[0, 1], [2], [3]], batches);
        Assert.Equal([2, 2, 1, 1], results.Select(r => r.Image!.BatchSize));
        Assert.Equal([0, 1, 0, 0], results.Select(r => r.Image!.BatchPosition));
        Assert.Equal([2, 2, 2, 3], results.Select(r => r.Image!.Steps ?? 0));
        // Decoded one latent at a time, each before the next batch is denoised.
        var stages = progress.Reports.Where(r => r.Stage is GenerationStage.DenoiseEnded or GenerationStage.Decoded).Select(r => $"{r.Stage}:{string.Join(",", r.Indices)}");
        Assert.Equal(["DenoiseEnded:0,1", "Decoded:0", "Decoded:1", "DenoiseEnded:2", "Decoded:2", "DenoiseEnded:3", "Decoded:3"], stages);
    }

    [Fact]
    public void SeedPerPromptGivesEachPromptSeedPlusItsIndexAndTheImageOfItsOwnCall()
    {
        var request = Small("a red fox", "a blue bird") with { SeedPerPrompt = true, Seed = 100 };
        request = request with { Prompts = [request.Prompts[0], request.Prompts[1] with { Index = 5 }] };
        var results = GenerationRunner.Run(Pipe, request);

        Assert.Equal([0, 5], results.Select(r => r.Index));
        Assert.Equal([100L, 105L], results.Select(r => r.Seed));
        Assert.All(results, r => Assert.Equal(1, r.Image!.BatchSize));
        // The second image is the one a call with that prompt alone and seed 105 makes: it does not depend on the others.
        var alone = GenerationRunner.Run(Pipe, Small("a blue bird") with { Seed = 105 });
        Assert.Equal(0.0, MaxAbsDiff(alone[0].Image!.GetPixels()!, results[1].Image!.GetPixels()!));
    }

    [Fact]
    public void CancellingAfterTheFirstStepEndsTheGenerationWithNothingMadeOrWritten()
    {
        using var folder = new TempDirectory();
        using var cancel = new CancellationTokenSource();
        var progress = new RecordedProgress(p => { if (p.Stage == GenerationStage.DenoiseStep) cancel.Cancel(); });
        var results = new List<GenerationResult>();
        var request = Small("a red fox", "a blue bird") with { SeedPerPrompt = true, OutputPath = folder.File("{index}.png") };

        Assert.ThrowsAny<OperationCanceledException>(() => GenerationRunner.Run(Pipe, request, results.Add, progress, cancel.Token));

        Assert.Empty(results);
        Assert.Single(progress.Of(GenerationStage.DenoiseStep));
        Assert.Empty(progress.Of(GenerationStage.Decoded));
        Assert.Null(progress.Of(GenerationStage.DenoiseEnded).Single().Latents); // the batch did not finish
        Assert.Empty(folder.Entries());
    }

    [Fact]
    public void AnOutputTemplateThatGivesTwoImagesOneFileIsRefusedBeforeAnyWork()
    {
        using var folder = new TempDirectory();
        var progress = new RecordedProgress();
        var request = Small("a cat", "a  cat?") with { OutputPath = folder.File("{prompt}.png"), Overwrite = true };

        var e = Assert.Throws<DiffusionException>(() => GenerationRunner.Run(Pipe, request, progress));
        Assert.Equal("OutputPathCollision", e.ErrorId);
        Assert.Throws<DiffusionException>(() => GenerationRunner.Check(request));
        Assert.Empty(progress.Reports);
        Assert.Empty(folder.Entries());
    }

    [Fact]
    public void AFileThatExistsIsNotOverwrittenAndOnlyItsImageFails()
    {
        using var folder = new TempDirectory();
        var taken = folder.File("0.png");
        File.WriteAllBytes(taken, [1, 2, 3]);
        var request = Small("a red fox", "a blue bird") with { OutputPath = folder.File("{index}.png") };
        var results = GenerationRunner.Run(Pipe, request);

        Assert.Equal([0, 1], results.Select(r => r.Index));
        Assert.Equal("ImageFileExists", results[0].Error?.ErrorId);
        Assert.Equal(taken, results[0].Path);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(taken));
        Assert.True(results[1].Succeeded, results[1].Error?.Message);
        Assert.Equal(folder.File("1.png"), results[1].Path);
        Assert.Equal(["0.png", "1.png"], folder.Entries());
    }

    [Fact]
    public void ARunThatFailsOnItsOwnValuesFailsItsPromptsAndTheOthersGoOn()
    {
        var request = Small("a red fox", "a blue bird", "a green frog");
        request = request with { Prompts = [request.Prompts[0], request.Prompts[1] with { Width = 60 }, request.Prompts[2]] }; // not a multiple of 8
        var results = GenerationRunner.Run(Pipe, request);

        Assert.Equal([0, 1, 2], results.Select(r => r.Index));
        Assert.True(results[0].Succeeded && results[2].Succeeded);
        Assert.NotNull(results[1].Error);
        Assert.True(GenerationRunner.IsPromptError(results[1].Error!), results[1].Error!.ErrorId);
        Assert.Equal([1], results[1].Indices);
    }
}
