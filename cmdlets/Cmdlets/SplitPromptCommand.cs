using System.Collections;
using System.Collections.Specialized;
using System.Management.Automation;
using Diffusion.Cmdlets.Infrastructure;
using Diffusion.Engine.Parallel;

namespace Diffusion.Cmdlets;

/// <summary>One item of this process's share of the input (Split-Prompt's output).</summary>
public sealed class PromptShareItem
{
    /// <summary>The item's position in the whole input: use it for file names and seeds, and to put gathered results in order.</summary>
    public int Index { get; init; }
    /// <summary>The item: a prompt, an object, or for a hashtable of lists a hashtable of this row's values.</summary>
    public object? Value { get; init; }
    /// <summary>A copy of the input's last item that only makes the shares the same length (-ApplyPadding): drop it when gathering.</summary>
    public bool IsPadding { get; init; }
    public int ProcessIndex { get; init; }
    public int NumProcesses { get; init; }

    public override string ToString() => Value?.ToString() ?? "";
}

/// <summary>
/// accelerate's split_between_processes: this process's contiguous share of the input, the first N mod P processes
/// taking one more; -ApplyPadding repeats the input's last item so every process has the same count, marked IsPadding.
/// </summary>
[Cmdlet(VerbsCommon.Split, "Prompt")]
[Alias("Split-Prompts")]
[OutputType(typeof(PromptShareItem))]
public sealed class SplitPromptCommand : DiffusionCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [AllowEmptyCollection] [AllowNull] [AllowEmptyString]
    public object?[] InputObject { get; set; } = [];

    /// <summary>This process's rank; default: from the launcher's variables (see Get-DiffusionRank), else 0.</summary>
    [Parameter] [ValidateRange(0, int.MaxValue)] public int? ProcessIndex { get; set; }

    /// <summary>How many processes share the input; default: from the launcher's variables, else 1.</summary>
    [Parameter] [ValidateRange(1, int.MaxValue)] public int? NumProcesses { get; set; }

    [Parameter] public SwitchParameter ApplyPadding { get; set; }

    private readonly List<object?> _items = new();

    protected override void ProcessRecord()
    {
        if (InputObject is null) _items.Add(null);
        else _items.AddRange(InputObject);
    }

    protected override void EndProcessing()
    {
        var rank = Run(() => RankEnvironment.FromProcess(ProcessIndex, NumProcesses));
        var rows = _items.Count == 1 && Unwrap(_items[0]) is IDictionary table ? Rows(table) : _items;
        var share = Run(() => PromptSplitter.Share(rows.Count, rank.ProcessRank, rank.WorldSize, ApplyPadding));
        foreach (var item in share.Items)
            WriteObject(new PromptShareItem
            {
                Index = item.Index, Value = rows[item.Index], IsPadding = item.IsPadding, ProcessIndex = rank.ProcessRank, NumProcesses = rank.WorldSize,
            });
    }

    /// <summary>A hashtable of lists as rows (row i holds item i of every list), all lists split alike as accelerate splits a dict.</summary>
    private List<object?> Rows(IDictionary table)
    {
        var lists = new List<KeyValuePair<object, IList>>();
        foreach (DictionaryEntry e in table) lists.Add(new(e.Key, AsList(e.Value)));
        int length = Run(() => PromptSplitter.CommonLength(lists.Select(l => new KeyValuePair<string, int>(l.Key.ToString() ?? "", l.Value.Count)).ToList()));
        var rows = new List<object?>(length);
        for (int i = 0; i < length; i++)
        {
            var row = new OrderedDictionary();
            foreach (var (key, list) in lists) row[key] = list[i];
            rows.Add(row);
        }
        return rows;
    }

    private static IList AsList(object? value) => Unwrap(value) switch
    {
        string s => new object[] { s },
        IList list => list,
        IEnumerable e => e.Cast<object?>().ToList(),
        var single => new[] { single },
    };

    private static object? Unwrap(object? value) => value is PSObject p ? p.BaseObject : value;
}

/// <summary>Shows this process's rank, world size and local rank, which launcher variables they came from, and the default device.</summary>
[Cmdlet(VerbsCommon.Get, "DiffusionRank")]
[OutputType(typeof(RankInfo))]
public sealed class GetDiffusionRankCommand : DiffusionCmdlet
{
    protected override void EndProcessing()
    {
        var rank = Run(() => RankEnvironment.FromProcess());
        var backend = Run(() => Diffusion.Engine.TorchBackend.EnsureLoaded());
        WriteObject(rank.WithDevice(backend.CudaDeviceCount));
    }
}
