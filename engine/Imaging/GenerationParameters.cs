using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Diffusion.Engine.Imaging;

/// <summary>
/// How an image was made; written into its PNG as text chunks (an A1111-style "parameters" text, plus one chunk
/// per field) and read back by <see cref="DiffusionImage.ReadParameters"/>.
/// </summary>
public sealed class GenerationParameters
{
    public string Prompt { get; set; } = "";
    public string? NegativePrompt { get; set; }
    public int Steps { get; set; }
    /// <summary>The scheduler (A1111's "Sampler"), e.g. "PNDMScheduler" or "Euler a".</summary>
    public string Scheduler { get; set; } = "";
    public double GuidanceScale { get; set; }
    /// <summary>diffusers' guidance_rescale; 0 (none) is not written.</summary>
    public double GuidanceRescale { get; set; }
    public long Seed { get; set; }
    public int Width { get; set; }
    public int Height { get; set; }
    public string Model { get; set; } = "";

    /// <summary>The PNG text keys of the per-field chunks every image has, in the order they are written.</summary>
    internal static readonly string[] FieldKeys =
        ["prompt", "negative_prompt", "steps", "scheduler", "guidance_scale", "seed", "width", "height", "model"];

    /// <summary>The key of the chunk written only when the run used guidance_rescale.</summary>
    internal const string GuidanceRescaleKey = "guidance_rescale";

    /// <summary>Each field as PNG text, keyed by <see cref="FieldKeys"/> (numbers in invariant culture).</summary>
    internal IEnumerable<KeyValuePair<string, string>> ToFields()
    {
        var c = CultureInfo.InvariantCulture;
        yield return new("prompt", Prompt);
        yield return new("negative_prompt", NegativePrompt ?? "");
        yield return new("steps", Steps.ToString(c));
        yield return new("scheduler", Scheduler);
        yield return new("guidance_scale", FormatGuidance(GuidanceScale));
        if (GuidanceRescale != 0) yield return new(GuidanceRescaleKey, FormatGuidance(GuidanceRescale));
        yield return new("seed", Seed.ToString(c));
        yield return new("width", Width.ToString(c));
        yield return new("height", Height.ToString(c));
        yield return new("model", Model);
    }

    /// <summary>Rebuilds the parameters from per-field text chunks; null when any field is missing or not a number where one is needed.</summary>
    internal static GenerationParameters? FromFields(IReadOnlyDictionary<string, string> text)
    {
        if (!FieldKeys.All(text.ContainsKey)) return null;
        var c = CultureInfo.InvariantCulture;
        if (!int.TryParse(text["steps"], NumberStyles.Integer, c, out var steps)
            || !double.TryParse(text["guidance_scale"], NumberStyles.Float, c, out var guidance)
            || !long.TryParse(text["seed"], NumberStyles.Integer, c, out var seed)
            || !int.TryParse(text["width"], NumberStyles.Integer, c, out var width)
            || !int.TryParse(text["height"], NumberStyles.Integer, c, out var height))
            return null;
        double rescale = 0;
        if (text.TryGetValue(GuidanceRescaleKey, out var rescaleText) && !double.TryParse(rescaleText, NumberStyles.Float, c, out rescale))
            return null;
        return new GenerationParameters
        {
            Prompt = text["prompt"],
            NegativePrompt = text["negative_prompt"].Length == 0 ? null : text["negative_prompt"],
            Steps = steps, Scheduler = text["scheduler"], GuidanceScale = guidance, GuidanceRescale = rescale, Seed = seed,
            Width = width, Height = height, Model = text["model"],
        };
    }

