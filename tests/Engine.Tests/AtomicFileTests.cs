using Diffusion.Engine.Imaging;
using Diffusion.Engine.IO;
using Diffusion.Engine.Pipelines;
using TorchSharp;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>Saves without overwrite under a race: of several writers of one path exactly one wins, the others are told it exists.</summary>
public class AtomicFileTests
{
    private const int Paths = 40, WritersPerPath = 6;

    /// <summary>Runs <paramref name="save"/>(path, writer) from <see cref="WritersPerPath"/> threads per path, released together; returns the outcomes per path.</summary>
    private static List<(int Path, int Writer, Exception? Error)> Race(TempDirectory dir, Action<string, int> save, string extension)
    {
        var outcomes = new List<(int, int, Exception?)>();
        for (int p = 0; p < Paths; p++)
        {
            var path = dir.File($"{p:000}{extension}");
            using var start = new Barrier(WritersPerPath);
            var threads = Enumerable.Range(0, WritersPerPath).Select(w => new Thread(() =>
            {
                Exception? error = null;
                start.SignalAndWait();
                try { save(path, w); } catch (Exception e) { error = e; }
                lock (outcomes) outcomes.Add((p, w, error));
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
        }
        return outcomes;
    }

    private static void AssertOneWinnerPerPath(TempDirectory dir, List<(int Path, int Writer, Exception? Error)> outcomes, string errorId, string extension)
    {
        foreach (var group in outcomes.GroupBy(o => o.Path))
        {
            var winners = group.Where(o => o.Error is null).ToList();
            Assert.True(winners.Count == 1, $"path {group.Key}: {winners.Count} of {WritersPerPath} writers reported success");
            foreach (var loser in group.Where(o => o.Error is not null))
            {
                var e = Assert.IsType<DiffusionException>(loser.Error);
                Assert.Equal(errorId, e.ErrorId);
                Assert.Contains("already exists", e.Message);
            }
        }
        Assert.Equal(Enumerable.Range(0, Paths).Select(p => $"{p:000}{extension}"), dir.Entries()); // no temp file left
    }

    [Fact]
    public void RacingPngSavesWithoutForce_ExactlyOneWinsPerPath()
    {
        using var dir = new TempDirectory();
        var images = Enumerable.Range(0, WritersPerPath).Select(w => new DiffusionImage(8, 8, Enumerable.Repeat((byte)(w * 40), 8 * 8 * 3).ToArray())).ToArray();
        var outcomes = Race(dir, (path, w) => images[w].SavePng(path, overwrite: false), ".png");
        AssertOneWinnerPerPath(dir, outcomes, "ImageFileExists", ".png");
        foreach (var group in outcomes.GroupBy(o => o.Path)) // the file holds the winner's image, complete
        {
            var winner = group.Single(o => o.Error is null).Writer;
            Assert.Equal(images[winner].EncodePng(), File.ReadAllBytes(dir.File($"{group.Key:000}.png")));
        }
    }

    [Fact]
    public void RacingTensorSavesWithoutOverwrite_ExactlyOneWinsPerPath()
    {
        using var dir = new TempDirectory();
        var outcomes = Race(dir, (path, w) =>
        {
            using var t = torch.full(16, (float)w);
            SafeTensorsWriter.Save(path, new Dictionary<string, torch.Tensor> { ["x"] = t }, overwrite: false);
        }, ".safetensors");
        AssertOneWinnerPerPath(dir, outcomes, "TensorFileExists", ".safetensors");
        foreach (var group in outcomes.GroupBy(o => o.Path))
        {
            var winner = group.Single(o => o.Error is null).Writer;
            using var f = SafeTensorsFile.Open(dir.File($"{group.Key:000}.safetensors"));
            using var x = f.Load("x");
            Assert.Equal((float)winner, x[15].item<float>());
        }
    }

    [Fact]
    public void RacingTensorExportsWithoutForce_ExactlyOneWinsPerPath()
    {
        // Export-DiffusionTensor's engine call: the existence check and the write must not let two exporters both win.
        using var dir = new TempDirectory();
        var outcomes = Race(dir, (path, w) =>
        {
            using var latents = new Pipelines.DiffusionLatent(torch.full(new long[] { 1, 4, 2, 2 }, (float)w)) { Seed = w };
            TensorExchange.Export(path, [latents], overwrite: false);
        }, ".safetensors");
        AssertOneWinnerPerPath(dir, outcomes, "TensorFileExists", ".safetensors");
    }

    [Fact]
    public void SaveWithOverwrite_StillReplaces()
    {
        using var dir = new TempDirectory();
        var path = dir.File("a.png");
        new DiffusionImage(1, 1, [1, 2, 3]).SavePng(path, overwrite: false);
        var second = new DiffusionImage(1, 1, [4, 5, 6]);
        var e = Assert.Throws<DiffusionException>(() => second.SavePng(path, overwrite: false));
        Assert.Equal("ImageFileExists", e.ErrorId);
        second.SavePng(path, overwrite: true);
        Assert.Equal(second.EncodePng(), File.ReadAllBytes(path));
        Assert.Equal(["a.png"], dir.Entries());
    }
}
