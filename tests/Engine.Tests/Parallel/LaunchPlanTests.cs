using System.Collections;
using Diffusion.Engine.Parallel;
using Xunit;

namespace Diffusion.Engine.Tests.Parallel;

/// <summary>The worker launches of Start-DiffusionParallel / Invoke-Diffusion -NumProcesses: devices, visible GPUs, threads.</summary>
public class LaunchPlanTests
{
    private static Hashtable Env(params string[] pairs)
    {
        var h = new Hashtable();
        foreach (var p in pairs) { var kv = p.Split('=', 2); h[kv[0]] = kv[1]; }
        return h;
    }

    private static IReadOnlyList<WorkerLaunch> Plan(int? processes, string[]? devices, Hashtable? env = null, int cores = 16, string? libTorch = null) =>
        LaunchPlan.Create(processes, devices, env ?? new Hashtable(), cores, libTorch);

    private static string? Visible(WorkerLaunch launch) => launch.Environment.GetValueOrDefault("CUDA_VISIBLE_DEVICES");

    [Fact]
    public void EachProcessGetsItsRankWorldSizeAndLocalRank()
    {
        var launches = Plan(3, null);
        Assert.Equal([0, 1, 2], launches.Select(l => l.Rank));
        foreach (var l in launches)
        {
            Assert.Equal(3, l.WorldSize);
            Assert.Equal(l.Rank.ToString(), l.Environment["RANK"]);
            Assert.Equal(l.Rank.ToString(), l.Environment["LOCAL_RANK"]);
            Assert.Equal("3", l.Environment["WORLD_SIZE"]);
            Assert.Equal("3", l.Environment["LOCAL_WORLD_SIZE"]);
        }
    }

    [Fact]
    public void WithoutDevicesEachWorkerPicksItsOwnAndSeesEveryGpu()
    {
        var launches = Plan(2, null);
        Assert.All(launches, l => Assert.Null(l.Device));
        Assert.All(launches, l => Assert.Null(Visible(l)));
    }

    [Fact]
    public void OneDeviceServesEveryProcess()
    {
        var launches = Plan(3, ["cuda:1"]);
        Assert.Equal(["cuda:1", "cuda:1", "cuda:1"], launches.Select(l => l.Device));
        Assert.Equal(["1", "1", "1"], launches.Select(Visible));
    }

    [Fact]
    public void DevicesAloneMeanOneProcessEach()
    {
        var launches = Plan(null, ["cuda:0", "cuda:1"]);
        Assert.Equal(2, launches.Count);
        Assert.Equal(["cuda:0", "cuda:1"], launches.Select(l => l.Device));
        Assert.Equal(["0", "1"], launches.Select(Visible));
        Assert.All(launches, l => Assert.Equal(2, l.WorldSize));
    }

    [Fact]
    public void MoreProcessesThanDevicesTakeThemRoundRobin()
    {
        var launches = Plan(5, ["cuda:0", "cuda:1"]);
        Assert.Equal(["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"], launches.Select(l => l.Device));
        Assert.Equal(["0", "1", "0", "1", "0"], launches.Select(Visible));
    }

