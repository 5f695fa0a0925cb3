using System.Text;
using System.Text.Json;

namespace Diffusion.Engine.Tokenizers;

/// <summary>
/// T5's SentencePiece unigram tokenizer, giving the ids of transformers 5's T5Tokenizer (its `tokenizers` backend):
/// added tokens (&lt;pad&gt;, &lt;/s&gt;, &lt;unk&gt;, &lt;extra_id_N&gt;) cut out first; each plain-text segment
/// normalized by the model's precompiled charsmap (NFKC for T5: `Ⅷ`→`VIII`, `⒅`→`(18)`, full-width forms to ASCII);
/// the text split on whitespace, each word prefixed with "▁" (Metaspace, prepend "always", split before every "▁");
/// the unigram Viterbi segmentation of each piece; then &lt;/s&gt; appended and padding with &lt;pad&gt;.
/// </summary>
/// <remarks>
/// Like transformers 5, the pieces and the normalizer come from tokenizer.json when the folder has one, else from
/// spiece.model (its pieces plus the extra ids, and its normalizer spec's charsmap), which is what transformers'
/// converter writes into tokenizer.json.
/// </remarks>
public sealed class T5Tokenizer
{
    private const char MetaSpace = '\u2581';

    private readonly UnigramModel _model;
    private readonly AddedTokens _addedTokens;
    private readonly PrecompiledNormalizer? _normalizer;

    public int EosId { get; }
    public int PadId { get; }
    /// <summary>The largest id this tokenizer can give: the text encoder's embedding must have more rows.</summary>
    public int MaxId => Math.Max(_model.Count - 1, _addedTokens.MaxId);

    private T5Tokenizer(UnigramModel model, AddedTokens addedTokens, PrecompiledNormalizer? normalizer, int eosId, int padId)
    {
        _model = model;
        _addedTokens = addedTokens;
        _normalizer = normalizer;
        EosId = eosId;
        PadId = padId;
    }

