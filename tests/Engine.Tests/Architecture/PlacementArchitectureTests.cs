using System.Text.RegularExpressions;
using Xunit;

namespace Diffusion.Engine.Tests.Architecture;

/// <summary>
/// Placement across devices is done from outside the models (engine/Placement registers forward hooks on each placed
/// unit and on the model), so no model forward may know of it. These tests read the model sources (engine/Models,
/// blocks included) and the family stages that call the VAE, and fail when their code (comments left out) names a
/// placement type or hook, or moves tensors to a device taken from a placement.
/// </summary>
public class PlacementArchitectureTests
{
    /// <summary>
    /// The identifiers that mean placement: the engine's placement types (old and new), its namespaces, the hook
    /// registrations (only the placement may register hooks on a model's units), accelerate's io_same_device helper, and
    /// the old per-call scope's members that read a device from a placement (at.In, at.Move, at.Device, ExecutionDevice).
    /// </summary>
    public static readonly string[] Forbidden =
    [
        "UnitDispatch", "UnitScope", "UnitPlacement", "UnitHooks", "RootHooks", "PlacementSession", "PlacedModel", "PlacedUnit",
        "StreamedWeights", "OffloadGroup", "OffloadChain", "ShardedLoader", "ComponentPlacement", "ForwardHooks", "IForwardHooks",
        "Engine.Placement", "Engine.Sharding", "register_forward_pre_hook", "register_forward_hook", "ReturnTo", "ExecutionDevice",
        "at.In(", "at.Move(", "at.Device",
    ];

    /// <summary>"file:line: identifier" for each forbidden identifier in the code of <paramref name="source"/> (comments ignored).</summary>
    public static IEnumerable<string> Violations(string file, string source)
    {
        var lines = EngineSources.WithoutComments(source).Split('\n');
        for (int i = 0; i < lines.Length; i++)
            foreach (var word in Forbidden)
                if (Regex.IsMatch(lines[i], @"(?<![A-Za-z0-9_])" + Regex.Escape(word) + (char.IsLetterOrDigit(word[^1]) ? @"(?![A-Za-z0-9_])" : "")))
                    yield return $"{file}:{i + 1}: {word}";
    }

    private static string[] Sources(params string[] patterns)
    {
        var root = EngineSources.RepoRoot();
        return patterns.SelectMany(p =>
        {
            var dir = Path.Combine(root, Path.GetDirectoryName(p)!);
            return Directory.GetFiles(dir, Path.GetFileName(p), p.StartsWith("engine/Models/", StringComparison.Ordinal) ? SearchOption.AllDirectories : SearchOption.TopDirectoryOnly);
        }).Order(StringComparer.Ordinal).ToArray();
    }

    [Fact]
    public void ModelForwardsHoldNoPlacementCode()
    {
        var files = Sources("engine/Models/*.cs");
        Assert.Contains(files, f => f.EndsWith("FluxTransformer2DModel.cs", StringComparison.Ordinal));
        Assert.Contains(files, f => f.EndsWith(Path.Combine("Blocks", "UNet2DBlocks.cs"), StringComparison.Ordinal));
        var found = files.SelectMany(f => Violations(Path.GetRelativePath(EngineSources.RepoRoot(), f), File.ReadAllText(f))).ToList();
        Assert.True(found.Count == 0, "Model code refers to placement (placement is registered from outside, engine/Placement):\n" + string.Join("\n", found));
    }

    [Fact]
    public void FamilyFilesCallTheVaeWithoutPlacementCode()
    {
        var files = Sources("engine/Families/*.cs", "engine/Pipelines/ImageToImage.cs");
        Assert.Contains(files, f => f.EndsWith("ImageToImage.cs", StringComparison.Ordinal));
        var placementTypes = new[] { "UnitDispatch", "UnitScope", "UnitPlacement", "StreamedWeights", "PlacedModel", "ForwardHooks", "Engine.Placement", "at.In(" };
        var found = files.SelectMany(f => Violations(Path.GetRelativePath(EngineSources.RepoRoot(), f), File.ReadAllText(f)))
            .Where(v => placementTypes.Any(t => v.EndsWith(": " + t, StringComparison.Ordinal))).ToList();
        Assert.True(found.Count == 0, "Family code places the VAE itself:\n" + string.Join("\n", found));
    }

    /// <summary>The check itself: the old forward's placement code is caught; the word in a comment, or a look-alike name, is not.</summary>
    [Fact]
    public void TheCheckCatchesTheOldUnitDispatchForwardAndIgnoresComments()
    {
        const string old = """
            using Diffusion.Engine.Sharding;
            // Each unit call goes through UnitDispatch
            using (var at = UnitDispatch.Enter(block)) { at.Move(ref hidden, ref temb); hidden = block.forward(hidden, temb); }
            sample = conv_in.call(at.In(sample));
            return scope.MoveToOuter(UnitDispatch.ReturnTo(sample, input));
            """;
        var found = Violations("Old.cs", old).ToList();
        Assert.Contains("Old.cs:1: Engine.Sharding", found);
        Assert.Contains("Old.cs:3: UnitDispatch", found);
        Assert.Contains("Old.cs:3: at.Move(", found);
        Assert.Contains("Old.cs:4: at.In(", found);
        Assert.Contains("Old.cs:5: ReturnTo", found);
        Assert.DoesNotContain(found, v => v.StartsWith("Old.cs:2:", StringComparison.Ordinal));

        const string plain = """
            /// <remarks>hooks registered on the model (a device map's placement) run around it; UnitDispatch is gone.</remarks>
            var flat = format.call(h); // a UnitDispatchLike name in a comment
            var mat = ReturnToSender(h);
            """;
        Assert.Empty(Violations("Plain.cs", plain));
    }
}
