using System.Text.Json;

namespace Diffusion.Engine.Tokenizers;

/// <summary>Finding and reading the files of a tokenizer folder, with errors that say which file is wrong.</summary>
internal static class TokenizerFiles
{
    public static void RequireFolder(string dir, string kind)
    {
        if (!Directory.Exists(dir))
            throw new DiffusionException("TokenizerFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The {kind} tokenizer folder '{dir}' does not exist. Check the model folder, or download the model again.", dir);
    }

    public static string Require(string dir, string file, string kind)
    {
        var path = Path.Combine(dir, file);
        IO.RegularFile.Require(path);
        if (!File.Exists(path))
            throw new DiffusionException("TokenizerFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The {kind} tokenizer in '{dir}' has no '{file}'. Download the model's tokenizer files again.", path);
        return path;
    }

    public static JsonElement ReadJson(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(IO.RegularFile.ReadAllBytes(path));
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw Invalid(path, $"it is not valid JSON ({e.Message})", e);
        }
    }

    public static DiffusionException Invalid(string path, string why, Exception? inner = null) =>
        new("TokenizerFileInvalid", DiffusionErrorKind.InvalidData,
            $"The tokenizer file '{path}' cannot be read: {why}. Download the model's tokenizer files again.", path, inner);

    /// <summary>
    /// A special token's text as transformers reads it: tokenizer_config.json first, then special_tokens_map.json
    /// (either as a plain string or as an AddedToken object with "content"), else <paramref name="fallback"/>.
    /// </summary>
    public static string SpecialToken(string dir, string name, string fallback)
    {
        foreach (var file in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            var path = Path.Combine(dir, file);
            if (!File.Exists(path)) continue;
            var root = ReadJson(path);
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty(name, out var value)) continue;
            if (value.ValueKind == JsonValueKind.String) return value.GetString()!;
            if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out var content)
                && content.ValueKind == JsonValueKind.String)
                return content.GetString()!;
        }
        return fallback;
    }
}
