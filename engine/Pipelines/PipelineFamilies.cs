using System.Reflection;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// The registered pipeline families, found once by their <see cref="PipelineFamilyAttribute"/>: a new family is a new
/// file, and nothing here or elsewhere lists them.
/// </summary>
internal static class PipelineFamilies
{
    private static readonly Lazy<(Dictionary<string, IPipelineFamily> ByClass, Dictionary<string, IPipelineFamily> ByName)> Registered = new(Discover);

    private static (Dictionary<string, IPipelineFamily>, Dictionary<string, IPipelineFamily>) Discover()
    {
        var byClass = new Dictionary<string, IPipelineFamily>(StringComparer.Ordinal);
        var byName = new Dictionary<string, IPipelineFamily>(StringComparer.OrdinalIgnoreCase);
        foreach (var type in typeof(PipelineFamilies).Assembly.GetTypes())
        {
            var classes = type.GetCustomAttributes<PipelineFamilyAttribute>(inherit: false).ToList();
            if (classes.Count == 0) continue;
            var family = (IPipelineFamily)Activator.CreateInstance(type, nonPublic: true)!;
            byName.Add(family.Name, family);
            foreach (var a in classes) byClass.Add(a.PipelineClassName, family);
        }
        return (byClass, byName);
    }

    /// <summary>The model_index.json class names a family is registered for, sorted.</summary>
    public static IReadOnlyList<string> PipelineClassNames => Registered.Value.ByClass.Keys.Order(StringComparer.Ordinal).ToList();

    public static IReadOnlyCollection<IPipelineFamily> All => Registered.Value.ByName.Values;

    /// <summary>The family of a model_index.json <c>_class_name</c>; an unknown class is refused naming the ones this module runs.</summary>
    public static IPipelineFamily ForPipelineClass(string className, string path) =>
        Registered.Value.ByClass.TryGetValue(className, out var family) ? family
        : throw new DiffusionException("UnknownPipelineClass", DiffusionErrorKind.NotSupported,
            $"'{path}' holds a {className}; this module runs {string.Join(", ", Registered.Value.ByClass.Select(kv => kv.Value.Description).Distinct())} folders.", path);

    /// <summary>A family by its recorded name (an exported tensor's metadata), or null when no family has that name.</summary>
    public static IPipelineFamily? ByName(string? name) =>
        name is not null && Registered.Value.ByName.TryGetValue(name, out var family) ? family : null;
}
