using System.Globalization;

namespace Diffusion.Engine.Devices;

/// <summary>
/// Memory sizes as users write them, with accelerate's rules (convert_file_size_to_int): a whole number is bytes; a
/// string ends in a unit: GB, MB, KB are powers of 10 and GiB, MiB, KiB powers of 2 (case-insensitive), and the number
/// before it may have a fraction ("1.5GB"). As in accelerate, a decimal unit written with a lowercase final 'b' means
/// bits ("8Gb" is 1 GB). A string of digits alone is taken as bytes too.
/// </summary>
public static class MemorySize
{
    private static readonly (string Suffix, double Factor)[] BinaryUnits =
        [("GIB", 1L << 30), ("MIB", 1L << 20), ("KIB", 1L << 10)];
    private static readonly (string Suffix, double Factor)[] DecimalUnits =
        [("GB", 1e9), ("MB", 1e6), ("KB", 1e3)];

    /// <summary>Bytes from a number (integral, not negative) or a string with a unit; <paramref name="what"/> names it in errors.</summary>
    public static long Parse(object? value, string what = "-MaxMemory")
    {
        switch (value)
        {
            case null: throw Invalid(value, what, "it is empty");
            case string s: return ParseText(s, what);
            case long l: return l >= 0 ? l : throw Invalid(value, what, "it is negative");
            case int i: return i >= 0 ? i : throw Invalid(value, what, "it is negative");
            case uint or ulong or short or ushort or byte or sbyte:
                var whole = Convert.ToDecimal(value, CultureInfo.InvariantCulture);
                return whole >= 0 && whole <= long.MaxValue ? (long)whole : throw Invalid(value, what, "it is out of range");
            case double or float or decimal:
                var d = Convert.ToDecimal(value, CultureInfo.InvariantCulture);
                if (d < 0) throw Invalid(value, what, "it is negative");
                if (d != decimal.Truncate(d)) throw Invalid(value, what, "a number of bytes must be whole");
                return d <= long.MaxValue ? (long)d : throw Invalid(value, what, "it is out of range");
            default: throw Invalid(value, what, $"it is a {value.GetType().Name}, not a number or a string");
        }
    }

    private static long ParseText(string text, string what)
    {
        var s = text.Trim();
        if (s.Length > 0 && s.All(char.IsAsciiDigit))
            return long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes) ? bytes : throw Invalid(text, what, "it is out of range");
        var upper = s.ToUpperInvariant();
        foreach (var (suffix, factor) in BinaryUnits)
            if (upper.EndsWith(suffix, StringComparison.Ordinal))
                return Scale(text, s[..^3], factor, bits: false, what);
        foreach (var (suffix, factor) in DecimalUnits)
            if (upper.EndsWith(suffix, StringComparison.Ordinal))
                return Scale(text, s[..^2], factor, bits: s.EndsWith('b'), what);
        throw Invalid(text, what, "it has no unit");
    }

    private static long Scale(string text, string number, double factor, bool bits, string what)
    {
        if (!double.TryParse(number.Trim(), NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingSign | NumberStyles.AllowExponent,
                CultureInfo.InvariantCulture, out var n) || double.IsNaN(n) || double.IsInfinity(n))
            throw Invalid(text, what, $"'{number.Trim()}' is not a number");
        if (n < 0) throw Invalid(text, what, "it is negative");
        var bytes = Math.Floor(n * factor); // int(float(x) * 10**9) truncates
        if (bytes >= long.MaxValue) throw Invalid(text, what, "it is out of range");
        var whole = (long)bytes;
        return bits ? whole / 8 : whole;
    }

    private static DiffusionException Invalid(object? value, string what, string why) =>
        new("InvalidMemorySize", DiffusionErrorKind.InvalidArgument,
            $"{what} value '{value}' is not a memory size ({why}). Give a number of bytes or a string with a unit: " +
            "'16GB', '512MB', '100KB' (powers of 10) or '16GiB', '512MiB', '100KiB' (powers of 2).", what);

    /// <summary>A size for people: binary units with two decimals (e.g. "15.26 GiB"), bytes below 1 KiB.</summary>
    public static string Format(long bytes)
    {
        if (bytes < 0) return "-" + Format(-bytes);
        if (bytes < 1024) return $"{bytes} B";
        string[] units = ["KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        int u = -1;
        do { v /= 1024; u++; } while (v >= 1024 && u < units.Length - 1);
        return v.ToString("0.00", CultureInfo.InvariantCulture) + " " + units[u];
    }
}
