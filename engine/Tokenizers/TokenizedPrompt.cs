namespace Diffusion.Engine.Tokenizers;

/// <summary>
/// A prompt as token ids, the way transformers' tokenizers give it to diffusers: special tokens added, truncated to
/// <see cref="MaxLength"/> (the special tokens kept), and padded with the pad id when asked.
/// </summary>
public sealed class TokenizedPrompt
{
    /// <summary>The token ids: <see cref="MaxLength"/> of them when padded, else <see cref="TokenCount"/>.</summary>
    public long[] Ids { get; }

    /// <summary>Real tokens after truncation, special tokens included (the padding excluded).</summary>
    public int TokenCount { get; }

    /// <summary>True when part of the prompt did not fit in <see cref="MaxLength"/> tokens.</summary>
    public bool Truncated { get; }

    /// <summary>The part of the prompt that was cut off, decoded back to text; null when nothing was cut.</summary>
    public string? DroppedText { get; }

    public int MaxLength { get; }

    private TokenizedPrompt(long[] ids, int tokenCount, bool truncated, string? droppedText, int maxLength)
    {
        Ids = ids;
        TokenCount = tokenCount;
        Truncated = truncated;
        DroppedText = droppedText;
        MaxLength = maxLength;
    }

    /// <summary>
    /// Frames the prompt's own tokens with <paramref name="prefix"/> and <paramref name="suffix"/>, keeping only as many of
    /// them as fit beside the special tokens in <paramref name="maxLength"/>, then pads with <paramref name="padId"/>.
    /// </summary>
    internal static TokenizedPrompt Frame(
        IReadOnlyList<int> contentIds, int[] prefix, int[] suffix, int maxLength, bool pad, int padId,
        Func<IEnumerable<long>, string> decode)
    {
        int specials = prefix.Length + suffix.Length;
        if (maxLength < specials)
            throw new DiffusionException("TokenizerMaxLengthTooSmall", DiffusionErrorKind.InvalidArgument,
                $"A maximum length of {maxLength} tokens leaves no room for the {specials} special token(s) of this tokenizer. " +
                $"Use a maximum length of at least {specials}.", nameof(maxLength));

        int kept = Math.Min(contentIds.Count, maxLength - specials);
        int tokenCount = kept + specials;
        var ids = new long[pad ? maxLength : tokenCount];
        int at = 0;
        foreach (int id in prefix) ids[at++] = id;
        for (int i = 0; i < kept; i++) ids[at++] = contentIds[i];
        foreach (int id in suffix) ids[at++] = id;
        Array.Fill(ids, padId, at, ids.Length - at);

        bool truncated = kept < contentIds.Count;
        string? dropped = truncated ? decode(contentIds.Skip(kept).Select(id => (long)id)) : null;
        return new TokenizedPrompt(ids, tokenCount, truncated, dropped, maxLength);
    }
}
