using System.Net;
using System.Security.Cryptography;

namespace Diffusion.Engine.Hub;

/// <summary>Download progress: the file being fetched and the whole download.</summary>
/// <param name="BytesPerSecond">The whole download's rate since it started.</param>
public sealed record HubProgress(string RepoId, string File, long FileBytes, long FileTotal, long Bytes, long Total, int FilesDone, int FilesTotal, double BytesPerSecond);

/// <summary>
/// Puts files of one repo into the cache as huggingface_hub's hf_hub_download does: under the blob's lock, the bytes
/// go to blobs/{etag}.incomplete (resumed with Range after a cut), are checked (size; sha256 for LFS files), and are
/// renamed to blobs/{etag} in one step; then snapshots/{commit}/{path} is linked to the blob. A blob already complete
/// is reused, so several processes fetching one model share the work; Ctrl+C leaves at most an .incomplete file.
/// </summary>
public sealed class HubDownloader
{
    private const int Attempts = 5;
    private readonly HubClient _client;
    private readonly RepoCache _repo;

    public HubDownloader(HubClient client, RepoCache repo) { _client = client; _repo = repo; }

    /// <summary>Whether the snapshot already has this file, linked to a complete blob.</summary>
    public bool IsCached(HubFileMetadata file) =>
        File.Exists(_repo.PointerPath(file.Commit, file.Path)) && File.Exists(_repo.BlobPath(file.Etag));

    /// <summary>Downloads one file (if its blob is not complete yet) and links it into the snapshot; returns the snapshot path.</summary>
    /// <param name="onBytes">Bytes received so far for this file (resumed bytes included).</param>
    public string Fetch(HubFileMetadata file, string revision, Action<long>? onBytes, CancellationToken cancel, Action? onWait = null)
    {
        var pointer = _repo.PointerPath(file.Commit, file.Path);
        var blob = _repo.BlobPath(file.Etag);
        if (File.Exists(pointer) && File.Exists(blob)) { onBytes?.Invoke(file.Size); return pointer; }
        Directory.CreateDirectory(_repo.BlobsPath);
        using (BlobLock.Acquire(_repo.LockPath(file.Etag), cancel, onWait))
        {
            if (!File.Exists(blob)) DownloadBlob(file, revision, blob, onBytes, cancel);
            onBytes?.Invoke(file.Size);
            _repo.LinkSnapshot(file.Commit, file.Path, file.Etag);
        }
        return pointer;
    }

    private void DownloadBlob(HubFileMetadata file, string revision, string blob, Action<long>? onBytes, CancellationToken cancel)
    {
        var incomplete = _repo.IncompletePath(file.Etag);
        using (var output = new FileStream(incomplete, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            if (output.Length > file.Size) output.SetLength(0); // not a prefix of this file
            for (int attempt = 1; output.Length < file.Size; attempt++)
            {
                long before = output.Length;
                try { Receive(file, revision, output, onBytes, cancel); }
                catch (Exception e) when (e is IOException or HttpRequestException || e is DiffusionException { ErrorId: "HubUnreachable" })
                {
                    // A cut connection: go on from what arrived (Range), as huggingface_hub's http_get retries.
                    if (cancel.IsCancellationRequested) throw new OperationCanceledException(cancel);
                    if (attempt >= Attempts || output.Length == before && attempt >= 2)
                        throw new DiffusionException("HubDownloadIncomplete", DiffusionErrorKind.ResourceUnavailable,
                            $"Downloading '{file.Path}' of '{_repo.RepoId}' stopped at {output.Length} of {file.Size} bytes ({e.Message}). " +
                            $"Run the command again: it resumes from '{incomplete}'.", file.Path, e);
                }
            }
            if (output.Length != file.Size)
                throw new DiffusionException("HubDownloadIncomplete", DiffusionErrorKind.InvalidData,
                    $"'{file.Path}' of '{_repo.RepoId}' arrived with {output.Length} bytes where the Hub announced {file.Size}; run the command again.", file.Path);
            if (file.IsLfs && HubCache.IsSha256(file.Etag))
            {
                output.Position = 0;
                var actual = Convert.ToHexString(SHA256.HashData(output)).ToLowerInvariant();
                if (actual != file.Etag)
                {
                    output.Dispose();
                    File.Delete(incomplete);
                    throw new DiffusionException("HubChecksumMismatch", DiffusionErrorKind.InvalidData,
                        $"'{file.Path}' of '{_repo.RepoId}' downloaded with sha256 {actual}, but the Hub lists {file.Etag}: the file was corrupted on the way and was deleted. " +
                        "Run the command again; if it happens again, a proxy or mirror (HF_ENDPOINT) is changing the file.", file.Path);
                }
            }
            output.Flush(flushToDisk: true);
        }
        try { File.Move(incomplete, blob, overwrite: false); }
        catch (IOException) when (File.Exists(blob)) { File.Delete(incomplete); } // completed by another writer meanwhile
    }

    /// <summary>One GET from the end of what the .incomplete file holds.</summary>
    private void Receive(HubFileMetadata file, string revision, FileStream output, Action<long>? onBytes, CancellationToken cancel)
    {
        long offset = output.Length;
        using var response = _client.Get(file.Location, offset, _repo.RepoId, revision, file.Path, cancel);
        if (offset > 0 && response.StatusCode != HttpStatusCode.PartialContent)
            offset = 0; // the server ignored Range: start over
        else if (offset > 0 && response.Content.Headers.ContentRange?.From is { } from && from != offset)
            throw new IOException($"the server resumed at byte {from} instead of {offset}");
        output.SetLength(offset);
        output.Position = offset;
        onBytes?.Invoke(offset);
        using var body = response.Content.ReadAsStream(cancel);
        var buffer = new byte[1 << 20];
        long received = offset;
        while (true)
        {
            int n = body.ReadAsync(buffer, cancel).AsTask().GetAwaiter().GetResult();
            if (n == 0) break;
            if (received + n > file.Size)
                throw new DiffusionException("HubDownloadIncomplete", DiffusionErrorKind.InvalidData,
                    $"'{file.Path}' of '{_repo.RepoId}' is longer than the {file.Size} bytes the Hub announced; run the command again.", file.Path);
            output.Write(buffer, 0, n);
            received += n;
            onBytes?.Invoke(received);
        }
        if (received < file.Size) throw new IOException($"the connection closed after {received} of {file.Size} bytes");
    }
}
