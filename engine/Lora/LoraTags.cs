using System.Globalization;
using System.Text.RegularExpressions;

namespace Diffusion.Engine.Lora;

/// <summary>One <c>&lt;lora:name:scale&gt;</c> tag of a prompt: the adapter it names and its scale for that prompt.</summary>
public sealed record LoraTag(string Name, double Scale);

/// <summary>
/// A1111's prompt syntax for LoRAs: <c>&lt;lora:name&gt;</c> or <c>&lt;lora:name:scale&gt;</c> anywhere in a prompt.
/// The tags are taken out of the text the text encoders see (the whitespace and commas they leave tidied), and name
/// the adapters active for that prompt, each at the tag's scale; adapters not tagged are off for it.
/// </summary>
public static partial class LoraTags
{
    [GeneratedRegex(@"<lora:([^:>]*)(?::([^>]*))?>", RegexOptions.IgnoreCase)]
    private static partial Regex Tag();

    /// <summary>The prompt without its tags, and the tags (a name tagged twice: its scales add up, as A1111 sums them).</summary>
    public static (string Text, IReadOnlyList<LoraTag> Tags) Parse(string prompt)
    {
        var tags = new List<LoraTag>();
        var text = Tag().Replace(prompt, m =>
        {
            var name = m.Groups[1].Value.Trim();
            if (name.Length == 0)
                throw new DiffusionException("LoraTagInvalid", DiffusionErrorKind.InvalidArgument,
                    $"The prompt tag '{m.Value}' names no LoRA. Write <lora:name> or <lora:name:scale>, e.g. <lora:style:0.8>.", m.Value);
            double scale = 1.0;
            if (m.Groups[2].Success)
            {
                var raw = m.Groups[2].Value.Trim();
                if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out scale) || !double.IsFinite(scale))
                    throw new DiffusionException("LoraTagInvalid", DiffusionErrorKind.InvalidArgument,
                        $"The prompt tag '{m.Value}' has the scale '{raw}', which is not a number. Write <lora:{name}:0.8> " +
                        "(one scale for the whole LoRA: separate text-encoder and UNet scales are not supported).", m.Value);
            }
            var before = tags.FindIndex(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase));
            if (before >= 0) tags[before] = tags[before] with { Scale = tags[before].Scale + scale };
            else tags.Add(new LoraTag(name, scale));
            return " ";
        });
        return (tags.Count == 0 ? prompt : Tidy(text), tags);
    }

    /// <summary>"a cat ,  , in snow, " -> "a cat, in snow": runs of blanks become one, and commas the tags left empty go.</summary>
    private static string Tidy(string text)
    {
        text = Regex.Replace(text, @"[ \t]+", " ");
        text = Regex.Replace(text, @" ?,(?: ?,)+", ",");  // ", ," -> ","
        text = Regex.Replace(text, @" ,", ",");
        return text.Trim().Trim(',').Trim();
    }

    /// <summary>A key for a prompt's tag set (name=scale, sorted, names case-folded): prompts with equal keys can share a run.</summary>
    public static string Key(IReadOnlyList<LoraTag> tags) =>
        string.Join(";", tags.Select(t => $"{t.Name.ToLowerInvariant()}={t.Scale.ToString("R", CultureInfo.InvariantCulture)}").Order(StringComparer.Ordinal));
}
