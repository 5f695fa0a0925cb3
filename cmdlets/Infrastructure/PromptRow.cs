using System.Collections;
using System.Globalization;
using System.Management.Automation;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// A prompt's own generation values, read by property name from a piped row (an Import-Csv row, a hashtable, a
/// custom object, a Split-Prompt share). Null where the row has no such property or an empty value: the command
/// line's value (or the default) applies then.
/// </summary>
internal sealed record PromptRow
{
    public static readonly PromptRow None = new();

    /// <summary>The row's own index in the whole job (a Split-Prompt share's Index, or an Index column).</summary>
    public int? Index { get; init; }
    public string? NegativePrompt { get; init; }
    public long? Seed { get; init; }
    public int? Steps { get; init; }
    public double? GuidanceScale { get; init; }
    public int? Width { get; init; }
    public int? Height { get; init; }
    public string? OutputPath { get; init; }


    public readonly record struct ReadResult(string? Prompt, PromptRow Row, ErrorRecord? Error);

    /// <summary>
    /// Reads one piped item. A string or other scalar is the prompt itself; an object needs a Prompt property (or key).
    /// A value that does not convert, or is out of range, is an error for this row (its target the row).
    /// </summary>
    public static ReadResult Read(object? item, int position)
    {
        var value = Unwrap(item);
        if (value is null) return new(null, None, null);
        if (value is string s) return new(s, None, null);
        if (value is PromptShareItem share)
        {
            var inner = Read(share.Value, position);
            return inner.Error is not null ? inner : inner with { Row = inner.Row with { Index = inner.Row.Index ?? share.Index } };
        }
        if (value.GetType().IsPrimitive || value is decimal) return new(Convert.ToString(value, CultureInfo.InvariantCulture), None, null);

        var get = Getter(item!, value);
        if (!get.Has("Prompt"))
            return new(null, None, DiffusionCmdlet.ArgumentError("PromptPropertyMissing",
                $"Input #{position} is a {TypeName(item!, value)} without a Prompt property{get.Describe()}, so no image is made for it. " +
                "Pipe strings, or objects with a Prompt property (an Import-Csv file with a Prompt column, @{Prompt='...'}, [pscustomobject]@{Prompt='...'}).", item));
        try
        {
            var prompt = get.Value("Prompt") is { } p ? Convert.ToString(p, CultureInfo.InvariantCulture) : null;
            var row = new PromptRow
            {
                Index = Number<int>(get, "Index", position, 0, int.MaxValue),
                NegativePrompt = Text(get, "NegativePrompt"),
                Seed = Number<long>(get, "Seed", position, long.MinValue, long.MaxValue),
                Steps = Number<int>(get, "Steps", position, 1, 1000),
                GuidanceScale = Number<double>(get, "GuidanceScale", position, 0.0, 100.0),
                Width = Number<int>(get, "Width", position, 1, int.MaxValue),
                Height = Number<int>(get, "Height", position, 1, int.MaxValue),
                OutputPath = Text(get, "OutputPath"),
            };
            return new(prompt, row, null);
        }
        catch (RowValueException e)
        {
            return new(null, None, DiffusionCmdlet.ArgumentError("PromptRowValueInvalid", e.Message, item));
        }
    }

    public static object? Unwrap(object? value) => value is PSObject { BaseObject: not PSCustomObject } p ? p.BaseObject : value;

    private static string? Text(RowGetter get, string name) =>
        get.Value(name) is { } v && Convert.ToString(v, CultureInfo.InvariantCulture) is { Length: > 0 } text ? text : null;

    private static T? Number<T>(RowGetter get, string name, int position, T min, T max) where T : struct, IComparable<T>
    {
        var raw = get.Value(name);
        if (raw is null || raw is string { Length: 0 } || (raw is string text && string.IsNullOrWhiteSpace(text))) return null;
        T number;
        try { number = (T)LanguagePrimitives.ConvertTo(raw is string t ? t.Trim() : raw, typeof(T), CultureInfo.InvariantCulture); }
        catch (PSInvalidCastException)
        {
            throw new RowValueException($"Row #{position}: {name} '{raw}' is not a {(typeof(T) == typeof(double) ? "number" : "whole number")}, so no image is made for this row. Fix the value, or leave it empty for the command line's value.");
        }
        if (number.CompareTo(min) < 0 || number.CompareTo(max) > 0)
            throw new RowValueException($"Row #{position}: {name} {raw} is outside {min}..{max}, so no image is made for this row.");
        return number;
    }

    private static string TypeName(object item, object value) =>
        value is PSCustomObject || (item is PSObject { BaseObject: PSCustomObject }) ? "PSCustomObject" : value.GetType().Name;

    private sealed class RowValueException(string message) : Exception(message);

    private static RowGetter Getter(object item, object value) => value is IDictionary d ? new DictionaryRow(d) : new ObjectRow(PSObject.AsPSObject(item));

    private abstract class RowGetter
    {
        public abstract bool Has(string name);
        public abstract object? Value(string name);
        protected abstract IEnumerable<string> Names();

        public string Describe()
        {
            var names = Names().Take(8).ToList();
            return names.Count == 0 ? "" : $" (it has: {string.Join(", ", names)})";
        }

        protected static object? Plain(object? v) => v is PSObject p ? p.BaseObject : v;
    }

    private sealed class DictionaryRow(IDictionary d) : RowGetter
    {
        private object? Key(string name) => d.Keys.Cast<object>().FirstOrDefault(k => string.Equals(k?.ToString(), name, StringComparison.OrdinalIgnoreCase));
        public override bool Has(string name) => Key(name) is not null;
        public override object? Value(string name) => Key(name) is { } k ? Plain(d[k]) : null;
        protected override IEnumerable<string> Names() => d.Keys.Cast<object>().Select(k => k?.ToString() ?? "");
    }

    private sealed class ObjectRow(PSObject o) : RowGetter
    {
        public override bool Has(string name) => o.Properties[name] is not null;
        public override object? Value(string name)
        {
            try { return Plain(o.Properties[name]?.Value); }
            catch (GetValueException) { return null; }
        }
        protected override IEnumerable<string> Names() => o.Properties.Select(p => p.Name);
    }
}
