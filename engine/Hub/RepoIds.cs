using System.Text.RegularExpressions;

namespace Diffusion.Engine.Hub;

/// <summary>
/// Repo ids, revisions and repo file paths as the Hub accepts them (huggingface_hub's validate_repo_id), checked before
/// any of them becomes part of a URL or a cache path.
/// </summary>
public static class RepoIds
{
    public const string Rule = "a repo id is 'name' or 'org/name': letters, digits, '.', '_' and '-' only, at most 96 characters, " +
                               "no '..' or '--', not starting or ending with '.' or '-', no backslash, not an absolute path";

    private static readonly Regex Segment = new(@"^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$", RegexOptions.CultureInvariant);

    public static bool IsValid(string id)
    {
        if (id.Length is 0 or > 96 || id.Contains("..", StringComparison.Ordinal) || id.Contains("--", StringComparison.Ordinal)) return false;
        var parts = id.Split('/');
        return parts.Length <= 2 && parts.All(Segment.IsMatch);
    }

    public static string Require(string id)
    {
        if (!IsValid(id))
            throw new DiffusionException("HubRepoIdInvalid", DiffusionErrorKind.InvalidArgument,
                $"'{id}' is not a valid Hugging Face repo id: {Rule}. Give a repo id such as 'stable-diffusion-v1-5/stable-diffusion-v1-5', or the path of an existing model folder.", id);
        return id;
    }

    /// <summary>A branch, tag, commit or refs/pr/N: no empty or '..' segments, no backslash, not absolute.</summary>
    public static string RequireRevision(string revision)
    {
        if (!IsPlainRelativePath(revision))
            throw new DiffusionException("HubRevisionInvalid", DiffusionErrorKind.InvalidArgument,
                $"-Revision '{revision}' is not a valid revision: give a branch (main), a tag, a commit hash or refs/pr/N, without '..', backslashes or a leading '/'.", "Revision");
        return revision;
    }

    /// <summary>A file path inside a repo, as the Hub lists it (unet/config.json).</summary>
    public static string RequireFilePath(string path)
    {
        if (!IsPlainRelativePath(path))
            throw new DiffusionException("HubFilePathInvalid", DiffusionErrorKind.InvalidData,
                $"The Hub listed the file '{path}', which is not a plain path inside the repo (no '..', backslash or leading '/'); it is not downloaded.", path);
        return path;
    }

    private static bool IsPlainRelativePath(string path) =>
        path.Length > 0 && path.IndexOfAny(['\\', '\0', ':']) < 0 && !path.StartsWith('/') && !Path.IsPathRooted(path)
        && path.Split('/').All(s => s.Length > 0 && s is not "." and not ".." && s == s.Trim());

    /// <summary>URL-escapes each segment of a path (a revision such as refs/pr/1 is escaped whole, as huggingface_hub's quote(revision, safe="")).</summary>
    internal static string EscapePath(string path) => string.Join('/', path.Split('/').Select(Uri.EscapeDataString));
}
