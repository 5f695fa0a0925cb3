using System.Text.Json;
using Diffusion.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>Where the reference fixtures live: $env:DIFFUSION_FIXTURES, else ../shared/fixtures beside the repo.</summary>
public static class Fixtures
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        var env = Environment.GetEnvironmentVariable("DIFFUSION_FIXTURES");
        if (!string.IsNullOrEmpty(env)) return Path.GetFullPath(env);
        // Walk up from the test binary to the repo root (the folder holding Directory.Build.props), then ../shared/fixtures.
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Directory.Build.props"))) dir = dir.Parent;
        var repo = dir?.FullName ?? Directory.GetCurrentDirectory();
        return Path.GetFullPath(Path.Combine(repo, "..", "shared", "fixtures"));
    }

    public static string PathOf(params string[] parts)
    {
        var p = Path.Combine([Root, .. parts]);
        if (!File.Exists(p) && !Directory.Exists(p))
            throw new FileNotFoundException($"Fixture '{p}' is missing. Set DIFFUSION_FIXTURES or put shared/ beside the repo.", p);
        return p;
    }

    /// <summary>A fixture JSON file. Python's json writes bare -Infinity/Infinity/NaN (e.g. DPM-Solver's lambda_min_clipped); they are read as null.</summary>
    public static JsonElement Json(params string[] parts)
    {
        var text = System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(PathOf(parts)), @"(?<=[:\[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])", "null");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>All tensors of a reference file, on CPU.</summary>
    public static Dictionary<string, Tensor> Tensors(string file)
    {
        using var f = SafeTensorsFile.Open(PathOf(file));
        return f.Tensors.Keys.ToDictionary(k => k, k => f.Load(k));
    }

    /// <summary>Asserts |actual - expected| &lt;= atol + rtol * |expected| elementwise, reporting the worst element.</summary>
    public static void AssertClose(Tensor expected, Tensor actual, double rtol, double atol, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}] != expected [{string.Join(",", expected.shape)}]");
        using var e = expected.to(ScalarType.Float64, CPU);
        using var a = actual.to(ScalarType.Float64, CPU);
        using var diff = (a - e).abs();
        using var bound = e.abs() * rtol + atol;
        using var excess = diff - bound;
        double worst = excess.max().item<double>();
        double maxAbs = diff.max().item<double>();
        Assert.True(worst <= 0, $"{what}: max |diff| {maxAbs:g4} exceeds tolerance (rtol {rtol}, atol {atol}) by {worst:g4}");
    }
}