    /// <summary>Loads tokenizer.json from <paramref name="dir"/>, or spiece.model when there is no tokenizer.json.</summary>
    public static T5Tokenizer FromFolder(string dir)
    {
        TokenizerFiles.RequireFolder(dir, "T5");
        var json = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(json)) return FromTokenizerJson(dir, json);
        var spiece = Path.Combine(dir, "spiece.model");
        if (File.Exists(spiece)) return FromSentencePiece(dir, spiece);
        throw new DiffusionException("TokenizerFileNotFound", DiffusionErrorKind.ObjectNotFound,
            $"The T5 tokenizer in '{dir}' has neither 'tokenizer.json' nor 'spiece.model'. Download the model's tokenizer files again.", dir);
    }

    private static T5Tokenizer FromTokenizerJson(string dir, string path)
    {
        var root = TokenizerFiles.ReadJson(path);
        try
        {
            var model = root.GetProperty("model");
            if (model.GetProperty("type").GetString() != "Unigram")
                throw new DiffusionException("TokenizerNotSupported", DiffusionErrorKind.NotSupported,
                    $"The T5 tokenizer '{path}' has a '{model.GetProperty("type").GetString()}' model; T5 tokenizers are Unigram models.", path);
            var vocab = model.GetProperty("vocab").EnumerateArray()
                .Select(entry => (entry[0].GetString()!, entry[1].GetDouble())).ToList();
            var added = root.TryGetProperty("added_tokens", out var list) && list.ValueKind == JsonValueKind.Array
                ? list.EnumerateArray().Select(t =>
                    (t.GetProperty("content").GetString()!, t.GetProperty("id").GetInt32(), t.GetProperty("special").GetBoolean())).ToList()
                : [];
            int? unkId = model.TryGetProperty("unk_id", out var unk) && unk.ValueKind == JsonValueKind.Number ? unk.GetInt32() : null;
            var normalizer = root.TryGetProperty("normalizer", out var spec) ? NormalizerOf(spec, path) : null;
            return Create(dir, path, vocab, added, unkId, normalizer);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException or IndexOutOfRangeException)
        {
            throw TokenizerFiles.Invalid(path, $"it is not a `tokenizers` Unigram tokenizer ({e.Message})", e);
        }
    }

    /// <summary>
    /// The normalizer of tokenizer.json: none, a Precompiled one, or a Sequence holding one. transformers' SentencePiece
    /// converters may add a right Strip and a Replace of runs of spaces by "▁"; both change no id here, since the text is
    /// split on whitespace and at every "▁" after them. Any other normalizer is refused rather than ignored.
    /// </summary>
    private static PrecompiledNormalizer? NormalizerOf(JsonElement spec, string path)
    {
        if (spec.ValueKind == JsonValueKind.Null) return null;
        var type = spec.GetProperty("type").GetString();
        switch (type)
        {
            case "Precompiled":
                var blob = spec.GetProperty("precompiled_charsmap");
                if (blob.ValueKind == JsonValueKind.Null) return null;
                byte[] bytes;
                try { bytes = Convert.FromBase64String(blob.GetString()!); }
                catch (FormatException) { throw TokenizerFiles.Invalid(path, "its normalizer's precompiled_charsmap is not base64"); }
                return bytes.Length == 0 ? null : PrecompiledNormalizer.Parse(bytes, path);
            case "Sequence":
                PrecompiledNormalizer? found = null;
                foreach (var part in spec.GetProperty("normalizers").EnumerateArray())
                    if (NormalizerOf(part, path) is { } precompiled)
                        found = found is null ? precompiled
                            : throw new DiffusionException("TokenizerNotSupported", DiffusionErrorKind.NotSupported,
                                $"The T5 tokenizer '{path}' chains two Precompiled normalizers; T5 tokenizers have one.", path);
                return found;
            case "Strip" or "Replace":
                return null;
            default:
                throw new DiffusionException("TokenizerNotSupported", DiffusionErrorKind.NotSupported,
                    $"The T5 tokenizer '{path}' has a '{type}' normalizer; T5 tokenizers use SentencePiece's Precompiled one. " +
                    "Convert the tokenizer again with transformers, or remove tokenizer.json so that spiece.model is used.", path);
        }
    }

    /// <summary>As transformers' SentencePieceExtractor and T5Converter: the pieces, then &lt;extra_id_{N-1}&gt; .. &lt;extra_id_0&gt;.</summary>
    private static T5Tokenizer FromSentencePiece(string dir, string path)
    {
        var (pieces, charsMap) = SentencePieceModelFile.Read(path);
        var vocab = pieces.Select(p => (p.Piece, p.Score)).ToList();
        // Control pieces are special added tokens, user-defined ones plain added tokens.
        var added = pieces.Select((p, id) => (p.Piece, id, p.Type))
            .Where(p => p.Type is SentencePieceModelFile.Control or SentencePieceModelFile.UserDefined)
            .Select(p => (p.Piece, p.id, p.Type == SentencePieceModelFile.Control)).ToList();
        int extraIds = ExtraIds(dir);
        for (int i = extraIds - 1; i >= 0; i--)
        {
            added.Add(($"<extra_id_{i}>", vocab.Count, true));
            vocab.Add(($"<extra_id_{i}>", 0.0));
        }
        int unknown = pieces.FindIndex(p => p.Type == 2);
        var normalizer = charsMap is null ? null : PrecompiledNormalizer.Parse(charsMap, path);
        return Create(dir, path, vocab, added, unknown >= 0 ? unknown : null, normalizer);
    }

    private static int ExtraIds(string dir)
    {
        var config = Path.Combine(dir, "tokenizer_config.json");
        if (!File.Exists(config)) return 100;
        var root = TokenizerFiles.ReadJson(config);
        return root.ValueKind == JsonValueKind.Object && root.TryGetProperty("extra_ids", out var n)
            && n.ValueKind == JsonValueKind.Number && n.TryGetInt32(out int count) ? count : 100;
    }

    private static T5Tokenizer Create(string dir, string path, List<(string, double)> vocab,
        List<(string Content, int Id, bool Special)> added, int? unkId, PrecompiledNormalizer? normalizer)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < vocab.Count; id++) ids[vocab[id].Item1] = id;
        int IdOf(string name, string fallback)
        {
            var token = TokenizerFiles.SpecialToken(dir, name, fallback);
            return ids.TryGetValue(token, out int id) ? id
                : throw TokenizerFiles.Invalid(path, $"the {name} '{token}' is not in the vocabulary");
        }
        int pad = IdOf("pad_token", "<pad>"), eos = IdOf("eos_token", "</s>"), unk = IdOf("unk_token", "<unk>");
        // transformers registers pad, eos and unk as special added tokens too.
        foreach (int id in new[] { pad, eos, unk }) added.Add((vocab[id].Item1, id, true));
        int unknownId = unkId ?? unk;
        if (unknownId < 0 || unknownId >= vocab.Count)
            throw TokenizerFiles.Invalid(path, $"the unknown-piece id {unknownId} is outside its {vocab.Count} pieces");
        var model = new UnigramModel(vocab, unknownId);
        return new T5Tokenizer(model, new AddedTokens(added), normalizer, eos, pad);
    }

    /// <summary>
    /// Tokenizes <paramref name="text"/> as diffusers does for T5: the prompt then &lt;/s&gt;, truncated to
    /// <paramref name="maxLength"/> tokens (&lt;/s&gt; kept last) and, when <paramref name="pad"/>, padded to it.
    /// </summary>
    public TokenizedPrompt Encode(string text, int maxLength = 512, bool pad = true)
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
            var normalized = _normalizer?.Normalize(plain!) ?? plain!;
            foreach (var word in normalized.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
                foreach (var piece in MetaspacePieces(word))
                    _model.Encode(piece, content);
        }
        return TokenizedPrompt.Frame(content, [], [EosId], maxLength, pad, PadId, Decode);
    }

    /// <summary>The text of <paramref name="ids"/>, special tokens skipped, "▁" as spaces (the Metaspace decoder).</summary>
    public string Decode(IEnumerable<long> ids)
    {
        var text = new StringBuilder();
        foreach (long id in ids)
        {
            if (id < 0 || id >= _model.Count || _addedTokens.IsSpecial((int)id)) continue;
            text.Append(_model.Piece((int)id).Replace(MetaSpace, ' '));
        }
        return text.Length > 0 && text[0] == ' ' ? text.ToString(1, text.Length - 1) : text.ToString();
    }

    /// <summary>Metaspace: "▁" in front unless already there, then a piece before every "▁".</summary>
    private static IEnumerable<string> MetaspacePieces(string word)
    {
        if (word[0] != MetaSpace) word = MetaSpace + word;
        int start = 0;
        for (int i = 1; i <= word.Length; i++)
        {
            if (i < word.Length && word[i] != MetaSpace) continue;
            yield return word[start..i];
            start = i;
        }
    }
}
