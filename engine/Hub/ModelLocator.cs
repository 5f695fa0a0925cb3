using System.Diagnostics;

namespace Diffusion.Engine.Hub;

/// <summary>
/// What to fetch: a repo at a revision, optionally one variant and some components only; <paramref name="ConfigsOnly"/>:
/// only model_index.json and the components' config, tokenizer and scheduler files, no weights (a single file's
/// -Config, as diffusers' from_single_file fetches its config repo).
/// </summary>
public sealed record ModelRequest(string RepoId, string? Revision = null, string? Variant = null, string[]? Components = null, bool ConfigsOnly = false)
{
    public string RevisionOrMain => Revision ?? HubCache.DefaultRevision;
}

/// <summary>
/// From a path or a repo id to a local diffusers folder, as diffusers' from_pretrained: an existing local folder or
/// file is used as it is; else `org/name` is a Hub repo: its snapshot in the cache (HF_HUB_OFFLINE=1: only the cache),
/// after downloading what the load needs (DownloadSelection) into it.
/// </summary>
public static class ModelLocator
{
    /// <summary>
    /// Whether a string that names no existing file or folder is meant as a repo id: not an absolute path, not
    /// starting with '.' or '~'. (Whether it is a valid one is checked when it is used.)
    /// </summary>
    public static bool IsRepoIdCandidate(string pathOrId) =>
        pathOrId.Length > 0 && !Path.IsPathRooted(pathOrId) && !pathOrId.StartsWith('.') && !pathOrId.StartsWith('~')
        && !(pathOrId.Length >= 2 && pathOrId[1] == ':');

    /// <summary>The local path of pathOrId: itself when it exists (or is no repo id), else the repo's snapshot folder.</summary>
    /// <param name="localPath">pathOrId resolved as a local path (e.g. against PowerShell's location).</param>
    public static string Resolve(string pathOrId, string localPath, ModelRequest request, Action<HubProgress>? progress, Action<string>? warn, CancellationToken cancel)
    {
        if (File.Exists(localPath) || Directory.Exists(localPath) || !IsRepoIdCandidate(pathOrId)) return localPath;
        if (!RepoIds.IsValid(pathOrId))
            throw new DiffusionException("HubRepoIdInvalid", DiffusionErrorKind.InvalidArgument,
                $"'{pathOrId}' is neither an existing model folder or file ('{localPath}' does not exist) nor a valid Hugging Face repo id: {RepoIds.Rule}.", pathOrId);
        try
        {
            return Snapshot(request with { RepoId = pathOrId }, force: false, progress, warn, cancel);
        }
        catch (DiffusionException e) when (e.ErrorId is "HubRepoNotFound" or "HubUnreachable" or "HubOfflineNotCached")
        {
            // It may have been meant as a local path: say that it is not one either.
            throw new DiffusionException(e.ErrorId, e.Kind, $"{e.Message} ('{localPath}' is no local folder or file either.)", e.Target, e);
        }
    }

    /// <summary>
    /// Whether resolving pathOrId would download: it is no existing local path, it is a valid repo id, HF_HUB_OFFLINE is
    /// not set, and the cache has no complete snapshot of the revision for the request. Asks no server.
    /// </summary>
    public static bool WouldDownload(string pathOrId, string localPath, ModelRequest request)
    {
        if (File.Exists(localPath) || Directory.Exists(localPath) || !IsRepoIdCandidate(pathOrId) || !RepoIds.IsValid(pathOrId) || HubCache.IsOffline) return false;
        var revision = request.RevisionOrMain;
        try
        {
            var repo = HubCache.FromEnvironment().Repo(pathOrId);
            var commit = repo.ResolveCommit(RepoIds.RequireRevision(revision));
            return commit is null || !Directory.Exists(repo.SnapshotPath(commit))
                || CheckSnapshot(repo, commit, request with { RepoId = pathOrId }, throwIfIncomplete: false) is null;
        }
        catch (DiffusionException) { return true; }
    }

