using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Diffusion.Engine.Hub;

/// <summary>What a HEAD on /{repo}/resolve/{revision}/{path} says about one file (huggingface_hub's HfFileMetadata).</summary>
/// <param name="Etag">The blob's name in the cache: X-Linked-Etag (an LFS file's sha256) or the ETag, without quotes and W/.</param>
/// <param name="Location">Where the bytes are: the CDN URL of a redirect, else the resolve URL.</param>
/// <param name="IsLfs">An LFS file: its etag is its sha256, which the download is checked against.</param>
public sealed record HubFileMetadata(string Path, string Commit, string Etag, long Size, string Location, bool IsLfs);

/// <summary>GET /api/models/{repo}/revision/{revision}: the commit and the files (siblings) of the repo at that revision.</summary>
public sealed record HubRepoInfo(string RepoId, string Commit, IReadOnlyList<string> Files);

/// <summary>
/// The Hub's HTTP protocol as huggingface_hub speaks it (file_download.py, utils/_http.py, hf_api.py), against
/// HF_ENDPOINT (default https://huggingface.co), with HF_TOKEN or the token file as a Bearer token. Redirects are
/// followed here, relative ones too; Hub errors (X-Error-Code) become DiffusionExceptions that say what to do.
/// </summary>
public sealed class HubClient : IDisposable
{
    public const string DefaultEndpoint = "https://huggingface.co";
    private const int MaxRedirects = 10;
    private readonly HttpClient _http;

    public string Endpoint { get; }
    /// <summary>Where the token came from (HF_TOKEN, or the token file's path); null without a token.</summary>
    public string? TokenSource { get; }
    private readonly string? _token;

