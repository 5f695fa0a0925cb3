namespace Diffusion.Engine.Hub;

/// <summary>One cached revision: a ref (main, a tag) or a bare commit, and its snapshot.</summary>
public sealed record CachedRevision(string Name, string Commit, string SnapshotPath, int Files);

/// <summary>A repo in the cache as `hf cache scan` reports it (huggingface_hub's _cache_manager): blobs' size and times.</summary>
public sealed class CachedModel
{
    public string RepoId { get; init; } = "";
    /// <summary>ref -> commit ("main" = "abc…"), then commits with a snapshot but no ref.</summary>
    public IReadOnlyList<CachedRevision> Revisions { get; init; } = [];
    public long SizeOnDisk { get; init; }
    public int Blobs { get; init; }
    public DateTime? LastModified { get; init; }
    public DateTime? LastAccessed { get; init; }
    /// <summary>The snapshot folder of main (else of the newest snapshot): what New-DiffusionPipeline loads.</summary>
    public string? Path { get; init; }
    /// <summary>The repo's folder in the cache (models--org--name).</summary>
    public string CachePath { get; init; } = "";

    public override string ToString() => RepoId;

    public static CachedModel Scan(RepoCache repo)
    {
        var refs = repo.Refs();
        var revisions = new List<CachedRevision>();
        foreach (var (name, commit) in refs)
            revisions.Add(new CachedRevision(name, commit, repo.SnapshotPath(commit), repo.SnapshotFiles(commit).Count()));
        foreach (var commit in repo.SnapshotCommits().Where(c => !refs.Values.Contains(c)))
            revisions.Add(new CachedRevision(commit, commit, repo.SnapshotPath(commit), repo.SnapshotFiles(commit).Count()));
        var blobs = Directory.Exists(repo.BlobsPath)
            ? new DirectoryInfo(repo.BlobsPath).EnumerateFiles().Where(f => !f.Name.EndsWith(".incomplete", StringComparison.Ordinal)).ToList()
            : [];
        var main = revisions.FirstOrDefault(r => r.Name == HubCache.DefaultRevision && Directory.Exists(r.SnapshotPath))
            ?? revisions.Where(r => Directory.Exists(r.SnapshotPath)).OrderByDescending(r => Directory.GetLastWriteTimeUtc(r.SnapshotPath)).FirstOrDefault();
        return new CachedModel
        {
            RepoId = repo.RepoId,
            Revisions = revisions,
            SizeOnDisk = blobs.Sum(b => b.Length),
            Blobs = blobs.Count,
            LastModified = blobs.Count > 0 ? blobs.Max(b => b.LastWriteTimeUtc) : null,
            LastAccessed = blobs.Count > 0 ? blobs.Max(b => b.LastAccessTimeUtc) : null,
            Path = main?.SnapshotPath,
            CachePath = repo.Path,
        };
    }

    /// <summary>A sentence on what the cache holds for a repo (for errors that send the user to the cache).</summary>
    public static string Describe(RepoCache repo)
    {
        if (!repo.Exists)
        {
            var others = repo.Cache.Repos().Select(r => r.RepoId).Take(10).ToList();
            return $"The cache '{repo.Cache.Root}' holds nothing for '{repo.RepoId}'" +
                   (others.Count > 0 ? $" (it holds: {string.Join(", ", others)})." : " (it is empty).");
        }
        var m = Scan(repo);
        var revs = m.Revisions.Count == 0 ? "no snapshot" : string.Join("; ", m.Revisions.Select(r =>
            r.Name == r.Commit ? $"commit {r.Commit} ({r.Files} files)" : $"{r.Name} -> {r.Commit} ({r.Files} files)"));
        return $"The cache '{repo.Cache.Root}' holds for '{repo.RepoId}': {revs}.";
    }
}

/// <summary>What Remove-DiffusionModel deletes: snapshot folders, refs, and the blobs no remaining snapshot links to.</summary>
public sealed class CacheRemoval
{
    public string RepoId { get; init; } = "";
    public IReadOnlyList<string> Commits { get; init; } = [];
    public IReadOnlyList<string> Refs { get; init; } = [];
    public IReadOnlyList<string> BlobPaths { get; init; } = [];
    public long BytesFreed { get; init; }
    /// <summary>Nothing of the repo is left: its whole folder (and its locks) go.</summary>
    public bool WholeRepo { get; init; }
    private RepoCache Repo { get; init; } = null!;