    /// <summary>The snapshot folder holding what the request needs: from the cache, downloading what is missing unless offline.</summary>
    public static string Snapshot(ModelRequest request, bool force, Action<HubProgress>? progress, Action<string>? warn, CancellationToken cancel)
    {
        RepoIds.Require(request.RepoId);
        var revision = RepoIds.RequireRevision(request.RevisionOrMain);
        var repo = HubCache.FromEnvironment().Repo(request.RepoId);
        if (HubCache.IsOffline)
        {
            var commit = repo.ResolveCommit(revision);
            if (commit is null || !Directory.Exists(repo.SnapshotPath(commit)))
                throw new DiffusionException("HubOfflineNotCached", DiffusionErrorKind.ObjectNotFound,
                    $"HF_HUB_OFFLINE is set, and '{request.RepoId}' at revision '{revision}' is not in the cache. {CachedModel.Describe(repo)} " +
                    $"Download it first without HF_HUB_OFFLINE (Save-DiffusionModel {request.RepoId}), or give a revision the cache holds.", request.RepoId);
            return CheckSnapshot(repo, commit, request, throwIfIncomplete: true)!;
        }
        if (!force && HubCache.IsCommitHash(revision) && Directory.Exists(repo.SnapshotPath(revision))
            && CheckSnapshot(repo, revision, request, throwIfIncomplete: false) is { } pinned)
            return pinned; // a commit never changes: no need to ask the Hub
        using var client = new HubClient();
        HubRepoInfo info;
        try { info = client.RepoInfo(request.RepoId, revision, cancel); }
        catch (DiffusionException e) when (e.ErrorId == "HubUnreachable" && !force)
        {
            // As huggingface_hub: without the Hub, what the cache holds for this revision will do.
            var commit = repo.ResolveCommit(revision);
            if (commit is not null && Directory.Exists(repo.SnapshotPath(commit)) && CheckSnapshot(repo, commit, request, throwIfIncomplete: false) is { } cached)
            {
                warn?.Invoke($"The Hub is unreachable ({e.Message}); using the cached snapshot {commit} of '{request.RepoId}'.");
                return cached;
            }
            throw new DiffusionException(e.ErrorId, e.Kind,
                $"{e.Message} '{request.RepoId}' is needed at revision '{revision}'. {CachedModel.Describe(repo)}", request.RepoId, e);
        }
        var downloaded = Download(client, repo, info, request, force, progress, warn, cancel);
        var snapshot = repo.SnapshotPath(info.Commit);
        RequireLinked(repo, info.Commit, request, downloaded);
        return snapshot;
    }

    private static IReadOnlyList<string> Download(HubClient client, RepoCache repo, HubRepoInfo info, ModelRequest request, bool force, Action<HubProgress>? progress,
        Action<string>? warn, CancellationToken cancel)
    {
        var downloader = new HubDownloader(client, repo);
        var clock = Stopwatch.StartNew();
        var indexMeta = Head(client, repo, info, DownloadSelection.ModelIndex, cancel);
        var index = downloader.Fetch(indexMeta, info.Commit, null, cancel);
        var declared = DownloadSelection.ParseModelIndex(File.ReadAllText(index), $"{request.RepoId}/{DownloadSelection.ModelIndex}");
        var plan = DownloadSelection.Select(info.Files, declared, request.Components, request.Variant, request.RepoId);
        if (request.ConfigsOnly) plan = DownloadSelection.WithoutWeights(plan);
        foreach (var w in plan.Warnings) warn?.Invoke(w);
        var files = plan.Files.Where(f => f != DownloadSelection.ModelIndex).Select(f => Head(client, repo, info, f, cancel)).ToList();
        if (force)
            foreach (var f in files) { var blob = repo.BlobPath(f.Etag); if (File.Exists(blob)) File.Delete(blob); }
        var pending = files.Where(f => !downloader.IsCached(f)).ToList();
        long total = pending.Sum(f => f.Size), done = 0;
        for (int k = 0; k < files.Count; k++)
        {
            var f = files[k];
            int position = k;
            downloader.Fetch(f, info.Commit, bytes =>
            {
                if (!pending.Contains(f)) return;
                long now = done + bytes;
                progress?.Invoke(new HubProgress(request.RepoId, f.Path, bytes, f.Size, now, total, position, files.Count, now / Math.Max(clock.Elapsed.TotalSeconds, 1e-3)));
            }, cancel, () => progress?.Invoke(new HubProgress(request.RepoId, $"{f.Path} (waiting for another process downloading it)", 0, f.Size, done, total,
                position, files.Count, done / Math.Max(clock.Elapsed.TotalSeconds, 1e-3))));
            if (pending.Contains(f)) done += f.Size;
        }
        progress?.Invoke(new HubProgress(request.RepoId, "", 0, 0, done, total, files.Count, files.Count, done / Math.Max(clock.Elapsed.TotalSeconds, 1e-3)));
        // Only once every file is there does the revision name this commit: an interrupted download is not taken for a complete one.
        repo.WriteRef(request.RevisionOrMain, info.Commit);
        return plan.Files;
    }

