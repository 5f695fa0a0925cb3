using System.Collections;
using System.Diagnostics;
using System.Management.Automation;
using System.Management.Automation.Language;
using Diffusion.Engine;
using Diffusion.Engine.Hub;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// -Path of the loading cmdlets: a local folder or file (a PowerShell path), else a Hugging Face repo id
/// (org/name), downloaded into the Hub cache when needed, with progress bars. Returns the local folder to load.
/// </summary>
internal static class ModelResolution
{
    private const int OverallActivity = 41;
    private const int FileActivity = 42;

    /// <param name="configsOnly">Only the configs, tokenizers and scheduler (a single file's -Config repo, as diffusers' from_single_file fetches it).</param>
    public static string Resolve(PSCmdlet cmdlet, string pathOrId, string? revision, string? variant, string[]? components, CancellationToken cancel,
        bool configsOnly = false)
    {
        string local;
        try { local = cmdlet.GetUnresolvedProviderPathFromPSPath(pathOrId); }
        catch (Exception e) when (e is System.Management.Automation.DriveNotFoundException or ProviderNotFoundException or NotSupportedException or ItemNotFoundException)
        {
            local = pathOrId; // not a PowerShell path (e.g. 'org:x'): the repo-id rules decide
        }
        var request = new ModelRequest(pathOrId, revision, variant, components, configsOnly);
        // Engine errors come out as DiffusionException: the caller makes them terminating or an error for its input item.
        try { return ModelLocator.Resolve(pathOrId, local, request, Progress(cmdlet), cmdlet.WriteWarning, cancel); }
        finally { Complete(cmdlet); }
    }

    /// <summary>
    /// For -WhatIf / -Confirm before anything is fetched: true when pathOrId is a repo id whose files are not all in
    /// the cache, after asking ShouldProcess about the download (false: the user declined, or -WhatIf).
    /// </summary>
    public static bool ShouldDownload(PSCmdlet cmdlet, string pathOrId, string? revision, string? variant, string[]? components)
    {
        string local;
        try { local = cmdlet.GetUnresolvedProviderPathFromPSPath(pathOrId); }
        catch (Exception) { return true; }
        if (!ModelLocator.WouldDownload(pathOrId, local, new ModelRequest(pathOrId, revision, variant, components))) return true;
        var what = components is { Length: > 0 } ? string.Join(", ", components) : "the pipeline";
        return cmdlet.ShouldProcess(pathOrId, $"Download {what} at {revision ?? HubCache.DefaultRevision} from {(Environment.GetEnvironmentVariable("HF_ENDPOINT") is { Length: > 0 } e ? e : HubClient.DefaultEndpoint)} into {HubCache.DefaultRoot()}");
    }

    /// <summary>Save-DiffusionModel: the repo's snapshot, downloading what the request needs.</summary>
    public static string Download(PSCmdlet cmdlet, ModelRequest request, bool force, CancellationToken cancel) =>
        Invoke(cmdlet, () => ModelLocator.Snapshot(request, force, Progress(cmdlet), cmdlet.WriteWarning, cancel));

    private static string Invoke(PSCmdlet cmdlet, Func<string> resolve)
    {
        try
        {
            return cmdlet is DiffusionCmdlet d ? d.RunEngine(resolve) : resolve();
        }
        finally
        {
            Complete(cmdlet);
        }
    }

    /// <summary>Two bars: the whole download (bytes, rate) and the file being fetched; at most a few updates a second.</summary>
    private static Action<HubProgress> Progress(PSCmdlet cmdlet)
    {
        var clock = Stopwatch.StartNew();
        long last = -1000;
        return p =>
        {
            bool finished = p.FilesDone == p.FilesTotal;
            if (!finished && clock.ElapsedMilliseconds - last < 250) return;
            last = clock.ElapsedMilliseconds;
            var overall = new ProgressRecord(OverallActivity, $"Downloading {p.RepoId}",
                $"{p.FilesDone}/{p.FilesTotal} files, {Size(p.Bytes)} of {Size(p.Total)} at {Size((long)p.BytesPerSecond)}/s")
            {
                PercentComplete = p.Total > 0 ? (int)Math.Min(100, 100 * p.Bytes / p.Total) : 100,
            };
            cmdlet.WriteProgress(overall);
            if (p.File.Length == 0) return;
            cmdlet.WriteProgress(new ProgressRecord(FileActivity, p.File, $"{Size(p.FileBytes)} of {Size(p.FileTotal)}")
            {
                ParentActivityId = OverallActivity,
                PercentComplete = p.FileTotal > 0 ? (int)Math.Min(100, 100 * p.FileBytes / p.FileTotal) : 100,
            });
        };
    }

    private static void Complete(PSCmdlet cmdlet)
    {
        try
        {
            cmdlet.WriteProgress(new ProgressRecord(FileActivity, "Downloading", "done") { ParentActivityId = OverallActivity, RecordType = ProgressRecordType.Completed });
            cmdlet.WriteProgress(new ProgressRecord(OverallActivity, "Downloading", "done") { RecordType = ProgressRecordType.Completed });
        }
        catch (PipelineStoppedException) { }
        catch (InvalidOperationException) { } // not on the pipeline thread any more
    }

    internal static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes} B",
    };
}

/// <summary>Tab completion for a model -Path: files and folders, then the repo ids the Hub cache holds.</summary>
public sealed class ModelPathCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var results = new List<CompletionResult>();
        try { results.AddRange(CompletionCompleters.CompleteFilename(wordToComplete)); }
        catch (Exception) { } // completion never fails the prompt
        results.AddRange(RepoIdCompleter.Complete(wordToComplete));
        return results;
    }
}

/// <summary>Tab completion for -RepoId: the repo ids in the Hub cache.</summary>
public sealed class RepoIdCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) => Complete(wordToComplete);

    internal static IEnumerable<CompletionResult> Complete(string wordToComplete)
    {
        var word = wordToComplete.Trim('\'', '"');
        List<string> ids;
        try { ids = HubCache.FromEnvironment().Repos().Select(r => r.RepoId).ToList(); }
        catch (Exception) { return []; }
        return ids.Where(id => id.StartsWith(word, StringComparison.OrdinalIgnoreCase))
            .Select(id => new CompletionResult(id, id, CompletionResultType.ParameterValue, $"{id} (Hub cache)"));
    }
}
