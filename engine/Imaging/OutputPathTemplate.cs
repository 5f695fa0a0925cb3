using System.Globalization;
using System.Text;

namespace Diffusion.Engine.Imaging;

/// <summary>
/// Turns a -Path into one file path per image. The path may be a file ("out.png", "out.jpg", "out.webp"), a folder (an existing one, or one
/// ending in a separator: the images get <see cref="DefaultFileName"/>), or a template with placeholders:
/// {index}, {seed}, {rank} (numbers; zero-padded with a format such as {index:000}) and {prompt} (made safe for file
/// names, see <see cref="SafeFileNamePart"/>). "{{" and "}}" are literal braces. ".png" is added when the name has none of the image extensions (.png, .jpg, .jpeg, .webp).
/// </summary>
public sealed class OutputPathTemplate
{
    public const string DefaultFileName = "{index:0000}-{seed}-{prompt}.png";
    public const int MaxPromptLength = 80;
    /// <summary>Keeps a sanitized prompt short enough in UTF-8 that the whole file name fits Linux's 255-byte limit.</summary>
    private const int MaxPromptUtf8Bytes = 200;
    private static readonly string[] Known = ["index", "seed", "prompt", "rank"];
    private static readonly HashSet<string> ReservedNames = new(StringComparer.OrdinalIgnoreCase)
    {
        "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
        "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
        "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    };

    private readonly List<Segment> _segments;

    /// <summary>The full path template the images are named from (folder and default name resolved, ".png" added unless it names an image format).</summary>
    public string Template { get; }

    /// <summary>True when the template has placeholders; false when every image would get the same path.</summary>
    public bool HasPlaceholders => _segments.Any(s => s.Placeholder is not null);

    /// <summary>True when the template has the placeholder <paramref name="name"/> (index, seed, prompt or rank).</summary>
    public bool Uses(string name) => _segments.Any(s => string.Equals(s.Placeholder, name, StringComparison.OrdinalIgnoreCase));

    /// <param name="path">The -Path value.</param>
    /// <param name="baseDirectory">What a relative path is relative to (PowerShell's current location); default: the process's.</param>
    public OutputPathTemplate(string path, string? baseDirectory = null)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw Invalid(path ?? "", "it is empty");
        baseDirectory ??= Directory.GetCurrentDirectory();
        bool isFolder = path.EndsWith(Path.DirectorySeparatorChar) || path.EndsWith(Path.AltDirectorySeparatorChar)
            || Directory.Exists(Path.GetFullPath(path, baseDirectory));
        var template = Path.GetFullPath(isFolder ? Path.Combine(path, DefaultFileName) : path, baseDirectory);
        if (Imaging.ImageFileFormats.FromPath(template) is null) template += ".png";
        Template = template;
        _segments = Parse(template);
    }

    /// <summary>The path for one image.</summary>
    /// <param name="index">The image's running number in this run.</param>
    /// <param name="seed">The seed the image was made with.</param>
    /// <param name="prompt">The image's prompt (sanitized here).</param>
    /// <param name="rank">The rank of the process that made the image (0 in a single process; see Get-DiffusionRank).</param>
    public string Expand(long index, long seed, string prompt, long rank = 0)
    {
        var sb = new StringBuilder();
        foreach (var s in _segments)
        {
            sb.Append(s.Placeholder switch
            {
                null => s.Text,
                "prompt" => SafeFileNamePart(prompt),
                "index" => Number(index, s.Format),
                "seed" => Number(seed, s.Format),
                _ => Number(rank, s.Format),
            });
        }
        return sb.ToString();
    }

    /// <summary>One image a call will save: its index, seed and prompt as <see cref="Expand"/> takes them.</summary>
    public readonly record struct PlannedImage(long Index, long Seed, string Prompt);

    /// <summary>
    /// Refuses (OutputPathCollision) when two of <paramref name="images"/> would get the same file: the second would
    /// overwrite the first (-Force) or fail after all its work (without). Called before anything is generated.
    /// Paths are compared as the file system does: case-sensitively on Linux, case-insensitively elsewhere.
    /// </summary>
    public void RequireDistinct(IReadOnlyList<PlannedImage> images, long rank = 0)
    {
        var comparer = OperatingSystem.IsLinux() ? StringComparer.Ordinal : StringComparer.OrdinalIgnoreCase;
        var clash = images
            .Select((image, k) => (Image: image, Path: Expand(image.Index, image.Seed, image.Prompt, rank)))
            .GroupBy(x => x.Path, comparer)
            .FirstOrDefault(g => g.Count() > 1);
        if (clash is null) return;
        var names = clash.Take(4).Select(x => $"#{x.Image.Index} '{x.Image.Prompt}'");
        int more = clash.Count() - 4;
        var extension = Path.GetExtension(Template);
        var stem = Template[..^extension.Length];
        throw new DiffusionException("OutputPathCollision", DiffusionErrorKind.InvalidArgument,
            $"-OutputPath '{Template}' gives {clash.Count()} images the same file '{clash.Key}': prompts {string.Join(", ", names)}{(more > 0 ? $" and {more} more" : "")}. " +
            $"Nothing was generated. Add a placeholder that differs per image, such as {{index}}: '{stem}-{{index}}{extension}'.", clash.Key);
    }