    /// <summary>HEAD at the commit the repo info named, so every file comes from the same commit.</summary>
    private static HubFileMetadata Head(HubClient client, RepoCache repo, HubRepoInfo info, string path, CancellationToken cancel)
    {
        try
        {
            var meta = client.Head(info.RepoId, info.Commit, path, cancel);
            if (meta.Commit != info.Commit)
                throw new DiffusionException("HubResponseInvalid", DiffusionErrorKind.InvalidData,
                    $"The Hub answered for '{path}' with commit {meta.Commit}, not the requested {info.Commit}. Check HF_ENDPOINT.", path);
            return meta;
        }
        catch (DiffusionException e) when (e.ErrorId == "HubEntryNotFound")
        {
            repo.MarkNoExist(info.Commit, path);
            throw;
        }
    }

    /// <summary>
    /// The snapshot folder when it holds model_index.json and every file the request needs (links that lead to a
    /// blob); null (or an error naming the files) when it does not.
    /// </summary>
    private static string? CheckSnapshot(RepoCache repo, string commit, ModelRequest request, bool throwIfIncomplete)
    {
        var snapshot = repo.SnapshotPath(commit);
        var index = Path.Combine(snapshot, DownloadSelection.ModelIndex);
        var files = repo.SnapshotFiles(commit).ToList();
        RequireLinked(repo, commit, request, files);
        string? missing = null;
        if (!File.Exists(index)) missing = DownloadSelection.ModelIndex;
        else
        {
            var declared = DownloadSelection.ParseModelIndex(File.ReadAllText(index), index);
            try
            {
                var absent = DownloadSelection.Components(declared, request.Components, request.RepoId)
                    .Where(c => !files.Any(f => f.StartsWith(c + "/", StringComparison.Ordinal))).ToList();
                if (absent.Count > 0) missing = string.Join(", ", absent.Select(c => c + "/"));
                else if (!request.ConfigsOnly) _ = DownloadSelection.Select(files, declared, request.Components, request.Variant, request.RepoId); // refuses what a load would refuse
            }
            catch (DiffusionException) when (!throwIfIncomplete)
            {
                return null;
            }
        }
        if (missing is null) return snapshot;
        if (!throwIfIncomplete) return null;
        throw new DiffusionException("HubSnapshotIncomplete", DiffusionErrorKind.ObjectNotFound,
            $"The cached snapshot '{snapshot}' of '{request.RepoId}' lacks {missing}. " +
            (HubCache.IsOffline ? $"Download it without HF_HUB_OFFLINE: Save-DiffusionModel {request.RepoId}{(request.Components is { Length: > 0 } c ? " -Component " + string.Join(',', c) : "")}." : "Run the command again to download it."),
            request.RepoId);
    }

    /// <summary>Every one of these snapshot files must lead to a blob: a link to a deleted blob is reported with the fix.</summary>
    private static void RequireLinked(RepoCache repo, string commit, ModelRequest request, IEnumerable<string> files)
    {
        var snapshot = repo.SnapshotPath(commit);
        var dangling = repo.DanglingFiles(commit, files);
        if (dangling.Count > 0)
            throw new DiffusionException("HubSnapshotDangling", DiffusionErrorKind.InvalidData,
                $"The cached snapshot '{snapshot}' of '{request.RepoId}' links to blobs that are gone: {string.Join(", ", dangling)}. " +
                $"Download them again with Save-DiffusionModel {request.RepoId} -Force, or delete the snapshot with Remove-DiffusionModel {request.RepoId} and download it anew.",
                Path.Combine(snapshot, dangling[0]));
        var absent = files.Where(f => !File.Exists(Path.Combine(snapshot, f))).ToList();
        if (absent.Count > 0)
            throw new DiffusionException("HubSnapshotIncomplete", DiffusionErrorKind.ObjectNotFound,
                $"The cached snapshot '{snapshot}' of '{request.RepoId}' lacks {string.Join(", ", absent)}. Run the command again to download them.", request.RepoId);
    }

    /// <summary>Save-DiffusionModel -LocalDir: the snapshot's files copied (real files, not links) into a folder, as huggingface_hub's local_dir.</summary>
    public static void CopyTo(string snapshot, string localDir, bool overwrite)
    {
        foreach (var entry in Directory.EnumerateFiles(snapshot, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(snapshot, entry);
            var target = Path.Combine(localDir, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            if (File.Exists(target) && !overwrite && new FileInfo(target).Length == new FileInfo(entry).Length) continue;
            var tmp = target + ".incomplete-" + Guid.NewGuid().ToString("N")[..8];
            File.Copy(entry, tmp); // follows the link: the blob's bytes
            File.Move(tmp, target, overwrite: true);
        }
    }
}
