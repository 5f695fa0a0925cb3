using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Diffusion.Engine.Tokenizers;

/// <summary>
/// SentencePiece's compiled normalization rules (its `precompiled_charsmap`, NFKC for T5), applied as the `tokenizers`
/// library's <c>Precompiled</c> normalizer does, which is what transformers runs: each grapheme cluster shorter than
/// 6 UTF-8 bytes is looked up whole, otherwise (or when the whole cluster has no rule) each character on its own; a
/// lookup takes the shortest rule that matches a prefix of the chunk.
/// </summary>
/// <remarks>
/// Our own code rather than Microsoft.ML.Tokenizers' SentencePieceNormalizer: in 2.0.1 that one can only be built from
/// a spiece.model stream (no public way to give it tokenizer.json's charsmap), and it follows sentencepiece's
/// longest-match over the whole text, not the per-grapheme rule above that transformers' ids come from.
/// The blob: a little-endian u32 trie size in bytes, the trie (Darts double-array units, u32 each), then the
/// replacement strings, each ending with NUL.
/// </remarks>
internal sealed class PrecompiledNormalizer
{
    private const int WholeClusterLimit = 6;

    private readonly uint[] _units;
    private readonly byte[] _replacements;

    private PrecompiledNormalizer(uint[] units, byte[] replacements)
    {
        _units = units;
        _replacements = replacements;
    }

    /// <summary>Reads and checks a charsmap blob; <paramref name="source"/> names the file in errors.</summary>
    public static PrecompiledNormalizer Parse(ReadOnlySpan<byte> blob, string source)
    {
        if (blob.Length < 4) throw Corrupt(source, $"its precompiled charsmap has {blob.Length} bytes, fewer than the 4 of its header");
        uint trieBytes = BinaryPrimitives.ReadUInt32LittleEndian(blob);
        if (trieBytes == 0 || trieBytes % 4 != 0 || trieBytes > (uint)(blob.Length - 4))
            throw Corrupt(source, $"its precompiled charsmap says the trie has {trieBytes} bytes, but {blob.Length - 4} follow the header (truncated?)");
        var units = new uint[trieBytes / 4];
        for (int i = 0; i < units.Length; i++) units[i] = BinaryPrimitives.ReadUInt32LittleEndian(blob[(4 + 4 * i)..]);
        var replacements = blob[(4 + (int)trieBytes)..].ToArray();
        var normalizer = new PrecompiledNormalizer(units, replacements);
        normalizer.CheckEveryRule(source);
        return normalizer;
    }

    /// <summary>The text with every rule applied.</summary>
    public string Normalize(string text)
    {
        var output = new StringBuilder(text.Length);
        Span<byte> buffer = stackalloc byte[64];
        var clusters = StringInfo.GetTextElementEnumerator(text);
        while (clusters.MoveNext())
        {
            var cluster = clusters.GetTextElement();
            int bytes = Encoding.UTF8.GetByteCount(cluster);
            if (bytes < WholeClusterLimit)
            {
                int written = Encoding.UTF8.GetBytes(cluster, buffer);
                if (Replacement(buffer[..written]) is string whole)
                {
                    output.Append(whole);
                    continue;
                }
            }
            foreach (var rune in cluster.EnumerateRunes())
            {
                int written = rune.EncodeToUtf8(buffer);
                if (Replacement(buffer[..written]) is string single) output.Append(single);
                else output.Append(rune.ToString());
            }
        }
        return output.ToString();
    }

    /// <summary>The replacement of the shortest rule matching a prefix of <paramref name="utf8"/>, or null.</summary>
    private string? Replacement(ReadOnlySpan<byte> utf8)
    {
        int node = 0;
        node ^= Offset(_units[node]);
        foreach (byte c in utf8)
        {
            if (c == 0) return null;
            node ^= c;
            if (node >= _units.Length) return null;
            uint unit = _units[node];
            if (Label(unit) != c) return null;
            node ^= Offset(unit);
            if (HasLeaf(unit)) return ReplacementAt(Value(_units[node]));
        }
        return null;
    }

    private string ReplacementAt(int start)
    {
        int end = Array.IndexOf(_replacements, (byte)0, start);
        return Encoding.UTF8.GetString(_replacements, start, (end < 0 ? _replacements.Length : end) - start);
    }

    /// <summary>
    /// Walks the whole trie once, so that a lookup can never index outside it: every child and every value unit is
    /// inside the trie and every rule's replacement starts inside the string pool and is valid UTF-8.
    /// </summary>
    private void CheckEveryRule(string source)
    {
        var visited = new bool[_units.Length];
        var pending = new Stack<int>();
        int root = Offset(_units[0]);
        if (root >= _units.Length) throw Corrupt(source, "its precompiled charsmap's root points past the end of its trie");
        pending.Push(root);
        var strictUtf8 = new UTF8Encoding(false, true);
        while (pending.Count > 0)
        {
            int parent = pending.Pop();
            for (int c = 1; c < 256; c++)
            {
                int child = parent ^ c;
                if (child >= _units.Length) continue;
                uint unit = _units[child];
                if (Label(unit) != c || visited[child]) continue;
                visited[child] = true;
                int next = child ^ Offset(unit);
                if (next >= _units.Length)
                    throw Corrupt(source, $"its precompiled charsmap's trie unit {child} points past the end of the trie ({_units.Length} units)");
                if (HasLeaf(unit))
                {
                    int start = Value(_units[next]);
                    if (start >= _replacements.Length)
                        throw Corrupt(source, $"a rule of its precompiled charsmap points at byte {start} of a {_replacements.Length}-byte replacement pool");
                    int end = Array.IndexOf(_replacements, (byte)0, start);
                    try { strictUtf8.GetString(_replacements, start, (end < 0 ? _replacements.Length : end) - start); }
                    catch (DecoderFallbackException) { throw Corrupt(source, $"the replacement at byte {start} of its precompiled charsmap is not UTF-8"); }
                }
                pending.Push(next);
            }
        }
    }

    // Darts-clone's unit layout, as sentencepiece and the tokenizers library read it.
    private static bool HasLeaf(uint unit) => ((unit >> 8) & 1) == 1;
    private static int Value(uint unit) => (int)(unit & 0x7FFFFFFF);
    private static uint Label(uint unit) => unit & 0x800000FF;
    private static int Offset(uint unit) => (int)((unit >> 10) << (int)((unit & (1u << 9)) >> 6));

    private static DiffusionException Corrupt(string path, string why) =>
        new("TokenizerCorrupt", DiffusionErrorKind.InvalidData,
            $"The tokenizer file '{path}' is damaged: {why}. Download the model's tokenizer files again.", path);
}
