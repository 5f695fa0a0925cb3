using System.Text.Json;

namespace Diffusion.Engine.Pipelines;

/// <summary>One entry of model_index.json: the component's library and class (e.g. diffusers, UNet2DConditionModel).</summary>
public sealed record ComponentSpec(string Name, string Library, string ClassName);

/// <summary>
/// A model folder in diffusers' format: model_index.json names the pipeline class and its components, each in a
/// sub-folder with its own config.json (models) or scheduler_config.json (schedulers) or tokenizer files.
/// </summary>
public sealed class DiffusersFolder
{
    public string Path { get; }
    public string ClassName { get; }
    public IReadOnlyDictionary<string, ComponentSpec> Components { get; }

    private DiffusersFolder(string path, string className, Dictionary<string, ComponentSpec> components)
    {
        Path = path; ClassName = className; Components = components;
    }

    public static DiffusersFolder Open(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(full))
            throw new DiffusionException("ModelFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The model folder '{full}' does not exist. Give the path of a diffusers model folder (the one holding model_index.json).", full);
        var index = System.IO.Path.Combine(full, "model_index.json");
        if (!File.Exists(index))
            throw new DiffusionException("ModelIndexNotFound", DiffusionErrorKind.ObjectNotFound,
                $"'{full}' has no model_index.json, so it is not a diffusers pipeline folder. Point -Path at the folder that holds model_index.json " +
                "(for a single-file checkpoint, convert it with diffusers' save_pretrained first).", index);
        JsonElement root;
        try { root = JsonDocument.Parse(File.ReadAllText(index)).RootElement.Clone(); }
        catch (JsonException e)
        {
            throw new DiffusionException("ModelIndexInvalid", DiffusionErrorKind.InvalidData,
                $"'{index}' is not valid JSON ({e.Message}). Download the model again.", index, e);
        }
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("_class_name", out var cls) || cls.ValueKind != JsonValueKind.String)
            throw new DiffusionException("ModelIndexInvalid", DiffusionErrorKind.InvalidData,
                $"'{index}' has no \"_class_name\" naming the pipeline class.", index);
        var components = new Dictionary<string, ComponentSpec>(StringComparer.Ordinal);
        foreach (var p in root.EnumerateObject())
        {
            if (p.Name.StartsWith('_') || p.Value.ValueKind != JsonValueKind.Array || p.Value.GetArrayLength() != 2) continue;
            var lib = p.Value[0]; var type = p.Value[1];
            if (lib.ValueKind != JsonValueKind.String || type.ValueKind != JsonValueKind.String) continue; // [null, null]: absent
            components[p.Name] = new ComponentSpec(p.Name, lib.GetString()!, type.GetString()!);
        }
        return new DiffusersFolder(full, cls.GetString()!, components);
    }

    /// <summary>The folder of a declared component, checked to exist.</summary>
    public string ComponentPath(string name)
    {
        if (!Components.ContainsKey(name))
            throw new DiffusionException("ComponentNotDeclared", DiffusionErrorKind.ObjectNotFound,
                $"The {ClassName} in '{Path}' has no component '{name}'. Its components are: {string.Join(", ", Components.Keys)}.", name);
        var dir = System.IO.Path.Combine(Path, name);
        if (!Directory.Exists(dir))
            throw new DiffusionException("ComponentFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"model_index.json in '{Path}' declares '{name}' but the folder '{dir}' is missing. The download is incomplete: fetch the '{name}' folder.", dir);
        return dir;
    }

    /// <summary>A file inside a component folder, checked to exist.</summary>
    public string ComponentFile(string name, string file)
    {
        var p = System.IO.Path.Combine(ComponentPath(name), file);
        if (!File.Exists(p))
            throw new DiffusionException("ComponentFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The component '{name}' in '{Path}' lacks '{file}'. The download is incomplete: fetch '{name}/{file}'.", p);
        return p;
    }
}