    public HubClient(string? endpoint = null, string? token = null, string? tokenSource = null)
    {
        Endpoint = ((string.IsNullOrEmpty(endpoint) ? null : endpoint) ?? HubCache.Env("HF_ENDPOINT") ?? DefaultEndpoint).TrimEnd('/');
        if (!Uri.TryCreate(Endpoint, UriKind.Absolute, out var u) || u.Scheme is not ("http" or "https"))
            throw new DiffusionException("HubEndpointInvalid", DiffusionErrorKind.InvalidArgument,
                $"HF_ENDPOINT '{Endpoint}' is not an http(s) URL. Set it to a Hub such as https://huggingface.co, or remove it.", "HF_ENDPOINT");
        (_token, TokenSource) = !string.IsNullOrEmpty(token) ? (token, tokenSource ?? "the given token") : FindToken();
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(10),
        }) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("Diffusion-PowerShell/0.1");
    }

    public bool HasToken => _token is not null;

    /// <summary>HF_TOKEN (or the legacy HUGGING_FACE_HUB_TOKEN), else the file `hf auth login` writes: HF_TOKEN_PATH, else HF_HOME/token.</summary>
    private static (string?, string?) FindToken()
    {
        if (HubCache.Env("HF_TOKEN") is { } t) return (t.Trim(), "HF_TOKEN");
        if (HubCache.Env("HUGGING_FACE_HUB_TOKEN") is { } legacy) return (legacy.Trim(), "HUGGING_FACE_HUB_TOKEN");
        var file = HubCache.Env("HF_TOKEN_PATH") ?? Path.Combine(HubCache.HfHome(), "token");
        try
        {
            if (File.Exists(file) && File.ReadAllText(file).Trim() is { Length: > 0 } saved) return (saved, file);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return (null, null);
    }

    public string ResolveUrl(string repoId, string revision, string path) =>
        $"{Endpoint}/{repoId}/resolve/{Uri.EscapeDataString(revision)}/{RepoIds.EscapePath(path)}";

    /// <summary>The repo's commit and file list at a revision.</summary>
    public HubRepoInfo RepoInfo(string repoId, string revision, CancellationToken cancel)
    {
        var url = $"{Endpoint}/api/models/{repoId}/revision/{Uri.EscapeDataString(revision)}";
        using var response = Send(HttpMethod.Get, url, null, repoId, revision, null, cancel);
        using var json = JsonDocument.Parse(response.Content.ReadAsStream(cancel));
        var root = json.RootElement;
        if (!root.TryGetProperty("sha", out var sha) || sha.GetString() is not { } commit || !HubCache.IsCommitHash(commit))
            throw new DiffusionException("HubResponseInvalid", DiffusionErrorKind.InvalidData,
                $"{url} answered without a commit (\"sha\"). Check HF_ENDPOINT: it must be a Hugging Face Hub.", url);
        var files = new List<string>();
        if (root.TryGetProperty("siblings", out var siblings) && siblings.ValueKind == JsonValueKind.Array)
            foreach (var s in siblings.EnumerateArray())
                if (s.TryGetProperty("rfilename", out var f) && f.GetString() is { } name) files.Add(name);
        return new HubRepoInfo(repoId, commit, files);
    }

    /// <summary>
    /// HEAD on the file's resolve URL with Accept-Encoding: identity. Relative redirects (a renamed repo, a CDN path on
    /// the same host) are followed; an absolute one (the CDN) is not, as in huggingface_hub: its Location is where the
    /// bytes are. The Hub's headers are taken from whichever answer carried them.
    /// </summary>
    public HubFileMetadata Head(string repoId, string revision, string path, CancellationToken cancel)
    {
        var url = ResolveUrl(repoId, revision, path);
        string? commit = null, linkedEtag = null, etag = null, linkedSize = null, length = null;
        string location = url;
        for (int hop = 0; ; hop++)
        {
            using var r = SendOnce(HttpMethod.Head, location, null, cancel);
            ThrowIfError(r, repoId, revision, path);
            commit = Header(r, "X-Repo-Commit") ?? commit;
            linkedEtag = Header(r, "X-Linked-Etag") ?? linkedEtag;
            linkedSize = Header(r, "X-Linked-Size") ?? linkedSize;
            if (Header(r, "X-Repo-Commit") is not null || etag is null) etag = Header(r, "ETag") ?? etag;
            bool redirect = (int)r.StatusCode is >= 300 and < 400;
            if (!redirect) length = r.Content.Headers.ContentLength?.ToString();
            if (!redirect) break;
            var next = r.Headers.Location ?? throw Invalid($"{location} redirected without a Location.", location);
            if (next.IsAbsoluteUri) { location = next.ToString(); break; }
            if (hop >= MaxRedirects) throw Invalid($"{url} redirected more than {MaxRedirects} times.", url);
            location = new Uri(new Uri(location), next).ToString();
        }
        var tag = Normalize(linkedEtag ?? etag);
        if (commit is null || !HubCache.IsCommitHash(commit))
            throw Invalid($"{url} answered without a commit (X-Repo-Commit). Check HF_ENDPOINT: it must be a Hugging Face Hub.", url);
        if (tag is null) throw Invalid($"{url} answered without an ETag, so the file cannot be named in the cache.", url);
        if (!long.TryParse(linkedSize ?? length, out var size) || size < 0)
            throw Invalid($"{url} answered without the file's size (X-Linked-Size or Content-Length).", url);
        return new HubFileMetadata(path, commit, tag, size, location, linkedEtag is not null);
    }

    /// <summary>GET from a byte offset (Range: bytes=N-), following every redirect; the caller reads the body and checks 206 against 200.</summary>
    public HttpResponseMessage Get(string location, long offset, string repoId, string revision, string path, CancellationToken cancel) =>
        Send(HttpMethod.Get, location, offset > 0 ? offset : null, repoId, revision, path, cancel);

    /// <summary>A request that follows every redirect (relative or to another host) and throws the Hub's errors.</summary>
    private HttpResponseMessage Send(HttpMethod method, string url, long? offset, string repoId, string revision, string? path, CancellationToken cancel)
    {
        var host = new Uri(url).Authority;
        for (int hop = 0; ; hop++)
        {
            // Authorization goes to the Hub only, never to another host a redirect leads to (as requests/httpx do).
            var r = SendOnce(method, url, offset, cancel, withToken: new Uri(url).Authority == host);
            if ((int)r.StatusCode is >= 300 and < 400 && r.Headers.Location is { } next)
            {
                r.Dispose();
                if (hop >= MaxRedirects) throw Invalid($"{url} redirected more than {MaxRedirects} times.", url);
                url = new Uri(new Uri(url), next).ToString();
                continue;
            }
            try { ThrowIfError(r, repoId, revision, path); }
            catch { r.Dispose(); throw; }
            return r;
        }
    }

    private HttpResponseMessage SendOnce(HttpMethod method, string url, long? offset, CancellationToken cancel, bool withToken = true)
    {
        using var request = new HttpRequestMessage(method, url);
        request.Headers.AcceptEncoding.ParseAdd("identity");
        if (withToken && _token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        if (offset is { } o) request.Headers.Range = new RangeHeaderValue(o, null);
        try
        {
            return _http.Send(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        }
        catch (HttpRequestException e)
        {
            throw Unreachable(e);
        }
        catch (TaskCanceledException e) when (!cancel.IsCancellationRequested)
        {
            throw Unreachable(e);
        }
    }

    private DiffusionException Unreachable(Exception e) =>
        new("HubUnreachable", DiffusionErrorKind.ResourceUnavailable,
            $"Could not reach the Hub at {Endpoint} ({e.Message}). Check the network (and HF_ENDPOINT), or set $env:HF_HUB_OFFLINE = 1 to use only the local cache.",
            Endpoint, e);

    private static DiffusionException Invalid(string message, string url) =>
        new("HubResponseInvalid", DiffusionErrorKind.InvalidData, message, url);

    private static string? Header(HttpResponseMessage r, string name) =>
        r.Headers.TryGetValues(name, out var v) || r.Content.Headers.TryGetValues(name, out v) ? v.FirstOrDefault() : null;

    /// <summary>huggingface_hub's _normalize_etag: W/"x" and "x" both become x.</summary>
    internal static string? Normalize(string? etag) => etag is null ? null : (etag.StartsWith("W/", StringComparison.Ordinal) ? etag[2..] : etag).Trim('"');

    /// <summary>hf_raise_for_status: X-Error-Code names what is missing or refused.</summary>
    private void ThrowIfError(HttpResponseMessage r, string repoId, string revision, string? path)
    {
        int status = (int)r.StatusCode;
        if (status < 400) return;
        var code = Header(r, "X-Error-Code");
        var hubMessage = Header(r, "X-Error-Message");
        var page = $"{Endpoint}/{repoId}";
        var tokenNote = _token is null
            ? "No token was sent: set $env:HF_TOKEN to a read token from https://huggingface.co/settings/tokens (or run `hf auth login`, which writes HF_HOME/token)."
            : $"The token from {TokenSource} was sent but has no access: accept the licence with the account the token belongs to, or use another token.";
        throw code switch
        {
            "GatedRepo" => new DiffusionException("HubGatedRepo", DiffusionErrorKind.ResourceUnavailable,
                $"GatedRepo: '{repoId}' is a gated model: accept its licence on {page} (logged in), then download with a token of that account. {tokenNote}", repoId),
            "RevisionNotFound" => new DiffusionException("HubRevisionNotFound", DiffusionErrorKind.ObjectNotFound,
                $"RevisionNotFound: the repo '{repoId}' has no revision '{revision}'. Give an existing branch, tag or commit hash with -Revision (default main); see {page}/tree/main.", revision),
            "EntryNotFound" => new DiffusionException("HubEntryNotFound", DiffusionErrorKind.ObjectNotFound,
                $"EntryNotFound: the repo '{repoId}' at revision '{revision}' has no file '{path}'. See the repo's files on {page}/tree/{revision}.", path),
            "RepoNotFound" => RepoNotFound(repoId, page),
            _ when status == 401 && hubMessage == "Invalid credentials in Authorization header" => new DiffusionException("HubTokenInvalid", DiffusionErrorKind.InvalidArgument,
                $"The Hub refused the token from {TokenSource} as invalid. Make a new read token on https://huggingface.co/settings/tokens and set $env:HF_TOKEN to it.", TokenSource),
            _ when status == 401 => RepoNotFound(repoId, page),
            _ => new DiffusionException("HubHttpError", DiffusionErrorKind.ResourceUnavailable,
                $"The Hub answered {status} {r.ReasonPhrase} for '{repoId}'{(path is null ? "" : $" file '{path}'")} at '{revision}'{(hubMessage is null ? "" : $": {hubMessage}")}. Try again later, or set $env:HF_HUB_OFFLINE = 1 to use the local cache.", repoId),
        };
    }

    private DiffusionException RepoNotFound(string repoId, string page) =>
        new("HubRepoNotFound", DiffusionErrorKind.ObjectNotFound,
            $"RepoNotFound: there is no model repo '{repoId}' on {Endpoint} (or it is private). Check the id: it is the org/name part of the model page's URL ({page}). " +
            (_token is null ? "For a private repo set $env:HF_TOKEN to a token with access." : $"The token from {TokenSource} was sent; for a private repo it needs access to it."), repoId);

    public void Dispose() => _http.Dispose();
}
