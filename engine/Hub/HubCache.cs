using System.Text.RegularExpressions;

namespace Diffusion.Engine.Hub;

/// <summary>
/// The Hugging Face Hub cache as huggingface_hub lays it out (file_download.py, constants.py), so that what one writes
/// the other reads:
/// <code>
/// {root}/models--org--name/refs/main                      the commit the branch pointed at, as text
///                         /blobs/{etag}                   the files' bytes, named by etag (sha256 for LFS files)
///                         /snapshots/{commit}/{path}      relative symlinks to ../../blobs/{etag} (copies where links fail)
///                         /.no_exist/{commit}/{path}      empty markers: the file does not exist at that commit
/// {root}/.locks/models--org--name/{etag}.lock             one lock per blob
/// </code>
/// root: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
/// </summary>
public sealed class HubCache
{
    public const string DefaultRevision = "main";
    private static readonly Regex CommitHash = new("^[0-9a-f]{40}$", RegexOptions.CultureInvariant);
    private static readonly Regex Sha256 = new("^[0-9a-f]{64}$", RegexOptions.CultureInvariant);

    public string Root { get; }

    public HubCache(string root) => Root = System.IO.Path.GetFullPath(root);

    public static HubCache FromEnvironment() => new(DefaultRoot());

    /// <summary>huggingface_hub's HF_HUB_CACHE default chain.</summary>
    public static string DefaultRoot()
    {
        var hub = Env("HF_HUB_CACHE") ?? Env("HUGGINGFACE_HUB_CACHE");
        return hub is not null ? ExpandUser(hub) : System.IO.Path.Combine(HfHome(), "hub");
    }

    /// <summary>HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.</summary>
    public static string HfHome()
    {
        var home = Env("HF_HOME");
        if (home is not null) return ExpandUser(home);
        var xdg = Env("XDG_CACHE_HOME") ?? System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return System.IO.Path.Combine(ExpandUser(xdg), "huggingface");
    }

    internal static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;

    private static string ExpandUser(string path) =>
        path == "~" || path.StartsWith("~/", StringComparison.Ordinal)
            ? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) + path[1..]
            : path;

    public static bool IsCommitHash(string revision) => CommitHash.IsMatch(revision);

    public static bool IsSha256(string etag) => Sha256.IsMatch(etag);

    /// <summary>HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to 1/true/yes/on: only the cache, no network.</summary>
    public static bool IsOffline =>
        (Env("HF_HUB_OFFLINE") ?? Env("TRANSFORMERS_OFFLINE"))?.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    /// <summary>models--org--name, huggingface_hub's repo_folder_name for a model repo.</summary>
    public static string FolderName(string repoId) => "models--" + repoId.Replace("/", "--", StringComparison.Ordinal);

    /// <summary>The repo id of a models--org--name folder, or null for any other folder.</summary>
    public static string? RepoIdOf(string folderName) =>
        folderName.StartsWith("models--", StringComparison.Ordinal) ? folderName["models--".Length..].Replace("--", "/", StringComparison.Ordinal) : null;

    public RepoCache Repo(string repoId) => new(this, RepoIds.Require(repoId));

    /// <summary>The repos the cache holds (models--* folders), by repo id.</summary>
    public IEnumerable<RepoCache> Repos()
    {
        if (!Directory.Exists(Root)) yield break;
        foreach (var dir in Directory.EnumerateDirectories(Root, "models--*").OrderBy(d => d, StringComparer.Ordinal))
            if (RepoIdOf(System.IO.Path.GetFileName(dir)) is { } id && RepoIds.IsValid(id))
                yield return new RepoCache(this, id);
    }
}

