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
    private static readonly HashSet<string> ModelFileExtensions = new(StringComparer.OrdinalIgnoreCase) { ".json", ".safetensors", ".txt", ".model" };

    public string Path { get; }
    public string ClassName { get; }
    public IReadOnlyDictionary<string, ComponentSpec> Components { get; }
    /// <summary>The pipeline's registered settings in model_index.json (e.g. SDXL's force_zeros_for_empty_prompt), read once with the rest.</summary>
    private readonly JsonElement _index;

    private DiffusersFolder(string path, string className, Dictionary<string, ComponentSpec> components, JsonElement index)
    {
        Path = path; ClassName = className; Components = components; _index = index;
    }

    /// <summary>A boolean setting of model_index.json; <paramref name="absent"/> when it is not there (the pipeline class's default).</summary>
    public bool Flag(string name, bool absent) =>
        _index.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : absent;

    public static DiffusersFolder Open(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(full))
            throw new DiffusionException("ModelFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The model folder '{full}' does not exist. Give the path of a diffusers model folder (the one holding model_index.json).", full);
        var index = System.IO.Path.Combine(full, "model_index.json");
        IO.RegularFile.Require(index);
        if (!File.Exists(index))
            throw new DiffusionException("ModelIndexNotFound", DiffusionErrorKind.ObjectNotFound,
                $"'{full}' has no model_index.json, so it is not a diffusers pipeline folder. Point -Path at the folder that holds model_index.json " +
                "(a single-file checkpoint is a .safetensors file: give the file as -Path and its model's diffusers folder as -Config).", index);
        JsonElement root;
        try { root = JsonDocument.Parse(IO.RegularFile.ReadAllText(index)).RootElement.Clone(); }
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
            RequirePlainName(index, p.Name);
            components[p.Name] = new ComponentSpec(p.Name, lib.GetString()!, type.GetString()!);
        }
        return new DiffusersFolder(full, cls.GetString()!, components, root);
    }

    /// <summary>
    /// A component name is the name of a folder directly inside the model folder: nothing outside the model folder is
    /// read because model_index.json says so (no "../other-model/vae", no absolute path, no separators).
    /// </summary>
    private static void RequirePlainName(string index, string name)
    {
        bool plain = name.Length > 0 && name is not "." and not ".."
            && name.IndexOfAny(['/', '\\', ':', '\0']) < 0 && !System.IO.Path.IsPathRooted(name)
            && name == name.Trim() && System.IO.Path.GetFileName(name) == name;
        if (!plain)
            throw new DiffusionException("ModelIndexComponentNameInvalid", DiffusionErrorKind.InvalidData,
                $"'{index}' declares a component named '{name}', which is not a plain folder name. A component must be a folder directly inside the " +
                "model folder (such as unet or vae); nothing outside the model folder is loaded because model_index.json says so. " +
                "Fix model_index.json (name the folder only) or download the model again.", index);
    }

    /// <summary>
    /// The folder of a declared component, checked to exist. Its model files (*.json, *.safetensors, *.txt, *.model) are
    /// checked to be regular files or links to them: a FIFO or device would hang whichever loader opens it.
    /// </summary>
    public string ComponentPath(string name)
    {
        if (!Components.ContainsKey(name))
            throw new DiffusionException("ComponentNotDeclared", DiffusionErrorKind.ObjectNotFound,
                $"The {ClassName} in '{Path}' has no component '{name}'. Its components are: {string.Join(", ", Components.Keys)}.", name);
        var dir = System.IO.Path.Combine(Path, name);
        if (!Directory.Exists(dir))
            throw new DiffusionException("ComponentFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"model_index.json in '{Path}' declares '{name}' but the folder '{dir}' is missing. The download is incomplete: fetch the '{name}' folder.", dir);
        foreach (var file in Directory.EnumerateFileSystemEntries(dir))
            if (ModelFileExtensions.Contains(System.IO.Path.GetExtension(file)))
                IO.RegularFile.Require(file);
        return dir;
    }

    /// <summary>
    /// A component's config.json, checked as <see cref="ComponentFile"/> checks it, when the component is declared and
    /// the file is there; null otherwise (a pipeline without that component, or a partial snapshot without its folder),
    /// where callers take diffusers' default.
    /// </summary>
    public string? OptionalConfig(string name) =>
        Components.ContainsKey(name) && File.Exists(System.IO.Path.Combine(Path, name, "config.json")) ? ComponentFile(name, "config.json") : null;

    /// <summary>A file inside a component folder, checked to exist.</summary>
    public string ComponentFile(string name, string file)
    {
        var p = System.IO.Path.Combine(ComponentPath(name), file);
        IO.RegularFile.Require(p);
        if (!File.Exists(p))
            throw new DiffusionException("ComponentFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The component '{name}' in '{Path}' lacks '{file}'. The download is incomplete: fetch '{name}/{file}'.", p);
        return p;
    }
}