    [Fact]
    public void FewerProcessesThanDevicesUseTheFirstOnes()
    {
        var launches = Plan(2, ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]);
        Assert.Equal(["cuda:0", "cuda:1"], launches.Select(l => l.Device));
    }

    [Fact]
    public void ACpuWorkerSeesNoGpu()
    {
        var launches = Plan(null, ["cpu", "cuda:0"]);
        Assert.Equal("cpu", launches[0].Device);
        Assert.Equal("", Visible(launches[0])); // set and empty: CUDA hides every device
        Assert.Equal("0", Visible(launches[1]));
    }

    [Fact]
    public void CudaIndicesMapThroughThisSessionsVisibleDevices()
    {
        var launches = Plan(null, ["cuda:0", "cuda:1"], Env("CUDA_VISIBLE_DEVICES=3, 5"));
        Assert.Equal(["3", "5"], launches.Select(Visible)); // cuda:1 here is physical GPU 5
        Assert.Equal(["cuda:0", "cuda:1"], launches.Select(l => l.Device));
    }

    [Fact]
    public void AnEmptyVisibleDevicesVariableIsNotAMapping()
    {
        Assert.Equal(["2"], Plan(null, ["cuda:2"], Env("CUDA_VISIBLE_DEVICES=")).Select(Visible));
    }

    [Fact]
    public void ADeviceBeyondTheVisibleOnesIsRefused()
    {
        var e = Assert.Throws<DiffusionException>(() => Plan(null, ["cuda:0", "cuda:2"], Env("CUDA_VISIBLE_DEVICES=3,5")));
        Assert.Equal("ParallelDeviceNotVisible", e.ErrorId);
        Assert.Contains("cuda:2", e.Message);
        Assert.Contains("only 2 GPU(s)", e.Message);
        Assert.Contains("CUDA_VISIBLE_DEVICES=3,5", e.Message);
    }

    [Theory]
    [InlineData(16, 1, "16")]
    [InlineData(16, 2, "8")]
    [InlineData(16, 3, "5")] // rounded down: 3 x 5 threads on 16 cores, none oversubscribed
    [InlineData(16, 4, "4")]
    [InlineData(2, 4, "1")] // more processes than cores: at least one thread each
    [InlineData(1, 1, "1")]
    public void ThreadsShareTheCoresOut(int cores, int processes, string threads)
    {
        Assert.All(Plan(processes, null, cores: cores), l => Assert.Equal(threads, l.Environment["OMP_NUM_THREADS"]));
    }

    [Fact]
    public void AnOmpNumThreadsSetHereIsLeftToTheWorkers()
    {
        // The workers inherit this session's OMP_NUM_THREADS; the plan adds none of its own.
        Assert.All(Plan(2, null, Env("OMP_NUM_THREADS=3")), l => Assert.False(l.Environment.ContainsKey("OMP_NUM_THREADS")));
        Assert.All(Plan(2, null, Env("OMP_NUM_THREADS=")), l => Assert.Equal("8", l.Environment["OMP_NUM_THREADS"]));
    }

    [Fact]
    public void AnExplicitLibTorchFolderIsPassedOnUnlessTheVariableIsSet()
    {
        const string variable = TorchBackend.LibTorchEnvironmentVariable;
        Assert.All(Plan(2, null, libTorch: "/opt/libtorch/lib"), l => Assert.Equal("/opt/libtorch/lib", l.Environment[variable]));
        Assert.All(Plan(2, null, Env($"{variable}=/other/lib"), libTorch: "/opt/libtorch/lib"), l => Assert.False(l.Environment.ContainsKey(variable)));
        Assert.All(Plan(2, null), l => Assert.False(l.Environment.ContainsKey(variable)));
    }

    [Theory]
    [InlineData("cpu", "cpu")]
    [InlineData(" CPU ", "cpu")]
    [InlineData("cuda", "cuda:0")]
    [InlineData("CUDA:3", "cuda:3")]
    [InlineData("cuda:07", "cuda:7")]
    public void DevicesAreNormalized(string given, string normalized)
    {
        Assert.Equal(normalized, LaunchPlan.Normalize(given));
        Assert.Equal(normalized, Plan(null, [given]).Single().Device);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("mps")]
    [InlineData("")]
    public void OtherDevicesAreRefused(string device)
    {
        var e = Assert.Throws<DiffusionException>(() => Plan(2, [device]));
        Assert.Equal("ParallelDeviceInvalid", e.ErrorId);
        Assert.Equal("Device", e.Target);
    }

    [Fact]
    public void NoProcessCountAndNoDevicesIsRefused()
    {
        var e = Assert.Throws<DiffusionException>(() => Plan(null, null));
        Assert.Equal("ParallelProcessCountMissing", e.ErrorId);
        Assert.Equal(DiffusionErrorKind.InvalidArgument, e.Kind);
        Assert.Equal("ParallelProcessCountMissing", Assert.Throws<DiffusionException>(() => Plan(null, [])).ErrorId);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-2)]
    public void FewerThanOneProcessIsRefused(int processes)
    {
        var e = Assert.Throws<DiffusionException>(() => Plan(processes, ["cuda:0"]));
        Assert.Equal("ParallelProcessCountInvalid", e.ErrorId);
        Assert.Equal("NumProcesses", e.Target);
    }
}
