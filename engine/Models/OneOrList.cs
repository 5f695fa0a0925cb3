using System.Text.Json;
using System.Text.Json.Serialization;

namespace Diffusion.Engine.Models;

/// <summary>
/// A config.json value that is either one value for every block or a list with one value per block
/// (e.g. the UNet's <c>attention_head_dim: 8</c> or <c>[5, 10, 20, 20]</c>).
/// </summary>
[JsonConverter(typeof(OneOrListConverterFactory))]
public sealed class OneOrList<T>
{
    public T? Single { get; }
    public IReadOnlyList<T>? List { get; }

    public OneOrList(T single) => Single = single;
    public OneOrList(IReadOnlyList<T> list) => List = list;

    public static implicit operator OneOrList<T>(T single) => new(single);

    /// <summary>One value per block: the single value repeated, or the list, which must have <paramref name="count"/> entries.</summary>
    public T[] PerBlock(int count, string key, string configPath)
    {
        if (List is null) return Enumerable.Repeat(Single!, count).ToArray();
        if (List.Count != count)
            throw new DiffusionException("ConfigListLengthMismatch", DiffusionErrorKind.InvalidData,
                $"'{key}' in '{configPath}' lists {List.Count} values but the model has {count} blocks. " +
                "Give one value per entry of down_block_types (or a single value for all).", configPath);
        return List.ToArray();
    }

    public override string ToString() => List is null ? $"{Single}" : $"[{string.Join(", ", List)}]";
}

internal sealed class OneOrListConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert)
        => typeToConvert.IsGenericType && typeToConvert.GetGenericTypeDefinition() == typeof(OneOrList<>);

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options)
        => (JsonConverter)Activator.CreateInstance(typeof(OneOrListConverter<>).MakeGenericType(typeToConvert.GetGenericArguments()[0]))!;
}

internal sealed class OneOrListConverter<T> : JsonConverter<OneOrList<T>>
{
    public override OneOrList<T> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.StartArray)
            return new OneOrList<T>(JsonSerializer.Deserialize<T[]>(ref reader, options)!);
        return new OneOrList<T>(JsonSerializer.Deserialize<T>(ref reader, options)!);
    }

    public override void Write(Utf8JsonWriter writer, OneOrList<T> value, JsonSerializerOptions options)
    {
        if (value.List is not null) JsonSerializer.Serialize(writer, value.List, options);
        else JsonSerializer.Serialize(writer, value.Single, options);
    }
}
