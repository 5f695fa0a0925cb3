using System.Reflection;

namespace Diffusion.Engine.Models;

/// <summary>
/// The model classes this engine builds, each registered once beside its model (<c>*.Registration.cs</c>: a public
/// static <see cref="ModelClass"/> property of the model's class), found here by reflection, so a new model class is
/// its files and nothing else. A class model_index.json names resolves here; anything else (tokenizers, schedulers) is
/// not a model.
/// </summary>
public static class ModelClasses
{
    public static IReadOnlyList<ModelClass> All { get; } = typeof(ModelClasses).Assembly.GetTypes()
        .Where(t => t.Namespace == typeof(ModelClasses).Namespace && t.IsClass)
        .SelectMany(t => t.GetProperties(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly))
        .Where(p => p.PropertyType == typeof(ModelClass))
        .Select(p => (ModelClass)p.GetValue(null)!)
        .OrderBy(m => m.ClassName, StringComparer.Ordinal)
        .ToList();

    private static readonly Dictionary<string, ModelClass> ByName = All.ToDictionary(m => m.ClassName, StringComparer.Ordinal);

    /// <summary>The class names, as model_index.json gives them.</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(m => m.ClassName).ToArray();

    /// <summary>The registration of <paramref name="className"/>, or null when it is not a model class of this engine.</summary>
    public static ModelClass? Find(string className) => ByName.GetValueOrDefault(className);

    /// <summary>Whether <paramref name="className"/> is a model this engine builds (rather than a tokenizer, a scheduler or unknown).</summary>
    public static bool IsModel(string className) => ByName.ContainsKey(className);

    /// <summary>The registration of <paramref name="className"/>; an unknown class is an error naming the supported ones.</summary>
    /// <param name="component">The component it is for (e.g. "unet"), named in the error.</param>
    public static ModelClass For(string className, string? component = null) => Find(className)
        ?? throw new DiffusionException("UnknownComponentClass", DiffusionErrorKind.NotSupported,
            $"{(component is null ? "The model" : $"The component '{component}'")} is a {className}, which this module cannot load. " +
            $"Supported models: {string.Join(", ", Names)}.", component ?? className);
}