/// <summary>One repo's folder in the cache: refs, blobs, snapshots, .no_exist markers, and its locks.</summary>
public sealed class RepoCache
{
    public HubCache Cache { get; }
    public string RepoId { get; }
    public string Path { get; }
    public string BlobsPath => System.IO.Path.Combine(Path, "blobs");
    public string SnapshotsPath => System.IO.Path.Combine(Path, "snapshots");
    public string RefsPath => System.IO.Path.Combine(Path, "refs");
    public string LocksPath => System.IO.Path.Combine(Cache.Root, ".locks", HubCache.FolderName(RepoId));

    internal RepoCache(HubCache cache, string repoId)
    {
        Cache = cache; RepoId = repoId;
        Path = System.IO.Path.Combine(cache.Root, HubCache.FolderName(repoId));
    }

    public bool Exists => Directory.Exists(Path);

    /// <summary>The commit a revision names: itself for a full commit hash, else what refs/{revision} holds (null when not cached).</summary>
    public string? ResolveCommit(string revision)
    {
        if (HubCache.IsCommitHash(revision)) return revision;
        var file = RefFile(revision);
        if (!File.Exists(file)) return null;
        var commit = File.ReadAllText(file).Trim();
        return HubCache.IsCommitHash(commit) ? commit : null;
    }

