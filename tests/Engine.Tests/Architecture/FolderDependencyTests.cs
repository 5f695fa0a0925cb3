using System.Text.RegularExpressions;
using Xunit;

namespace Diffusion.Engine.Tests.Architecture;

/// <summary>
/// The engine's folders (one namespace each) depend on each other without cycles, so each can be read, tested and
/// replaced from the ones below it. A dependency is a <c>using Diffusion.Engine.X</c> or a name qualified by a sibling
/// namespace (<c>Sharding.DevicePlan</c>) in code, not in comments.
/// </summary>
public class FolderDependencyTests
{
    private static readonly Regex Namespace = new(@"^namespace Diffusion\.Engine(?:\.(\w+))?", RegexOptions.Multiline);
    private static readonly Regex Using = new(@"^using (?:static )?Diffusion\.Engine\.(\w+)", RegexOptions.Multiline);

    /// <summary>Folder namespace -> the folder namespaces its code names.</summary>
    internal static Dictionary<string, HashSet<string>> Dependencies()
    {
        var sources = EngineSources.Code().ToList();
        var folders = sources.Select(s => Namespace.Match(s.Code)).Where(m => m.Success && m.Groups[1].Success)
            .Select(m => m.Groups[1].Value).ToHashSet(StringComparer.Ordinal);
        var qualified = new Regex($@"(?<![\w.])({string.Join("|", folders)})\.[A-Z]");
        var deps = folders.ToDictionary(f => f, _ => new HashSet<string>(StringComparer.Ordinal));
        foreach (var (path, code) in sources)
        {
            var m = Namespace.Match(code);
            if (!m.Success || !m.Groups[1].Success) continue;
            var from = m.Groups[1].Value;
            foreach (Match u in Using.Matches(code)) if (folders.Contains(u.Groups[1].Value)) deps[from].Add(u.Groups[1].Value);
            foreach (Match q in qualified.Matches(code)) deps[from].Add(q.Groups[1].Value);
            deps[from].Remove(from);
        }
        return deps;
    }

    /// <summary>The groups of folders that reach each other (strongly connected, more than one folder), each sorted.</summary>
    internal static List<string> Cycles(Dictionary<string, HashSet<string>> deps)
    {
        bool Reaches(string from, string to)
        {
            var seen = new HashSet<string>(); var todo = new Stack<string>([from]);
            while (todo.Count > 0)
                foreach (var next in deps.GetValueOrDefault(todo.Pop()) ?? [])
                {
                    if (next == to) return true;
                    if (seen.Add(next)) todo.Push(next);
                }
            return false;
        }
        var groups = new List<string>(); var placed = new HashSet<string>();
        foreach (var a in deps.Keys.Order(StringComparer.Ordinal))
        {
            if (placed.Contains(a)) continue;
            var group = deps.Keys.Where(b => b == a || (Reaches(a, b) && Reaches(b, a))).Order(StringComparer.Ordinal).ToList();
            placed.UnionWith(group);
            if (group.Count > 1) groups.Add(string.Join(" <-> ", group));
        }
        return groups;
    }

    [Fact]
    public void Engine_folders_depend_on_each_other_without_cycles()
    {
        var deps = Dependencies();
        Assert.Contains("Pipelines", deps.Keys);
        Assert.Contains("Models", deps["Pipelines"]); // the scan sees dependencies at all
        var cycles = Cycles(deps);
        Assert.True(cycles.Count == 0, "Folders in engine/ that depend on each other (directly or through others):\n" + string.Join("\n", cycles.Take(20)));
    }

    [Fact]
    public void The_cycle_search_finds_a_cycle_and_only_once()
    {
        var deps = new Dictionary<string, HashSet<string>>
        {
            ["A"] = ["B"], ["B"] = ["C"], ["C"] = ["A"], ["D"] = ["A"],
        };
        Assert.Equal(["A <-> B <-> C"], Cycles(deps));
        deps["C"].Clear();
        Assert.Empty(Cycles(deps));
    }
}
