using Diffusion.Engine;
using Diffusion.Engine.Hub;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>The cache layout as huggingface_hub writes it: refs, relative snapshot links into blobs, .no_exist, locks.</summary>
public class HubCacheTests
{
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";
    private const string Sha = "5d41402abc4b2a76b9719d911017c592aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    [Fact]
    public void RefsResolveToCommits_AndACommitIsItself()
    {
        using var tmp = new TempDirectory();
        var repo = new HubCache(tmp.Path).Repo("org/model");
        Assert.Null(repo.ResolveCommit("main"));
        repo.WriteRef("main", Commit);
        repo.WriteRef("refs/pr/1", Commit);
        Assert.Equal(Commit, File.ReadAllText(tmp.File("models--org--model", "refs", "main"))); // no newline, as huggingface_hub
        Assert.Equal(Commit, repo.ResolveCommit("main"));
        Assert.Equal(Commit, repo.ResolveCommit("refs/pr/1"));
        Assert.Equal(Commit, repo.ResolveCommit(Commit));
        Assert.Equal(["main", "refs/pr/1"], repo.Refs().Keys);
        repo.WriteRef(Commit, Commit);
        Assert.False(File.Exists(tmp.File("models--org--model", "refs", Commit))); // a commit gets no ref
    }

    [Fact]
    public void SnapshotEntries_AreRelativeLinksIntoBlobs()
    {
        using var tmp = new TempDirectory();
        var repo = new HubCache(tmp.Path).Repo("org/model");
        Directory.CreateDirectory(repo.BlobsPath);
        File.WriteAllText(repo.BlobPath(Sha), "weights");
        repo.LinkSnapshot(Commit, "unet/diffusion_pytorch_model.safetensors", Sha);
        repo.LinkSnapshot(Commit, "model_index.json", Sha);
        var nested = new FileInfo(repo.PointerPath(Commit, "unet/diffusion_pytorch_model.safetensors"));
        Assert.Equal($"../../../blobs/{Sha}", nested.LinkTarget);
        Assert.Equal($"../../blobs/{Sha}", new FileInfo(repo.PointerPath(Commit, "model_index.json")).LinkTarget);
        Assert.Equal("weights", File.ReadAllText(nested.FullName));
        Assert.Equal(["model_index.json", "unet/diffusion_pytorch_model.safetensors"], repo.SnapshotFiles(Commit));
        Assert.Empty(repo.DanglingFiles(Commit));
        File.Delete(repo.BlobPath(Sha));
        Assert.Equal(["model_index.json", "unet/diffusion_pytorch_model.safetensors"], repo.DanglingFiles(Commit));
    }

    [Fact]
    public void NoExistMarkers_LocksAndIncompleteFiles_WhereHuggingfaceHubPutsThem()
    {
        using var tmp = new TempDirectory();
        var repo = new HubCache(tmp.Path).Repo("org/model");
        repo.MarkNoExist(Commit, "unet/config.json");
        Assert.True(File.Exists(tmp.File("models--org--model", ".no_exist", Commit, "unet", "config.json")));
        Assert.True(repo.IsMarkedNoExist(Commit, "unet/config.json"));
        Assert.Equal(tmp.File(".locks", "models--org--model", Sha + ".lock"), repo.LockPath(Sha));
        Assert.Equal(tmp.File("models--org--model", "blobs", Sha + ".incomplete"), repo.IncompletePath(Sha));
    }

    [Theory]
    [InlineData("../outside.json")]
    [InlineData("unet/../../x")]
    [InlineData("/etc/passwd")]
    [InlineData("unet\\config.json")]
    public void PathsThatLeaveTheSnapshot_Refused(string path)
    {
        using var tmp = new TempDirectory();
        var repo = new HubCache(tmp.Path).Repo("org/model");
        Assert.Throws<DiffusionException>(() => repo.PointerPath(Commit, path));
    }

    [Fact]
    public void TheLock_ExcludesASecondHolderUntilReleased()
    {
        using var tmp = new TempDirectory();
        var path = tmp.File(".locks", "x.lock");
        using var stop = new CancellationTokenSource();
        var first = BlobLock.Acquire(path, CancellationToken.None);
        bool waited = false;
        var second = Task.Run(() => BlobLock.Acquire(path, stop.Token, () => waited = true));
        SpinWait.SpinUntil(() => waited || second.IsCompleted, TimeSpan.FromSeconds(30));
        Assert.True(waited);
        Assert.False(second.IsCompleted);
        first.Dispose();
        using var acquired = second.GetAwaiter().GetResult(); // goes through once the first lets go
        // A waiter that is cancelled gives up.
        var third = Task.Run(() => BlobLock.Acquire(path, stop.Token));
        stop.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => third.GetAwaiter().GetResult());
    }
}
