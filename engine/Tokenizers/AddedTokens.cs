namespace Diffusion.Engine.Tokenizers;

/// <summary>
/// The added tokens of a `tokenizers` tokenizer (special tokens such as &lt;|endoftext|&gt; or &lt;/s&gt;): they are cut
/// out of the raw text before normalization and become their own id, matched leftmost-longest like the library does.
/// </summary>
internal sealed class AddedTokens
{
    private readonly Dictionary<string, int> _ids;
    private readonly HashSet<int> _specialIds;
    // Candidates by first character, longest first, so the first hit at a position is the longest one.
    private readonly Dictionary<char, string[]> _byFirstChar;

    /// <param name="tokens">Each added token's text, id, and whether it is special (skipped when decoding).</param>
    public AddedTokens(IEnumerable<(string Content, int Id, bool Special)> tokens)
    {
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        _specialIds = [];
        foreach (var (content, id, special) in tokens)
        {
            if (content.Length == 0) continue;
            _ids[content] = id;
            if (special) _specialIds.Add(id);
        }
        _byFirstChar = _ids.Keys.GroupBy(t => t[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Length).ToArray());
    }

    public bool IsSpecial(int id) => _specialIds.Contains(id);

    /// <summary>The largest id of an added token, -1 when there is none.</summary>
    public int MaxId => _ids.Count == 0 ? -1 : _ids.Values.Max();

    /// <summary>Splits <paramref name="text"/> into plain-text pieces (Id null) and added tokens (Text null).</summary>
    public IEnumerable<(string? Text, int? Id)> Split(string text)
    {
        int plainStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            string? match = MatchAt(text, i);
            if (match is null)
            {
                i++;
                continue;
            }
            if (i > plainStart) yield return (text[plainStart..i], null);
            yield return (null, _ids[match]);
            i += match.Length;
            plainStart = i;
        }
        if (plainStart < text.Length) yield return (text[plainStart..], null);
    }

    private string? MatchAt(string text, int index)
    {
        if (!_byFirstChar.TryGetValue(text[index], out var candidates)) return null;
        foreach (var token in candidates)
            if (index + token.Length <= text.Length && string.CompareOrdinal(text, index, token, 0, token.Length) == 0)
                return token;
        return null;
    }
}
