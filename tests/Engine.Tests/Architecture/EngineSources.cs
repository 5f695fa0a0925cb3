using System.Text.RegularExpressions;

namespace Diffusion.Engine.Tests.Architecture;

/// <summary>The engine's C# sources as the architecture tests read them: code only, comments blanked out.</summary>
internal static class EngineSources
{
    /// <summary>The repository root: the folder holding Diffusion.psd1 and engine/, found by walking up from the test binary.</summary>
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Diffusion.psd1")) && Directory.Exists(Path.Combine(dir.FullName, "engine")))
                return dir.FullName;
        throw new DirectoryNotFoundException($"No folder above '{AppContext.BaseDirectory}' holds Diffusion.psd1 and engine/ (the repository root).");
    }

    private static readonly Regex Comment = new(@"/\*.*?\*/|(?<!:)//[^\n]*", RegexOptions.Singleline | RegexOptions.Compiled);

    /// <summary>
    /// Source without // comments (doc comments included) and /* */ blocks, whose line breaks are kept so that line
    /// numbers still hold: prose may name what code must not. A // after a colon (a URL in a string) is code.
    /// </summary>
    public static string WithoutComments(string code) =>
        Comment.Replace(code, m => new string('\n', m.Value.Count(c => c == '\n')));

    /// <summary>The C# sources under engine/<paramref name="underEngine"/> (not build outputs): relative path and code without comments.</summary>
    public static IEnumerable<(string Path, string Code)> Code(string underEngine = "")
    {
        var root = RepoRoot();
        foreach (var file in Directory.EnumerateFiles(Path.Combine(root, "engine", underEngine), "*.cs", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(root, file).Replace('\\', '/');
            if (relative.Contains("/obj/") || relative.Contains("/bin/")) continue;
            yield return (relative, WithoutComments(File.ReadAllText(file)));
        }
    }
}
