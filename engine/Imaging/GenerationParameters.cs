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
    /// <summary>The model's folder (or Hugging Face repo) name, as A1111's "Model".</summary>
    public string Model { get; set; } = "";
    /// <summary>A1111's sampler name ("PLMS", "Euler a", "DPM++ 2M Karras"); <see cref="Scheduler"/> when empty.</summary>
    public string Sampler { get; set; } = "";
    /// <summary>True for FLUX's distilled guidance (an input of the transformer), written as "Guidance" instead of "CFG scale".</summary>
    public bool DistilledGuidance { get; set; }
    /// <summary>A1111's "Model hash" (see <see cref="ModelHash"/>); null when the model has none.</summary>
    public string? ModelHash { get; set; }
    /// <summary>
    /// How many images shared the seed's generator (diffusers draws the noise of a whole batch from one generator), and
    /// this image's place in that batch: what replays it, with the same seed. 1 and 0 for an image made alone.
    /// </summary>
    public int BatchSize { get; set; } = 1;
    /// <summary>img2img: diffusers' strength (A1111's "Denoising strength"); null for text-to-image.</summary>
    public double? Strength { get; set; }
    /// <summary>The LoRAs the image was made with, as A1111's "Lora hashes" lists them ("name: hash, ..."), with the scale each had: "name: hash: scale".</summary>
    public string? Loras { get; set; }
    public int BatchPosition { get; set; }

    /// <summary>The sampler name written into the parameters text.</summary>
    public string SamplerName => string.IsNullOrEmpty(Sampler) ? Scheduler : Sampler;

    /// <summary>The A1111 parameters text (for Export-Csv and string conversion).</summary>
    public override string ToString() => ToA1111String();

    /// <summary>The PNG text keys of the per-field chunks every image has, in the order they are written.</summary>
    internal static readonly string[] FieldKeys =
        ["prompt", "negative_prompt", "steps", "scheduler", "guidance_scale", "seed", "width", "height", "model"];

    /// <summary>The key of the chunk written only when the run used guidance_rescale.</summary>
    internal const string GuidanceRescaleKey = "guidance_rescale";
    private const string SamplerKey = "sampler", DistilledKey = "guidance_distilled", ModelHashKey = "model_hash",
        BatchSizeKey = "batch_size", BatchPositionKey = "batch_position", StrengthKey = "strength", LorasKey = "loras";

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
        if (!string.IsNullOrEmpty(Sampler)) yield return new(SamplerKey, Sampler);
        if (DistilledGuidance) yield return new(DistilledKey, "true");
        if (!string.IsNullOrEmpty(ModelHash)) yield return new(ModelHashKey, ModelHash);
        if (BatchSize > 1)
        {
            yield return new(BatchSizeKey, BatchSize.ToString(c));
            yield return new(BatchPositionKey, BatchPosition.ToString(c));
        }
        if (Strength is double strength) yield return new(StrengthKey, FormatGuidance(strength));
        if (!string.IsNullOrEmpty(Loras)) yield return new(LorasKey, Loras);
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
        int batchSize = 1, batchPosition = 0;
        if (text.TryGetValue(BatchSizeKey, out var sizeText) && (!int.TryParse(sizeText, NumberStyles.Integer, c, out batchSize)
            || !text.TryGetValue(BatchPositionKey, out var positionText) || !int.TryParse(positionText, NumberStyles.Integer, c, out batchPosition)))
            return null;
        return new GenerationParameters
        {
            Prompt = text["prompt"],
            NegativePrompt = text["negative_prompt"].Length == 0 ? null : text["negative_prompt"],
            Steps = steps, Scheduler = text["scheduler"], GuidanceScale = guidance, GuidanceRescale = rescale, Seed = seed,
            Width = width, Height = height, Model = text["model"],
            Sampler = text.GetValueOrDefault(SamplerKey, ""), DistilledGuidance = text.ContainsKey(DistilledKey),
            ModelHash = text.GetValueOrDefault(ModelHashKey), BatchSize = batchSize, BatchPosition = batchPosition,
            Strength = text.TryGetValue(StrengthKey, out var strengthText) && double.TryParse(strengthText, NumberStyles.Float, c, out var strength) ? strength : null,
            Loras = text.GetValueOrDefault(LorasKey),
        };
    }

    /// <summary>
    /// The AUTOMATIC1111 "parameters" text: the prompt, a "Negative prompt: " line when there is one, then
    /// "Steps: N, Sampler: X, CFG scale: G, [Guidance rescale: R, ]Seed: S, Size: WxH, [Model hash: H, ]Model: M[, Batch size: B,
    /// Batch pos: P]" (values with ',', ':' or newlines JSON-quoted, as A1111 does; the rescale only when the run used one,
    /// the batch only for images that shared their generator). FLUX's distilled guidance is "Guidance: G" instead of "CFG scale".
    /// </summary>
    public string ToA1111String()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder(Prompt);
        if (!string.IsNullOrEmpty(NegativePrompt)) sb.Append("\nNegative prompt: ").Append(NegativePrompt);
        sb.Append("\nSteps: ").Append(Steps.ToString(c))
          .Append(", Sampler: ").Append(Quote(SamplerName))
          .Append(DistilledGuidance ? ", Guidance: " : ", CFG scale: ").Append(FormatGuidance(GuidanceScale));
        if (GuidanceRescale != 0) sb.Append(", Guidance rescale: ").Append(FormatGuidance(GuidanceRescale));
        sb.Append(", Seed: ").Append(Seed.ToString(c))
          .Append(", Size: ").Append(Width.ToString(c)).Append('x').Append(Height.ToString(c))
          ;
        if (!string.IsNullOrEmpty(ModelHash)) sb.Append(", Model hash: ").Append(Quote(ModelHash));
        sb.Append(", Model: ").Append(Quote(Model));
        if (BatchSize > 1) sb.Append(", Batch size: ").Append(BatchSize.ToString(c)).Append(", Batch pos: ").Append(BatchPosition.ToString(c));
        if (Strength is double strength) sb.Append(", Denoising strength: ").Append(FormatGuidance(strength));
        if (!string.IsNullOrEmpty(Loras)) sb.Append(", Lora hashes: ").Append(Quote(LoraHashes(Loras)));
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
            Sampler = SamplerWithSchedule(settings),
            Model = settings.GetValueOrDefault("Model", ""),
            ModelHash = settings.GetValueOrDefault("Model hash"),
        };
        result.Scheduler = result.Sampler;
        var guidanceText = settings.GetValueOrDefault("CFG scale");
        if (settings.TryGetValue("Guidance", out var distilled) || settings.TryGetValue("Distilled CFG Scale", out distilled))
            (guidanceText, result.DistilledGuidance) = (distilled, true);
        if (int.TryParse(settings.GetValueOrDefault("Batch size"), NumberStyles.Integer, c, out var batchSize) && batchSize > 1
            && int.TryParse(settings.GetValueOrDefault("Batch pos"), NumberStyles.Integer, c, out var batchPosition))
            (result.BatchSize, result.BatchPosition) = (batchSize, batchPosition);
        if (int.TryParse(settings["Steps"], NumberStyles.Integer, c, out var steps)) result.Steps = steps;
        if (double.TryParse(guidanceText, NumberStyles.Float, c, out var guidance)) result.GuidanceScale = guidance;
        if (double.TryParse(settings.GetValueOrDefault("Guidance rescale"), NumberStyles.Float, c, out var rescale)) result.GuidanceRescale = rescale;
        if (double.TryParse(settings.GetValueOrDefault("Denoising strength"), NumberStyles.Float, c, out var denoising)) result.Strength = denoising;
        if (settings.TryGetValue("Lora hashes", out var loraHashes)) result.Loras = loraHashes;
        if (long.TryParse(settings.GetValueOrDefault("Seed"), NumberStyles.Integer, c, out var seed)) result.Seed = seed;
        var size = settings.GetValueOrDefault("Size", "").Split('x');
        if (size.Length == 2 && int.TryParse(size[0], NumberStyles.Integer, c, out var w) && int.TryParse(size[1], NumberStyles.Integer, c, out var h))
            (result.Width, result.Height) = (w, h);
        return result;
    }

    /// <summary>"name: hash: scale, ..." as A1111's "Lora hashes" writes it: "name: hash, ..." (the scales are in the per-field chunk).</summary>
    private static string LoraHashes(string loras) =>
        string.Join(", ", loras.Split(", ").Select(l => l.Split(": ") is { Length: >= 2 } parts ? $"{parts[0]}: {parts[1]}" : l));

    /// <summary>The sampler, with A1111's separate "Schedule type: Karras" (written since 1.9) joined back to "DPM++ 2M Karras".</summary>
    private static string SamplerWithSchedule(IReadOnlyDictionary<string, string> settings)
    {
        var sampler = settings.GetValueOrDefault("Sampler", "");
        var schedule = settings.GetValueOrDefault("Schedule type");
        return schedule is "Karras" or "Exponential" && !sampler.EndsWith(schedule, StringComparison.Ordinal) ? $"{sampler} {schedule}" : sampler;
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