    /// <summary>Records refs/{revision} = commit, atomically (temp file + rename) as huggingface_hub does; nothing for a commit hash.</summary>
    public void WriteRef(string revision, string commit)
    {
        if (revision == commit) return;
        var file = RefFile(revision);
        if (File.Exists(file) && File.ReadAllText(file) == commit) return;
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(file)!);
        var tmp = $"{file}.{Guid.NewGuid().ToString("N")[..8]}.tmp";
        File.WriteAllText(tmp, commit);
        File.Move(tmp, file, overwrite: true);
    }

    /// <summary>refs/{revision}; a revision such as refs/pr/1 is a nested path, as in huggingface_hub.</summary>
    public string RefFile(string revision) => Inside(RefsPath, RepoIds.RequireRevision(revision));

    /// <summary>Every ref file: ref name -> commit.</summary>
    public IReadOnlyDictionary<string, string> Refs()
    {
        var refs = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (!Directory.Exists(RefsPath)) return refs;
        foreach (var f in Directory.EnumerateFiles(RefsPath, "*", SearchOption.AllDirectories))
        {
            if (f.EndsWith(".tmp", StringComparison.Ordinal)) continue;
            var name = System.IO.Path.GetRelativePath(RefsPath, f).Replace('\\', '/');
            refs[name] = File.ReadAllText(f).Trim();
        }
        return refs;
    }

    public string SnapshotPath(string commit) => Inside(SnapshotsPath, commit);

    /// <summary>snapshots/{commit}/{path}, refused if the path would leave the snapshot.</summary>
    public string PointerPath(string commit, string repoPath) => Inside(SnapshotPath(commit), RepoIds.RequireFilePath(repoPath));

    public string BlobPath(string etag) => Inside(BlobsPath, RequireEtag(etag));

    public string IncompletePath(string etag) => BlobPath(etag) + ".incomplete";

    public string LockPath(string etag) => Inside(LocksPath, RequireEtag(etag) + ".lock");

    public string NoExistPath(string commit, string repoPath) => Inside(Inside(System.IO.Path.Combine(Path, ".no_exist"), commit), RepoIds.RequireFilePath(repoPath));

    /// <summary>Marks a file absent at a commit (huggingface_hub's .no_exist), so offline lookups know not to look for it.</summary>
    public void MarkNoExist(string commit, string repoPath)
    {
        var marker = NoExistPath(commit, repoPath);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(marker)!);
        if (!File.Exists(marker)) File.WriteAllBytes(marker, []);
    }

    public bool IsMarkedNoExist(string commit, string repoPath) => File.Exists(NoExistPath(commit, repoPath));

    /// <summary>
    /// Makes snapshots/{commit}/{path} point at the blob: a relative symlink (os.path.relpath from the link's folder,
    /// e.g. ../../../blobs/{etag} for unet/config.json), or a copy of the blob where links cannot be made.
    /// </summary>
    public void LinkSnapshot(string commit, string repoPath, string etag)
    {
        var pointer = PointerPath(commit, repoPath);
        var blob = BlobPath(etag);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(pointer)!);
        var relative = System.IO.Path.GetRelativePath(System.IO.Path.GetDirectoryName(pointer)!, blob);
        var existing = new FileInfo(pointer);
        if (existing.LinkTarget is { } target && target == relative) return;
        if (existing.Exists || existing.LinkTarget is not null) existing.Delete();
        try
        {
            File.CreateSymbolicLink(pointer, relative);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            // Windows without developer mode: huggingface_hub copies the blob into the snapshot.
            var tmp = pointer + ".copy-" + Guid.NewGuid().ToString("N")[..8];
            File.Copy(blob, tmp);
            File.Move(tmp, pointer, overwrite: true);
        }
    }

    /// <summary>The commits with a snapshot folder.</summary>
    public IEnumerable<string> SnapshotCommits() =>
        Directory.Exists(SnapshotsPath)
            ? Directory.EnumerateDirectories(SnapshotsPath).Select(System.IO.Path.GetFileName).Where(n => n is not null).Cast<string>().OrderBy(n => n, StringComparer.Ordinal)
            : [];

    /// <summary>The files of a snapshot (repo paths with '/'), links or copies.</summary>
    public IEnumerable<string> SnapshotFiles(string commit)
    {
        var dir = SnapshotPath(commit);
        if (!Directory.Exists(dir)) return [];
        return Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories)
            .Where(p => !(Directory.Exists(p) && new FileInfo(p).LinkTarget is null)) // files, links, dangling links; not sub-folders
            .Select(p => System.IO.Path.GetRelativePath(dir, p).Replace('\\', '/'))
            .OrderBy(p => p, StringComparer.Ordinal);
    }

    /// <summary>The snapshot's entries whose link leads to no file (a blob deleted under it).</summary>
    public IReadOnlyList<string> DanglingFiles(string commit, IEnumerable<string>? only = null)
    {
        var dir = SnapshotPath(commit);
        var names = only ?? SnapshotFiles(commit);
        return names.Where(n => new FileInfo(System.IO.Path.Combine(dir, n)) is { LinkTarget: not null } link && !LeadsToFile(link)).ToList();
    }

    /// <summary>Whether a link ends at an existing file (File.Exists is true for a dangling link on Unix: it looks at the link itself).</summary>
    private static bool LeadsToFile(FileInfo link)
    {
        try { return link.ResolveLinkTarget(returnFinalTarget: true) is FileInfo { Exists: true }; }
        catch (IOException) { return false; } // a loop of links
    }

    private static string RequireEtag(string etag)
    {
        if (etag.Length == 0 || etag.IndexOfAny(['/', '\\', '\0', ':']) >= 0 || etag is "." or "..")
            throw new DiffusionException("HubEtagInvalid", DiffusionErrorKind.InvalidData,
                $"The Hub sent the etag '{etag}', which cannot name a file in the cache. Check HF_ENDPOINT: it must be a Hugging Face Hub.", etag);
        return etag;
    }

    /// <summary>parent/relative, checked to stay inside parent (no .., no absolute path).</summary>
    private static string Inside(string parent, string relative)
    {
        var full = System.IO.Path.GetFullPath(System.IO.Path.Combine(parent, relative));
        var root = System.IO.Path.GetFullPath(parent).TrimEnd(System.IO.Path.DirectorySeparatorChar) + System.IO.Path.DirectorySeparatorChar;
        if (!full.StartsWith(root, StringComparison.Ordinal))
            throw new DiffusionException("HubPathOutsideCache", DiffusionErrorKind.InvalidData,
                $"'{relative}' would lead outside '{parent}'; the Hub cache only holds paths inside a repo's folder.", relative);
        return full;
    }
}
