namespace Diffusion.Engine.Tokenizers;

/// <summary>What Get-DiffusionPromptToken reports: the ids a prompt becomes and whether it fits.</summary>
public sealed class PromptTokens
{
    public string Prompt { get; init; } = "";
    public string Tokenizer { get; init; } = "";
    public long[] Ids { get; init; } = [];
    /// <summary>Tokens kept, special tokens included.</summary>
    public int Count { get; init; }
    public int MaxLength { get; init; }
    public bool Truncated { get; init; }
    public string? TruncatedText { get; init; }

    /// <summary>
    /// Tokenizes with the tokenizer in <paramref name="dir"/>: a CLIP folder (vocab.json + merges.txt), a T5 folder
    /// (spiece.model or tokenizer.json), or a model folder, whose tokenizer/ is used.
    /// </summary>
    public static PromptTokens Tokenize(string dir, string prompt, int? maxLength)
    {
        var folder = ResolveFolder(dir);
        bool clip = File.Exists(Path.Combine(folder, "vocab.json")) && File.Exists(Path.Combine(folder, "merges.txt"));
        TokenizedPrompt t;
        string kind;
        if (clip)
        {
            t = CLIPTokenizer.FromFolder(folder).Encode(prompt, maxLength ?? 77, pad: false);
            kind = "CLIP";
        }
        else
        {
            t = T5Tokenizer.FromFolder(folder).Encode(prompt, maxLength ?? 512, pad: false);
            kind = "T5";
        }
        return new PromptTokens
        {
            Prompt = prompt, Tokenizer = $"{kind} ({folder})", Ids = t.Ids, Count = t.TokenCount, MaxLength = t.MaxLength,
            Truncated = t.Truncated, TruncatedText = t.DroppedText,
        };
    }

    private static string ResolveFolder(string dir)
    {
        if (!Directory.Exists(dir))
            throw new DiffusionException("TokenizerFolderNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The folder '{dir}' does not exist. Give a tokenizer folder or a model folder.", dir);
        bool IsTokenizer(string d) => File.Exists(Path.Combine(d, "vocab.json")) || File.Exists(Path.Combine(d, "spiece.model")) || File.Exists(Path.Combine(d, "tokenizer.json"));
        if (IsTokenizer(dir)) return dir;
        var sub = Path.Combine(dir, "tokenizer");
        if (Directory.Exists(sub) && IsTokenizer(sub)) return sub;
        throw new DiffusionException("TokenizerNotFound", DiffusionErrorKind.ObjectNotFound,
            $"'{dir}' holds no tokenizer (vocab.json + merges.txt, spiece.model or tokenizer.json) and no tokenizer/ folder. For FLUX's T5, give '<model>/tokenizer_2'.", dir);
    }
}
