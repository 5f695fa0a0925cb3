using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Diffusion.Engine.Tokenizers;

/// <summary>
/// CLIP's byte-level BPE tokenizer, giving the ids of transformers 5's CLIPTokenizer (its `tokenizers` backend):
/// added tokens cut out first; then NFC, whitespace runs to one space, lowercase; then the split regex
/// <c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>
/// (whitespace dropped), GPT-2's byte-level pre-tokenizer, and BPE with the "&lt;/w&gt;" end-of-word suffix;
/// finally &lt;|startoftext|&gt; ... &lt;|endoftext|&gt; around the prompt, padded with the pad token (&lt;|endoftext|&gt;).
/// </summary>
public sealed class CLIPTokenizer
{
    private const string EndOfWordSuffix = "</w>";
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
    private static readonly string[] SpecialLiterals = ["<|startoftext|>", "<|endoftext|>"];

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<int, string> _tokens; // id -> token, for decoding
    private readonly AddedTokens _addedTokens;

    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }
    /// <summary>The largest id this tokenizer can give: the text encoder's embedding must have more rows.</summary>
    public int MaxId { get; }

    private CLIPTokenizer(BpeTokenizer bpe, Dictionary<int, string> tokens, AddedTokens addedTokens, int bosId, int eosId, int padId)
    {
        _bpe = bpe;
        _tokens = tokens;
        _addedTokens = addedTokens;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
        MaxId = Math.Max(tokens.Count == 0 ? -1 : tokens.Keys.Max(), addedTokens.MaxId);
    }

    /// <summary>Loads vocab.json and merges.txt (and the special tokens of tokenizer_config.json, when there) from <paramref name="dir"/>.</summary>
    public static CLIPTokenizer FromFolder(string dir)
    {
        TokenizerFiles.RequireFolder(dir, "CLIP");
        var vocabPath = TokenizerFiles.Require(dir, "vocab.json", "CLIP");
        var mergesPath = TokenizerFiles.Require(dir, "merges.txt", "CLIP");

        Dictionary<string, int> vocab;
        try
        {
            vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(IO.RegularFile.ReadAllBytes(vocabPath))
                ?? throw TokenizerFiles.Invalid(vocabPath, "it holds no vocabulary");
        }
        catch (JsonException e)
        {
            throw TokenizerFiles.Invalid(vocabPath, $"it is not a JSON object of token ids ({e.Message})", e);
        }
        var merges = IO.RegularFile.ReadLines(mergesPath).Where(line => !line.StartsWith("#version", StringComparison.Ordinal)).ToList();

        string bosToken = TokenizerFiles.SpecialToken(dir, "bos_token", "<|startoftext|>");
        string eosToken = TokenizerFiles.SpecialToken(dir, "eos_token", "<|endoftext|>");
        string padToken = TokenizerFiles.SpecialToken(dir, "pad_token", "<|endoftext|>");
        string unkToken = TokenizerFiles.SpecialToken(dir, "unk_token", "<|endoftext|>");
        int IdOf(string token) => vocab.TryGetValue(token, out int id) ? id
            : throw TokenizerFiles.Invalid(vocabPath, $"the special token '{token}' is not in the vocabulary");

        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                EndOfWordSuffix = EndOfWordSuffix,
                UnknownToken = unkToken,
                FuseUnknownTokens = false,
            });
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException)
        {
            throw TokenizerFiles.Invalid(mergesPath, $"the merges do not fit the vocabulary ({e.Message})", e);
        }

        // transformers registers these as special added tokens: typed in a prompt, each becomes its one id.
        var special = new[] { bosToken, eosToken, padToken, unkToken }.Distinct().Select(token => (token, IdOf(token), true));
        return new CLIPTokenizer(bpe, vocab.ToDictionary(kv => kv.Value, kv => kv.Key), new AddedTokens(special), IdOf(bosToken), IdOf(eosToken), IdOf(padToken));
    }

    /// <summary>
    /// Tokenizes <paramref name="text"/> as diffusers does for CLIP: &lt;|startoftext|&gt; prompt &lt;|endoftext|&gt;,
    /// truncated to <paramref name="maxLength"/> tokens and, when <paramref name="pad"/>, padded to it.
    /// </summary>
    public TokenizedPrompt Encode(string text, int maxLength = 77, bool pad = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var content = new List<int>();
        foreach (var (plain, addedId) in _addedTokens.Split(text))
        {
            if (addedId is int id)
            {
                content.Add(id);
                continue;
            }
            foreach (var word in PreTokenize(Normalize(plain!)))
                content.AddRange(_bpe.EncodeToIds(ToByteLevel(word), considerPreTokenization: false, considerNormalization: false));
        }
        return TokenizedPrompt.Frame(content, [BosId], [EosId], maxLength, pad, PadId, Decode);
    }

    /// <summary>The text of <paramref name="ids"/>, special tokens skipped, word ends as spaces (transformers' decode).</summary>
    public string Decode(IEnumerable<long> ids)
    {
        var bytes = new List<byte>();
        foreach (long id in ids)
        {
            if (id < 0 || id > int.MaxValue || _addedTokens.IsSpecial((int)id) || !_tokens.TryGetValue((int)id, out var token)) continue;
            foreach (char c in token) bytes.Add(ByteLevel.ToByte(c));
        }
        return Encoding.UTF8.GetString(bytes.ToArray()).Replace(EndOfWordSuffix, " ").Trim();
    }

    /// <summary>
    /// NFC (with the Unicode version `tokenizers` has), then lowercase as Rust's char::to_lowercase (one rune at a
    /// time; U+0130 becomes "i\u0307"). Whitespace is left as is: the pre-tokenizer drops it, so collapsing runs of it
    /// to one space, as the Replace normalizer does, changes no id.
    /// </summary>
    private static string Normalize(string text)
    {
        // Lone surrogates (possible in .NET strings, not in Python's) become U+FFFD as UTF-8 encoding makes them.
        var nfc = TokenizersNfc.Normalize(Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(text)));
        var lower = new StringBuilder(nfc.Length);
        foreach (var rune in nfc.EnumerateRunes())
        {
            if (rune.Value == 0x130) lower.Append("i\u0307");
            else lower.Append(Rune.ToLowerInvariant(rune).ToString());
        }
        return lower.ToString();
    }

    /// <summary>
    /// The split regex, scanned by code point (as the Rust regex does, so letters outside the BMP are letters). A
    /// special-token literal that survives as text (e.g. typed in capitals) is one match, which the byte-level
    /// pre-tokenizer's GPT-2 regex then splits into "&lt;|", the name, and "|&gt;"; every other match passes it whole.
    /// </summary>
    private static IEnumerable<string> PreTokenize(string text)
    {
        int i = 0;
        while (i < text.Length)
        {
            var rune = Rune.GetRuneAt(text, i);
            if (Rune.IsWhiteSpace(rune))
            {
                i += rune.Utf16SequenceLength;
                continue;
            }
            if (SpecialLiterals.FirstOrDefault(s => string.CompareOrdinal(text, i, s, 0, s.Length) == 0) is string literal)
            {
                yield return literal[..2];
                yield return literal[2..^2];
                yield return literal[^2..];
                i += literal.Length;
                continue;
            }
            if (Contractions.FirstOrDefault(c => string.CompareOrdinal(text, i, c, 0, c.Length) == 0) is string contraction)
            {
                yield return contraction;
                i += contraction.Length;
                continue;
            }
            int start = i;
            if (Rune.IsLetter(rune))
                i = SkipWhile(text, i, Rune.IsLetter);
            else if (Rune.IsNumber(rune))
                i += rune.Utf16SequenceLength; // digits one at a time
            else
                i = SkipWhile(text, i, r => !Rune.IsWhiteSpace(r) && !Rune.IsLetter(r) && !Rune.IsNumber(r));
            yield return text[start..i];
        }
    }

    private static int SkipWhile(string text, int i, Func<Rune, bool> predicate)
    {
        while (i < text.Length)
        {
            var rune = Rune.GetRuneAt(text, i);
            if (!predicate(rune)) break;
            i += rune.Utf16SequenceLength;
        }
        return i;
    }

    private static string ToByteLevel(string word)
    {
        var bytes = Encoding.UTF8.GetBytes(word);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteLevel.ToChar(bytes[i]);
        return new string(chars);
    }

    /// <summary>GPT-2's bytes_to_unicode: each byte as a printable character (printable Latin-1 bytes as themselves).</summary>
    private static class ByteLevel
    {
        private static readonly char[] ByteToChar = BuildTable();
        private static readonly Dictionary<char, byte> CharToByte =
            Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

        public static char ToChar(byte b) => ByteToChar[b];

        /// <summary>The byte of a byte-level character; any other character (none in CLIP's vocab) as '?'.</summary>
        public static byte ToByte(char c) => CharToByte.TryGetValue(c, out byte b) ? b : (byte)'?';

        private static char[] BuildTable()
        {
            var table = new char[256];
            int next = 256;
            for (int b = 0; b < 256; b++)
            {
                bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
                table[b] = printable ? (char)b : (char)next++;
            }
            return table;
        }
    }
}
