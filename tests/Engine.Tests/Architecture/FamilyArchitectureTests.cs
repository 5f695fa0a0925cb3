using System.Reflection;
using Diffusion.Engine.Pipelines;
using Xunit;

namespace Diffusion.Engine.Tests.Architecture;

/// <summary>
/// One family, one place: outside engine/Families no engine file names a family (its registered name or pipeline class
/// as a string, its type) or switches on a family enum. The forbidden names come from the registry, so a new family is
/// covered without editing this test.
/// </summary>
public class FamilyArchitectureTests
{
    private static IEnumerable<string> ForbiddenNames()
    {
        foreach (var family in PipelineFamilies.All)
        {
            yield return $"\"{family.Name}\"";
            yield return family.GetType().Name;
            foreach (var a in family.GetType().GetCustomAttributes<PipelineFamilyAttribute>())
                yield return $"\"{a.PipelineClassName}\"";
        }
        yield return "ModelFamily";
    }

    [Fact]
    public void The_registry_finds_every_family_by_its_pipeline_class()
    {
        Assert.Equal(["FluxPipeline", "StableDiffusionPipeline", "StableDiffusionXLPipeline"], PipelineFamilies.PipelineClassNames);
        Assert.Equal("Flux", PipelineFamilies.ForPipelineClass("FluxPipeline", "x").Name);
        Assert.Equal("StableDiffusionXL", PipelineFamilies.ByName("stablediffusionxl")!.Name);
        var e = Assert.Throws<DiffusionException>(() => PipelineFamilies.ForPipelineClass("KandinskyPipeline", "/models/k"));
        Assert.Equal("UnknownPipelineClass", e.ErrorId);
        Assert.Contains("FluxPipeline (FLUX.1 dev/schnell)", e.Message);
    }

    [Fact]
    public void No_engine_file_outside_the_family_files_names_a_family()
    {
        var forbidden = ForbiddenNames().ToList();
        Assert.Contains("\"StableDiffusionPipeline\"", forbidden); // the registry was read
        var offences = EngineSources.Code()
            .Where(s => !s.Path.StartsWith("engine/Families/", StringComparison.Ordinal))
            .SelectMany(s => forbidden.Where(name => s.Code.Contains(name, StringComparison.Ordinal)).Select(name => $"{s.Path}: {name}"))
            .ToList();
        Assert.True(offences.Count == 0, "Family names outside engine/Families:\n" + string.Join("\n", offences));
    }

    [Fact]
    public void The_scan_sees_a_family_name_in_code_but_not_in_comments()
    {
        Assert.Contains("\"FluxPipeline\"", EngineSources.WithoutComments("var x = \"FluxPipeline\"; // a FluxPipeline folder"));
        Assert.DoesNotContain("FluxPipeline folder", EngineSources.WithoutComments("var x = 1; // a FluxPipeline folder"));
        Assert.Contains("https://huggingface.co", EngineSources.WithoutComments("var u = \"https://huggingface.co\";"));
    }
}