    /// <summary>
    /// Text made safe as part of a file name on Windows and Linux: &lt;&gt;:"/\|?* and control characters removed,
    /// whitespace runs turned into '_', at most 80 characters (and 200 UTF-8 bytes), leading/trailing dots, spaces and
    /// '_' trimmed, "untitled" when nothing is left, Windows device names (CON, NUL, COM1, ...) suffixed with '_'.
    /// </summary>
    public static string SafeFileNamePart(string text)
    {
        var sb = new StringBuilder(text.Length);
        bool pendingSpace = false;
        foreach (char c in text)
        {
            if (char.IsWhiteSpace(c)) { pendingSpace = sb.Length > 0; continue; }
            if (char.IsControl(c) || "<>:\"/\\|?*".Contains(c)) continue;
            if (pendingSpace) { sb.Append('_'); pendingSpace = false; }
            sb.Append(c);
        }
        var name = Truncate(sb.ToString().Trim('.', ' ', '_')).TrimEnd('.', ' ', '_');
        if (name.Length == 0) return "untitled";
        var stem = name.Split('.')[0];
        return ReservedNames.Contains(stem) ? Truncate(stem + "_" + name[stem.Length..]).TrimEnd('.', ' ') : name;
    }

    /// <summary>Cuts to <see cref="MaxPromptLength"/> characters and <see cref="MaxPromptUtf8Bytes"/> bytes without splitting a surrogate pair.</summary>
    private static string Truncate(string s)
    {
        int length = 0, bytes = 0;
        while (length < s.Length)
        {
            int width = char.IsHighSurrogate(s[length]) && length + 1 < s.Length ? 2 : 1;
            int size = Encoding.UTF8.GetByteCount(s.AsSpan(length, width));
            if (length + width > MaxPromptLength || bytes + size > MaxPromptUtf8Bytes) break;
            length += width;
            bytes += size;
        }
        return s[..length];
    }

    private static string Number(long value, string? format) =>
        format is null ? value.ToString(CultureInfo.InvariantCulture) : value.ToString(format, CultureInfo.InvariantCulture);

    private sealed record Segment(string? Text, string? Placeholder, string? Format);

    private static List<Segment> Parse(string template)
    {
        var segments = new List<Segment>();
        var literal = new StringBuilder();
        for (int i = 0; i < template.Length; i++)
        {
            char c = template[i];
            if ((c == '{' || c == '}') && i + 1 < template.Length && template[i + 1] == c)
            {
                literal.Append(c);
                i++;
                continue;
            }
            if (c == '}') throw Invalid(template, $"the '}}' at position {i} closes no placeholder (write '}}}}' for a literal brace)");
            if (c != '{') { literal.Append(c); continue; }
            int close = template.IndexOf('}', i + 1);
            if (close < 0) throw Invalid(template, $"the '{{' at position {i} is not closed (write '{{{{' for a literal brace)");
            var body = template[(i + 1)..close];
            var colon = body.IndexOf(':');
            var name = (colon < 0 ? body : body[..colon]).ToLowerInvariant();
            var format = colon < 0 ? null : body[(colon + 1)..];
            if (!Known.Contains(name))
                throw new DiffusionException("OutputPathPlaceholderUnknown", DiffusionErrorKind.InvalidArgument,
                    $"The -Path '{template}' has the placeholder '{{{body}}}', which is not one of {{index}}, {{seed}}, {{prompt}}, {{rank}}.", template);
            if (format is not null && (name == "prompt" || format.Length == 0 || format.Any(f => f != '0')))
                throw Invalid(template, $"'{{{body}}}' has an invalid format: only {{index}}, {{seed}} and {{rank}} take one, made of zeros (e.g. {{index:0000}})");
            if (literal.Length > 0) { segments.Add(new Segment(literal.ToString(), null, null)); literal.Clear(); }
            segments.Add(new Segment(null, name, format));
            i = close;
        }
        if (literal.Length > 0) segments.Add(new Segment(literal.ToString(), null, null));
        return segments;
    }

    private static DiffusionException Invalid(string path, string why) =>
        new("OutputPathTemplateInvalid", DiffusionErrorKind.InvalidArgument,
            $"The -Path '{path}' is not a valid output path: {why}.", path);
}
