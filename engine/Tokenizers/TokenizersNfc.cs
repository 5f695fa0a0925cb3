using System.Text;

namespace Diffusion.Engine.Tokenizers;

/// <summary>
/// NFC as the `tokenizers` library computes it: its normalizer (crate unicode-normalization-alignments 0.1.12) has
/// Unicode 9.0 tables, so a character added since then is a plain starter to it (class 0, no decomposition, never
/// composed), where .NET's current Unicode data may reorder or compose it. Such characters are kept as they are and
/// the text between them is normalized by .NET: by Unicode's normalization stability, text of Unicode 9.0 characters
/// normalizes the same in every later version.
/// </summary>
internal static class TokenizersNfc
{
    /// <summary>
    /// The characters with a non-zero combining class, a canonical decomposition or a part in a canonical composition
    /// in ICU 72 (Unicode 15.0) that the crate's Unicode 9.0 tables do not know (Hangul is algorithmic in both).
    /// </summary>
    private static readonly (int First, int Last)[] UnknownToUnicode9 =
    [
        (0x7FD, 0x7FD), (0x898, 0x89F), (0x8CA, 0x8D3), (0x9FE, 0x9FE), (0xC3C, 0xC3C), (0xD3B, 0xD3C), (0xEBA, 0xEBA),
        (0x1715, 0x1715), (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFA), (0xA82C, 0xA82C), (0x10D24, 0x10D27), (0x10EAB, 0x10EAC),
        (0x10EFD, 0x10EFF), (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11070, 0x11070), (0x1133B, 0x1133B),
        (0x1145E, 0x1145E), (0x11839, 0x1183A), (0x11930, 0x11930), (0x11935, 0x11935), (0x11938, 0x11938),
        (0x1193D, 0x1193E), (0x11943, 0x11943), (0x119E0, 0x119E0), (0x11A34, 0x11A34), (0x11A47, 0x11A47),
        (0x11A99, 0x11A99), (0x11D42, 0x11D42), (0x11D44, 0x11D45), (0x11D97, 0x11D97), (0x11F41, 0x11F42),
        (0x16FF0, 0x16FF1), (0x1E08F, 0x1E08F), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF),
        (0x1E4EC, 0x1E4EF),
    ];

    /// <summary>NFC of <paramref name="text"/> (which must hold no lone surrogates) as `tokenizers` gives it.</summary>
    public static string Normalize(string text)
    {
        if (text.IsNormalized(NormalizationForm.FormC)) return text;
        var result = new StringBuilder(text.Length);
        int runStart = 0;
        for (int i = 0; i < text.Length;)
        {
            var rune = Rune.GetRuneAt(text, i);
            int next = i + rune.Utf16SequenceLength;
            if (IsUnknownToUnicode9(rune.Value))
            {
                result.Append(text.AsSpan(runStart, i - runStart).ToString().Normalize(NormalizationForm.FormC));
                result.Append(text, i, next - i);
                runStart = next;
            }
            i = next;
        }
        result.Append(text[runStart..].Normalize(NormalizationForm.FormC));
        return result.ToString();
    }

    private static bool IsUnknownToUnicode9(int codePoint)
    {
        foreach (var (first, last) in UnknownToUnicode9)
            if (codePoint >= first && codePoint <= last) return true;
        return false;
    }
}
