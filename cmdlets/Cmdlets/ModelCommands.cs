using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine.Hub;

namespace Diffusion.Cmdlets;

/// <summary>
/// Downloads a diffusers model from the Hugging Face Hub into the Hub cache (as `hf download`), only the files a load
/// reads; outputs the snapshot folder (or -LocalDir, with real files copied there).
/// </summary>
[Cmdlet(VerbsData.Save, "DiffusionModel", SupportsShouldProcess = true)]
[OutputType(typeof(DirectoryInfo))]
public sealed class SaveDiffusionModelCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(RepoIdCompleter))]
    public string[] RepoId { get; set; } = [];

    [Parameter]
    [ArgumentCompleter(typeof(ComponentCompleter))]
    public string[]? Component { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Variant { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Revision { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? LocalDir { get; set; }

    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var id in RepoId)
        {
            var what = $"Download {(Component is { Length: > 0 } ? string.Join(", ", Component) : "the pipeline")}" +
                       $"{(Variant is null ? "" : $" ({Variant})")} at {Revision ?? "main"} into {(LocalDir ?? HubCache.DefaultRoot())}";
            if (!ShouldProcess(id, what)) continue;
            var snapshot = ModelResolution.Download(this, new ModelRequest(id, Revision, Variant, Component), Force, StopToken);
            if (LocalDir is null)
            {
                WriteObject(new DirectoryInfo(snapshot));
                continue;
            }
            var target = GetUnresolvedProviderPathFromPSPath(LocalDir);
            Run(() => ModelLocator.CopyTo(snapshot, target, Force));
            WriteObject(new DirectoryInfo(target));
        }
    }
}

/// <summary>The models in the Hub cache, as `hf cache scan`: revisions, size on disk, times, snapshot folder.</summary>
[Cmdlet(VerbsCommon.Get, "DiffusionModel")]
[OutputType(typeof(CachedModel))]
public sealed class GetDiffusionModelCommand : DiffusionCmdlet
{
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(RepoIdCompleter))]
    public string[]? RepoId { get; set; }

    protected override void ProcessRecord()
    {
        var patterns = (RepoId is { Length: > 0 } ? RepoId : ["*"]).Select(p => new WildcardPattern(p, WildcardOptions.IgnoreCase)).ToList();
        var repos = Run(() => HubCache.FromEnvironment().Repos().ToList());
        foreach (var name in RepoId ?? [])
            if (!WildcardPattern.ContainsWildcardCharacters(name) && !repos.Any(r => string.Equals(r.RepoId, name, StringComparison.OrdinalIgnoreCase)))
                WriteError(new ErrorRecord(new ItemNotFoundException($"'{name}' is not in the Hub cache '{HubCache.DefaultRoot()}'."), "HubModelNotCached", ErrorCategory.ObjectNotFound, name)
                {
                    ErrorDetails = new ErrorDetails($"'{name}' is not in the Hub cache '{HubCache.DefaultRoot()}'. Download it with Save-DiffusionModel {name}."),
                });
        foreach (var repo in repos.Where(r => patterns.Any(p => p.IsMatch(r.RepoId))))
            WriteObject(Run(() => CachedModel.Scan(repo)));
    }
}

/// <summary>Deletes a cached model, or one revision of it (its snapshot, refs and the blobs no other snapshot uses).</summary>
[Cmdlet(VerbsCommon.Remove, "DiffusionModel", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(CacheRemoval))]
public sealed class RemoveDiffusionModelCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(RepoIdCompleter))]
    public string[] RepoId { get; set; } = [];

    /// <summary>Only this revision (a branch such as main, a tag, or a commit hash).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Revision { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var cache = Run(() => HubCache.FromEnvironment());
        foreach (var id in RepoId)
        {
            var removal = Run(() => CacheRemoval.Plan(cache.Repo(id), Revision));
            if (!ShouldProcess(cache.Repo(id).Path, $"Delete {removal}")) continue;
            Run(removal.Execute);
            if (PassThru) WriteObject(removal);
        }
    }
}