    public override string ToString() => WholeRepo
        ? $"the whole repo '{RepoId}' ({BytesFreed} bytes)"
        : $"revision {string.Join(", ", Refs.Count > 0 ? Refs : Commits)} of '{RepoId}': {Commits.Count} snapshot(s), {BlobPaths.Count} blob(s), {BytesFreed} bytes";

    /// <summary>Plans the removal of one revision (ref name or commit), or of the whole repo when revision is null.</summary>
    public static CacheRemoval Plan(RepoCache repo, string? revision)
    {
        if (!repo.Exists)
            throw new DiffusionException("HubModelNotCached", DiffusionErrorKind.ObjectNotFound, CachedModel.Describe(repo), repo.RepoId);
        var blobs = Directory.Exists(repo.BlobsPath) ? Directory.GetFiles(repo.BlobsPath) : [];
        if (revision is null)
            return new CacheRemoval
            {
                RepoId = repo.RepoId, Repo = repo, WholeRepo = true, Commits = repo.SnapshotCommits().ToList(), Refs = repo.Refs().Keys.ToList(),
                BlobPaths = blobs, BytesFreed = blobs.Sum(b => new FileInfo(b).Length),
            };
        var commit = repo.ResolveCommit(revision);
        if (commit is null || !Directory.Exists(repo.SnapshotPath(commit)))
            throw new DiffusionException("HubRevisionNotCached", DiffusionErrorKind.ObjectNotFound,
                $"-Revision '{revision}' is not in the cache. {CachedModel.Describe(repo)}", "Revision");
        var others = repo.SnapshotCommits().Where(c => c != commit).ToList();
        var kept = others.SelectMany(c => repo.SnapshotFiles(c).Select(f => LinkedBlob(repo, c, f))).Where(b => b is not null).ToHashSet(StringComparer.Ordinal);
        var freed = repo.SnapshotFiles(commit).Select(f => LinkedBlob(repo, commit, f)).Where(b => b is not null && !kept.Contains(b))
            .Distinct().Select(b => repo.BlobPath(b!)).Where(File.Exists).ToList();
        var refs = repo.Refs().Where(r => r.Value == commit).Select(r => r.Key).ToList();
        if (others.Count == 0)
            return new CacheRemoval
            {
                RepoId = repo.RepoId, Repo = repo, WholeRepo = true, Commits = [commit], Refs = repo.Refs().Keys.ToList(),
                BlobPaths = blobs, BytesFreed = blobs.Sum(b => new FileInfo(b).Length),
            };
        return new CacheRemoval
        {
            RepoId = repo.RepoId, Repo = repo, Commits = [commit], Refs = refs, BlobPaths = freed,
            BytesFreed = freed.Sum(b => new FileInfo(b).Length),
        };
    }

    /// <summary>The blob (etag) a snapshot entry links to, or null for a copy.</summary>
    private static string? LinkedBlob(RepoCache repo, string commit, string file)
    {
        var target = new FileInfo(repo.PointerPath(commit, file)).LinkTarget;
        return target is null ? null : System.IO.Path.GetFileName(target);
    }

    public void Execute()
    {
        if (WholeRepo)
        {
            DeleteDirectory(Repo.Path);
            DeleteDirectory(Repo.LocksPath);
            return;
        }
        foreach (var r in Refs) File.Delete(Repo.RefFile(r));
        foreach (var c in Commits)
        {
            DeleteDirectory(Repo.SnapshotPath(c));
            DeleteDirectory(System.IO.Path.Combine(Repo.Path, ".no_exist", c));
        }
        foreach (var b in BlobPaths) File.Delete(b);
    }

    /// <summary>Deletes a folder of the cache (links are removed, never followed).</summary>
    private void DeleteDirectory(string dir)
    {
        var root = Repo.Cache.Root.TrimEnd(System.IO.Path.DirectorySeparatorChar) + System.IO.Path.DirectorySeparatorChar;
        if (!System.IO.Path.GetFullPath(dir).StartsWith(root, StringComparison.Ordinal))
            throw new InvalidOperationException($"'{dir}' is not inside the cache '{Repo.Cache.Root}'.");
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }
}
