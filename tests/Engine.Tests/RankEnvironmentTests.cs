using System.Collections;
using Diffusion.Engine.Parallel;
using Xunit;

namespace Diffusion.Engine.Tests;

public class RankEnvironmentTests
{
    private static Hashtable Env(params string[] pairs)
    {
        var h = new Hashtable();
        foreach (var p in pairs) { var kv = p.Split('=', 2); h[kv[0]] = kv[1]; }
        return h;
    }

    [Theory]
    [InlineData("torchrun/accelerate", "RANK=3", "WORLD_SIZE=8", "LOCAL_RANK=1")]
    [InlineData("Slurm", "SLURM_PROCID=3", "SLURM_NTASKS=8", "SLURM_LOCALID=1")]
    [InlineData("Open MPI", "OMPI_COMM_WORLD_RANK=3", "OMPI_COMM_WORLD_SIZE=8", "OMPI_COMM_WORLD_LOCAL_RANK=1")]
    [InlineData("MPICH/Intel MPI (PMI)", "PMI_RANK=3", "PMI_SIZE=8", "MPI_LOCALRANKID=1")]
    public void ReadsEachLaunchersVariables(string launcher, string rank, string size, string local)
    {
        var info = RankEnvironment.Detect(Env(rank, size, local, "UNRELATED=x"));
        Assert.Equal((3, 8, 1, launcher), (info.ProcessRank, info.WorldSize, info.LocalRank, info.Launcher));
        Assert.Equal($"{rank}, {size}, {local}", info.Source);
    }

    [Fact]
    public void NothingSetIsRankZeroOfOne()
    {
        var info = RankEnvironment.Detect(new Hashtable());
        Assert.Equal((0, 1, 0, "none"), (info.ProcessRank, info.WorldSize, info.LocalRank, info.Launcher));
    }

    [Fact]
    public void TorchrunComesBeforeSlurmBeforeOpenMpiBeforePmi()
    {
        var all = Env("PMI_RANK=4", "PMI_SIZE=5", "OMPI_COMM_WORLD_RANK=3", "OMPI_COMM_WORLD_SIZE=5",
            "SLURM_PROCID=2", "SLURM_NTASKS=5", "RANK=1", "WORLD_SIZE=5");
        Assert.Equal(1, RankEnvironment.Detect(all).ProcessRank);
        all.Remove("RANK"); all.Remove("WORLD_SIZE");
        Assert.Equal(2, RankEnvironment.Detect(all).ProcessRank);
        all.Remove("SLURM_PROCID"); all.Remove("SLURM_NTASKS");
        Assert.Equal(3, RankEnvironment.Detect(all).ProcessRank);
        all.Remove("OMPI_COMM_WORLD_RANK"); all.Remove("OMPI_COMM_WORLD_SIZE");
        Assert.Equal(4, RankEnvironment.Detect(all).ProcessRank);
    }

    [Fact]
    public void ParametersWinOverVariables()
    {
        var env = Env("RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1");
        var both = RankEnvironment.Detect(env, rank: 2, worldSize: 3);
        Assert.Equal((2, 3, "parameters"), (both.ProcessRank, both.WorldSize, both.Launcher));
        var one = RankEnvironment.Detect(env, rank: 0);
        Assert.Equal((0, 2, 1, "parameters and torchrun/accelerate"), (one.ProcessRank, one.WorldSize, one.LocalRank, one.Launcher));
        var alone = RankEnvironment.Detect(new Hashtable(), worldSize: 4);
        Assert.Equal((0, 4), (alone.ProcessRank, alone.WorldSize));
    }

    [Fact]
    public void MissingLocalRankIsZero()
    {
        var info = RankEnvironment.Detect(Env("PMI_RANK=2", "PMI_SIZE=4"));
        Assert.Equal(0, info.LocalRank);
        Assert.Contains("MPI_LOCALRANKID not set", info.Source);
    }

    [Theory]
    [InlineData("RankVariableInvalid", "RANK", "RANK=abc", "WORLD_SIZE=2")]
    [InlineData("RankVariableInvalid", "SLURM_NTASKS", "SLURM_PROCID=0", "SLURM_NTASKS=two")]
    [InlineData("RankVariableInvalid", "LOCAL_RANK", "RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=-1")]
    [InlineData("RankVariableInvalid", "WORLD_SIZE", "RANK=0", "WORLD_SIZE=0")]
    [InlineData("RankOutOfRange", "RANK", "RANK=4", "WORLD_SIZE=4")]
    [InlineData("RankOutOfRange", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_RANK=9", "OMPI_COMM_WORLD_SIZE=2")]
    [InlineData("RankVariableMissing", "WORLD_SIZE", "RANK=1")]
    [InlineData("RankVariableMissing", "PMI_RANK", "PMI_SIZE=3")]
    public void BadVariablesAreNamed(string errorId, string variable, params string[] pairs)
    {
        var e = Assert.Throws<DiffusionException>(() => RankEnvironment.Detect(Env(pairs)));
        Assert.Equal(errorId, e.ErrorId);
        Assert.Equal(variable, e.Target);
        Assert.Contains(variable, e.Message);
    }

    [Fact]
    public void BadParametersAreNamed()
    {
        var e = Assert.Throws<DiffusionException>(() => RankEnvironment.Detect(new Hashtable(), rank: 3, worldSize: 3));
        Assert.Equal(("RankOutOfRange", "ProcessIndex"), (e.ErrorId, e.Target));
    }

    [Theory]
    [InlineData(1, 0, "cpu")]
    [InlineData(1, 4, "cuda:1")]
    [InlineData(5, 4, "cuda:1")]
    [InlineData(3, 1, "cuda:0")]
    public void DeviceIsCudaLocalRankWhenThereAreGpus(int localRank, int gpus, string device)
    {
        var info = RankEnvironment.Detect(Env("RANK=0", "WORLD_SIZE=8", $"LOCAL_RANK={localRank}"));
        Assert.Equal(device, info.DefaultDevice(gpus));
        Assert.Equal(device, info.WithDevice(gpus).Device);
    }
}
