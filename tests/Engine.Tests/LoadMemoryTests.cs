using Diffusion.Bench;
using Diffusion.Engine.IO;
using Diffusion.Engine.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Diffusion.Engine.Tests;

/// <summary>
/// Host memory while building and loading text encoders: the peak resident size (VmHWM, reset through
/// /proc/self/clear_refs as ActivationProbe does; Linux, as CI runs) may grow by the loaded weights and little more.
/// TorchSharp's nn.Embedding used to initialize its table on the CPU first, so a meta build of T5-XXL cost 0.5 GB.
/// </summary>
/// <remarks>Alone (no other test runs meanwhile): the peak resident size is the whole process's.</remarks>
[Collection(nameof(MemoryMeasurementCollection))]
public sealed class LoadMemoryTests
{
    private const long Slack = 48L << 20; // allocator and read buffers

    private const string T5Config = """
        {"vocab_size": 32128, "d_model": 1024, "d_kv": 64, "d_ff": 2816, "num_layers": 2, "num_heads": 16,
         "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu"}
        """;

    [Fact]
    public void AT5XxlSizedEncoderBuildsOnMetaWithoutHostMemory()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("config.json"), T5Config.Replace("\"d_model\": 1024", "\"d_model\": 4096").Replace("\"num_layers\": 2", "\"num_layers\": 1"));
        var config = Models.T5Config.Load(dir.File("config.json"));
        long grew = PeakGrowth(() => { using var model = Construction.OnMeta(() => new T5EncoderModel(config)); });
        Assert.True(grew < Slack, $"building on meta raised the peak resident size by {grew >> 20} MiB (the 32128x4096 table alone is 502 MiB)");
    }

    [Fact]
    public void LoadingAT5EncoderPeaksAtItsWeights()
    {
        using var dir = new TempDirectory();
        HeaderOnlyCheckpoint.WriteComponent(dir.Path, "T5EncoderModel", T5Config, "model.safetensors", "F32");
        var config = Models.T5Config.Load(dir.File("config.json"));
        long weights = new FileInfo(dir.File("model.safetensors")).Length;
        T5EncoderModel? loaded = null;
        long grew = PeakGrowth(() =>
        {
            var model = Construction.OnMeta(() => new T5EncoderModel(config));
            WeightLoader.LoadInto(model, dir.Path, torch.CPU, ScalarType.Float32);
            loaded = model;
        });
        using (loaded)
        {
            Assert.False(MetaModules.HasMetaTensors(loaded!));
            Assert.True(grew <= weights + Slack,
                $"loading {weights >> 20} MiB of weights raised the peak resident size by {grew >> 20} MiB (allowed: the weights + {Slack >> 20} MiB)");
        }
    }

    private static long PeakGrowth(Action action)
    {
        TorchBackend.EnsureLoaded();
        Assert.True(OperatingSystem.IsLinux() && File.Exists("/proc/self/clear_refs"), "these measurements read /proc/self (Linux)");
        GC.Collect();
        GC.WaitForPendingFinalizers();
        ActivationProbe.MallocTrim(0);
        File.WriteAllText("/proc/self/clear_refs", "5"); // VmHWM := VmRSS
        long rest = ActivationProbe.Status("VmRSS");
        action();
        return ActivationProbe.Status("VmHWM") - rest;
    }
}

[CollectionDefinition(nameof(MemoryMeasurementCollection), DisableParallelization = true)]
public sealed class MemoryMeasurementCollection;