    /// <summary>
    /// The AUTOMATIC1111 "parameters" text: the prompt, a "Negative prompt: " line when there is one, then
    /// "Steps: N, Sampler: X, CFG scale: G, [Guidance rescale: R, ]Seed: S, Size: WxH, Model: M" (values with ',', ':' or
    /// newlines JSON-quoted, as A1111 does; the rescale only when the run used one).
    /// </summary>
    public string ToA1111String()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder(Prompt);
        if (!string.IsNullOrEmpty(NegativePrompt)) sb.Append("\nNegative prompt: ").Append(NegativePrompt);
        sb.Append("\nSteps: ").Append(Steps.ToString(c))
          .Append(", Sampler: ").Append(Quote(Scheduler))
          .Append(", CFG scale: ").Append(FormatGuidance(GuidanceScale));
        if (GuidanceRescale != 0) sb.Append(", Guidance rescale: ").Append(FormatGuidance(GuidanceRescale));
        sb.Append(", Seed: ").Append(Seed.ToString(c))
          .Append(", Size: ").Append(Width.ToString(c)).Append('x').Append(Height.ToString(c))
          .Append(", Model: ").Append(Quote(Model));
        return sb.ToString();
    }

    /// <summary>Parses an A1111 "parameters" text (the format of <see cref="ToA1111String"/>); null when it has no settings line.</summary>
    public static GenerationParameters? ParseA1111(string text)
    {
        var lines = text.Replace("\r\n", "\n").Split('\n');
        var settings = ParseSettings(lines[^1]);
        if (lines.Length < 2 || !settings.ContainsKey("Steps")) return null;
        var promptLines = lines[..^1];
        int negativeAt = Array.FindIndex(promptLines, l => l.StartsWith("Negative prompt: ", StringComparison.Ordinal));
        var c = CultureInfo.InvariantCulture;
        var result = new GenerationParameters
        {
            Prompt = string.Join("\n", negativeAt < 0 ? promptLines : promptLines[..negativeAt]),
            NegativePrompt = negativeAt < 0 ? null : string.Join("\n", promptLines[negativeAt..])["Negative prompt: ".Length..],
            Scheduler = settings.GetValueOrDefault("Sampler", ""),
            Model = settings.GetValueOrDefault("Model", ""),
        };
        if (int.TryParse(settings["Steps"], NumberStyles.Integer, c, out var steps)) result.Steps = steps;
        if (double.TryParse(settings.GetValueOrDefault("CFG scale"), NumberStyles.Float, c, out var guidance)) result.GuidanceScale = guidance;
        if (double.TryParse(settings.GetValueOrDefault("Guidance rescale"), NumberStyles.Float, c, out var rescale)) result.GuidanceRescale = rescale;
        if (long.TryParse(settings.GetValueOrDefault("Seed"), NumberStyles.Integer, c, out var seed)) result.Seed = seed;
        var size = settings.GetValueOrDefault("Size", "").Split('x');
        if (size.Length == 2 && int.TryParse(size[0], NumberStyles.Integer, c, out var w) && int.TryParse(size[1], NumberStyles.Integer, c, out var h))
            (result.Width, result.Height) = (w, h);
        return result;
    }

    /// <summary>"Key: value, Key: \"quoted, value\"" into a dictionary.</summary>
    private static Dictionary<string, string> ParseSettings(string line)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        int i = 0;
        while (i < line.Length)
        {
            int colon = line.IndexOf(": ", i, StringComparison.Ordinal);
            if (colon < 0) break;
            var key = line[i..colon].Trim();
            i = colon + 2;
            string value;
            if (i < line.Length && line[i] == '"')
            {
                int end = i + 1;
                while (end < line.Length && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
                end = Math.Min(end + 1, line.Length);
                try { value = JsonSerializer.Deserialize<string>(line[i..end]) ?? ""; }
                catch (JsonException) { value = line[i..end]; }
                i = end;
            }
            else
            {
                int comma = line.IndexOf(", ", i, StringComparison.Ordinal);
                int end = comma < 0 ? line.Length : comma;
                value = line[i..end];
                i = end;
            }
            result[key] = value;
            if (i < line.Length && line[i] == ',') i += 2;
        }
        return result;
    }

    /// <summary>Python's repr of a float for the usual values: 7 -> "7.0", 7.5 -> "7.5".</summary>
    private static string FormatGuidance(double g) =>
        g == Math.Floor(g) && Math.Abs(g) < 1e15 ? g.ToString("0.0", CultureInfo.InvariantCulture) : g.ToString("R", CultureInfo.InvariantCulture);

    private static readonly JsonSerializerOptions QuoteOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A1111's quote(): values with ',', ':' or a newline become JSON strings.</summary>
    private static string Quote(string value) =>
        value.IndexOfAny([',', ':', '\n']) < 0 ? value : JsonSerializer.Serialize(value, QuoteOptions);
}
