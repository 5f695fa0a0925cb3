using System.Text.Json;

namespace Diffusion.Engine.Models;

/// <summary>Reads a model's config.json into its config class, with errors that say which file is wrong and how.</summary>
internal static class ModelConfigJson
{
    private static readonly JsonSerializerOptions Options = new() { ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    public static T Read<T>(string configJsonPath, string modelName)
    {
        configJsonPath = Path.GetFullPath(configJsonPath);
        if (!File.Exists(configJsonPath))
            throw new DiffusionException("ModelConfigNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The {modelName} config '{configJsonPath}' does not exist. A diffusers model folder has a config.json beside its weights; " +
                "check the path or download the model again.", configJsonPath);
        return Parse<T>(File.ReadAllText(configJsonPath), configJsonPath, modelName);
    }

    /// <summary>A config's JSON text (<paramref name="source"/>: where it came from, for messages) into its config class.</summary>
    public static T Parse<T>(string json, string source, string modelName)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Options)
                ?? throw new JsonException("the file holds null instead of an object");
        }
        catch (JsonException e)
        {
            var where = string.IsNullOrEmpty(e.Path) ? "" : $" at {e.Path}";
            throw new DiffusionException("ModelConfigInvalid", DiffusionErrorKind.InvalidData,
                $"The {modelName} config '{source}' is not valid{where}: {e.Message} Restore the file from the model's original download.",
                source, e);
        }
    }

    /// <summary>An error for a config key whose value this engine does not implement; <paramref name="detail"/> says what is supported.</summary>
    public static DiffusionException Unsupported(string modelName, string configPath, string key, object? value, string detail)
        => new("ModelConfigNotSupported", DiffusionErrorKind.NotSupported,
            $"The {modelName} config '{configPath}' sets '{key}' to {Show(value)}, which this engine does not support: {detail}",
            configPath);

    private static string Show(object? value) => value switch
    {
        null => "null",
        string s => $"\"{s}\"",
        bool b => b ? "true" : "false",
        _ => value.ToString() ?? "",
    };
}
