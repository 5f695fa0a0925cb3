namespace Diffusion.Engine.Models;

/// <summary>
/// Checks of config values that cannot work (zero channels, groups that do not divide the channels, ...), so a bad
/// config.json fails at load with the file, the key and the rule instead of a DivideByZero or an index error later.
/// </summary>
internal sealed class ConfigRules(string modelName, string configPath)
{
    public DiffusionException Invalid(string key, object? value, string rule) =>
        new("ModelConfigValueInvalid", DiffusionErrorKind.InvalidData,
            $"The {modelName} config '{configPath}' sets '{key}' to {value}, which cannot work: {rule}. Restore the model's original config.json.",
            configPath);

    public void Positive(string key, long value)
    {
        if (value <= 0) throw Invalid(key, value, "it must be at least 1");
    }

    public void Positive(string key, IEnumerable<int> values)
    {
        foreach (var v in values) if (v <= 0) throw Invalid(key, v, "every entry must be at least 1");
    }

    /// <summary><paramref name="divisor"/> (e.g. norm_num_groups, heads) must divide every channel count.</summary>
    public void Divides(string divisorKey, long divisor, string channelsKey, IEnumerable<long> channels)
    {
        Positive(divisorKey, divisor);
        foreach (var c in channels)
            if (c % divisor != 0) throw Invalid(divisorKey, divisor, $"it must divide every {channelsKey}, but {c} is not a multiple of it");
    }

    public void FiniteNonZero(string key, double value)
    {
        if (value == 0 || !double.IsFinite(value)) throw Invalid(key, value, "it must be a finite number other than 0");
    }
}
