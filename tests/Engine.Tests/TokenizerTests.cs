using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using Diffusion.Engine.Tokenizers;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>Token ids against transformers 5 (tokenizer_cases.json and the tiny pipelines' reference runs): exact.</summary>
public sealed class TokenizerTests : IDisposable
{
    private static readonly JsonElement Cases = Fixtures.Json("tokenizer_cases.json");
    private readonly List<string> _tempDirs = [];

    public void Dispose()
    {
        foreach (var dir in _tempDirs) Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void CLIPMatchesTransformersOnEveryCase()
    {
        var clip = CLIPTokenizer.FromFolder(Fixtures.PathOf(Cases.GetProperty("clip").GetString()!));
        AssertEveryCase("CLIP", text => clip.Encode(text, 77).Ids, "clip_ids", text => clip.Encode(text, int.MaxValue, pad: false).Ids, "clip_ids_unpadded");
    }

    [Fact]
    public void T5MatchesTransformersOnEveryCase()
    {
        var t5 = T5Tokenizer.FromFolder(Fixtures.PathOf(Cases.GetProperty("t5").GetString()!));
        AssertEveryCase("T5", text => t5.Encode(text, 128).Ids, "t5_ids", text => t5.Encode(text, int.MaxValue, pad: false).Ids, "t5_ids_unpadded");
    }

    [Fact]
    public void T5FromTokenizerJsonAloneMatchesTransformers()
    {
        // transformers 5 builds T5Tokenizer from tokenizer.json when there is one; spiece.model is then unused.
        var dir = CopyToTemp(Fixtures.PathOf(Cases.GetProperty("t5").GetString()!), "tokenizer.json", "tokenizer_config.json");
        var t5 = T5Tokenizer.FromFolder(dir);
        AssertEveryCase("T5 (tokenizer.json only)", text => t5.Encode(text, 128).Ids, "t5_ids", text => t5.Encode(text, int.MaxValue, pad: false).Ids, "t5_ids_unpadded");
    }

    [Fact]
    public void T5FromSpieceModelAloneMatchesTransformers()
    {
        // Without tokenizer.json the pieces, scores and the NFKC charsmap come from spiece.model, as transformers'
        // converter takes them: the same ids as tokenizer.json on every case.
        var dir = CopyToTemp(Fixtures.PathOf(Cases.GetProperty("t5").GetString()!), "spiece.model", "tokenizer_config.json");
        var t5 = T5Tokenizer.FromFolder(dir);
        AssertEveryCase("T5 (spiece.model only)", text => t5.Encode(text, 128).Ids, "t5_ids", text => t5.Encode(text, int.MaxValue, pad: false).Ids, "t5_ids_unpadded");
    }

    [Fact]
    public void T5AppliesTheNfkcCharsMap()
    {
        var t5 = T5Tokenizer.FromFolder(Fixtures.PathOf(Cases.GetProperty("t5").GetString()!));
        // Each pair tokenizes alike only when the first is normalized into the second.
        foreach (var (raw, plain) in new[] { ("Ⅷ", "VIII"), ("⒅", "(18)"), ("Ⓨ", "Y"), ("H₁", "H1"), ("ℋ", "H"), ("ｄｏｇ", "dog"), ("ﬁre", "fire") })
            Assert.True(t5.Encode(plain, 64).Ids.SequenceEqual(t5.Encode(raw, 64).Ids), $"'{raw}' should tokenize as '{plain}'");
        Assert.NotEqual(t5.Encode("dog", 64).Ids, t5.Encode("cat", 64).Ids);
    }

    [Theory]
    [InlineData("header")]
    [InlineData("trie-size")]
    [InlineData("truncated")]
    [InlineData("replacement-offset")]
    [InlineData("trie-offset")]
    public void T5MalformedCharsMapIsTokenizerCorrupt(string damage)
    {
        var source = Fixtures.PathOf(Cases.GetProperty("t5").GetString()!);
        var dir = CopyToTemp(source, "tokenizer.json", "tokenizer_config.json");
        var path = Path.Combine(dir, "tokenizer.json");
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        var blob = Convert.FromBase64String(root["normalizer"]!["precompiled_charsmap"]!.GetValue<string>());
        int trieBytes = BitConverter.ToInt32(blob, 0);
        var units = Enumerable.Range(0, trieBytes / 4).Select(i => BitConverter.ToUInt32(blob, 4 + 4 * i)).ToArray();
        var (child, leaf) = FirstRule(units);
        blob = damage switch
        {
            "header" => blob[..3],
            "trie-size" => [.. BitConverter.GetBytes(trieBytes + 4096), .. blob[4..]],
            "truncated" => blob[..(trieBytes / 2)],
            "replacement-offset" => WithUnit(blob, leaf, 0x7FFFFF00u),
            // Keep the label and leaf bit, point the offset (bit 9: shifted by 8) far past the trie.
            "trie-offset" => WithUnit(blob, child, (units[child] & 0x1FFu) | (1u << 9) | (0x1FFFFFu << 10)),
            _ => throw new ArgumentOutOfRangeException(nameof(damage)),
        };
        root["normalizer"]!["precompiled_charsmap"] = Convert.ToBase64String(blob);
        File.WriteAllText(path, root.ToJsonString());

        var error = Assert.Throws<DiffusionException>(() => T5Tokenizer.FromFolder(dir));
        Assert.Equal("TokenizerCorrupt", error.ErrorId);
        Assert.Contains(path, error.Message);
        Assert.Contains("charsmap", error.Message);
    }

    /// <summary>
    /// The first one-byte rule of the charsmap's double-array trie (Darts units: label in bits 0-7 and 31, leaf flag in
    /// bit 8, offset in bits 10-30 shifted by 8 when bit 9 is set): its unit and the value unit below it.
    /// </summary>
    private static (int Child, int Leaf) FirstRule(uint[] units)
    {
        static int Offset(uint unit) => (int)((unit >> 10) << (int)((unit & (1u << 9)) >> 6));
        int root = Offset(units[0]);
        for (int c = 1; c < 256; c++)
        {
            int child = root ^ c;
            if (child >= units.Length || (units[child] & 0x800000FFu) != c || ((units[child] >> 8) & 1) == 0) continue;
            return (child, child ^ Offset(units[child]));
        }
        throw new InvalidOperationException("no one-byte rule in the charsmap");
    }

    private static byte[] WithUnit(byte[] blob, int index, uint unit)
    {
        var copy = (byte[])blob.Clone();
        BitConverter.GetBytes(unit).CopyTo(copy, 4 + 4 * index);
        return copy;
    }

    [Fact]
    public void T5FromSpieceModelMatchesSentencePiece()
    {
        // With spiece.model alone, against Google's sentencepiece on the same file (TestData/t5-spiece-sentencepiece.json
        // says how it was made). That reference holds the 297 prompts NFKC leaves as they are; the other 22 are covered
        // against transformers by T5FromSpieceModelAloneMatchesTransformers.
        var source = Fixtures.PathOf(Cases.GetProperty("t5").GetString()!);
        var t5 = T5Tokenizer.FromFolder(CopyToTemp(source, "spiece.model", "tokenizer_config.json"));
        var prompts = Cases.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("text").GetString()!).ToArray();
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestDataDir(), "t5-spiece-sentencepiece.json"))).RootElement;

        var failures = new List<string>();
        int count = 0;
        foreach (var c in reference.GetProperty("cases").EnumerateArray())
        {
            count++;
            var text = prompts[c.GetProperty("case").GetInt32()];
            var expected = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var actual = t5.Encode(text, int.MaxValue, pad: false).Ids;
            if (!expected.SequenceEqual(actual))
                failures.Add($"{JsonSerializer.Serialize(text)}: expected [{string.Join(",", expected)}], got [{string.Join(",", actual)}]");
        }
        Assert.True(count == 297, $"expected 297 reference prompts, found {count}");
        Assert.True(failures.Count == 0, $"T5 from spiece.model: {failures.Count} of {count} prompts differ:\n{string.Join("\n", failures)}");
    }

    [Fact]
    public void TinyPipelineTokenizersMatchReferenceRuns()
    {
        var clip = CLIPTokenizer.FromFolder(Fixtures.PathOf("sd-tiny", "tokenizer"));
        foreach (var run in ReferenceRuns("sd-tiny-refs.json"))
            AssertRows(run, "input_ids", text => clip.Encode(text).Ids);

        var fluxClip = CLIPTokenizer.FromFolder(Fixtures.PathOf("flux-tiny", "tokenizer"));
        var fluxT5 = T5Tokenizer.FromFolder(Fixtures.PathOf("flux-tiny", "tokenizer_2"));
        foreach (var run in ReferenceRuns("flux-tiny-refs.json"))
        {
            int maxSequenceLength = run.GetProperty("max_sequence_length").GetInt32();
            AssertRows(run, "clip_input_ids", text => fluxClip.Encode(text).Ids);
            AssertRows(run, "t5_input_ids", text => fluxT5.Encode(text, maxSequenceLength).Ids);
        }
    }

    [Fact]
    public void CLIPReportsTheTruncatedTail()
    {
        var clip = CLIPTokenizer.FromFolder(Fixtures.PathOf(Cases.GetProperty("clip").GetString()!));
        var words = new[] { "a", "red", "cat", "on", "the", "blue", "sofa", "at", "night" };
        var prompt = string.Join(" ", Enumerable.Range(0, 120).Select(i => words[i % words.Length])); // one token per word
        var full = clip.Encode(prompt, int.MaxValue, pad: false);
        var cut = clip.Encode(prompt);

        Assert.True(cut.Truncated);
        Assert.Equal(77, cut.TokenCount);
        Assert.Equal(77, cut.Ids.Length);
        Assert.Equal(full.Ids.Take(76), cut.Ids.Take(76));
        Assert.Equal(clip.EosId, cut.Ids[76]);
        Assert.Equal(string.Join(" ", Enumerable.Range(75, 45).Select(i => words[i % words.Length])), cut.DroppedText);
        Assert.EndsWith(cut.DroppedText!, prompt);

        var shortPrompt = clip.Encode("a red cat");
        Assert.False(shortPrompt.Truncated);
        Assert.Null(shortPrompt.DroppedText);
        Assert.Equal(5, shortPrompt.TokenCount);
        Assert.All(shortPrompt.Ids.Skip(5), id => Assert.Equal(clip.PadId, id));
    }

    [Fact]
    public void T5ReportsTheTruncatedTail()
    {
        var t5 = T5Tokenizer.FromFolder(CopyToTemp(Fixtures.PathOf(Cases.GetProperty("t5").GetString()!), "spiece.model"));
        var prompt = string.Join(" ", Enumerable.Repeat("the quick brown fox jumps over the lazy dog", 12));
        var full = t5.Encode(prompt, int.MaxValue, pad: false);
        var cut = t5.Encode(prompt, 64);

        Assert.True(cut.Truncated);
        Assert.Equal(64, cut.TokenCount);
        Assert.Equal(full.Ids.Take(63), cut.Ids.Take(63));
        Assert.Equal(t5.EosId, cut.Ids[63]);
        Assert.False(string.IsNullOrWhiteSpace(cut.DroppedText));
        Assert.EndsWith(cut.DroppedText!, prompt);
        Assert.Equal(prompt, t5.Decode(full.Ids));
    }

    [Fact]
    public void DecodeSkipsSpecialTokens()
    {
        var clip = CLIPTokenizer.FromFolder(Fixtures.PathOf(Cases.GetProperty("clip").GetString()!));
        // transformers' CLIP decode: every pre-token ends a word ("</w>"), so punctuation comes out spaced.
        Assert.Equal("a photo of a dog with cat - like look", clip.Decode(clip.Encode("A photo of a dog with cat-like look").Ids));
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        var empty = CopyToTemp(Fixtures.PathOf(Cases.GetProperty("clip").GetString()!), "vocab.json");
        var clipError = Assert.Throws<DiffusionException>(() => CLIPTokenizer.FromFolder(empty));
        Assert.Equal(DiffusionErrorKind.ObjectNotFound, clipError.Kind);
        Assert.Contains("merges.txt", clipError.Message);

        var t5Error = Assert.Throws<DiffusionException>(() => T5Tokenizer.FromFolder(empty));
        Assert.Contains("spiece.model", t5Error.Message);
        Assert.Contains("tokenizer.json", t5Error.Message);

        var missing = Path.Combine(empty, "no-such-folder");
        Assert.Equal("TokenizerFolderNotFound", Assert.Throws<DiffusionException>(() => CLIPTokenizer.FromFolder(missing)).ErrorId);
    }

    private static void AssertEveryCase(string what, Func<string, long[]> padded, string paddedKey, Func<string, long[]> unpadded, string unpaddedKey)
    {
        var failures = new List<string>();
        int count = 0;
        foreach (var c in Cases.GetProperty("cases").EnumerateArray())
        {
            count++;
            var text = c.GetProperty("text").GetString()!;
            foreach (var (key, encode) in new[] { (paddedKey, padded), (unpaddedKey, unpadded) })
            {
                var expected = c.GetProperty(key).EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var actual = encode(text);
                if (!expected.SequenceEqual(actual))
                    failures.Add($"{key} {JsonSerializer.Serialize(text)}: expected [{string.Join(",", expected)}], got [{string.Join(",", actual)}]");
            }
        }
        Assert.True(count == 319, $"expected 319 cases, found {count}");
        Assert.True(failures.Count == 0, $"{what}: {failures.Count} mismatches over {count} prompts:\n{string.Join("\n", failures)}");
    }

    /// <summary>The runs of a *-refs.json; Python wrote non-finite floats as bare -Infinity/NaN, which JSON does not allow.</summary>
    private static IEnumerable<JsonElement> ReferenceRuns(string file)
    {
        var text = Regex.Replace(File.ReadAllText(Fixtures.PathOf(file)), @"(?<=[:\[,]\s*)-?(Infinity|NaN)\b", "null");
        return JsonDocument.Parse(text).RootElement.Clone().EnumerateArray();
    }

    private static void AssertRows(JsonElement run, string tensorName, Func<string, long[]> encode)
    {
        var file = run.GetProperty("file").GetString()!;
        var tensors = Fixtures.Tensors(file);
        try
        {
            var expected = tensors[tensorName];
            var prompts = run.GetProperty("prompts").EnumerateArray().Select(p => p.GetString()!).ToArray();
            Assert.Equal(prompts.Length, (int)expected.shape[0]);
            for (int row = 0; row < prompts.Length; row++)
            {
                using var ids = expected[row];
                Assert.Equal(ids.data<long>().ToArray(), encode(prompts[row]));
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    private static string TestDataDir([CallerFilePath] string thisFile = "") => Path.Combine(Path.GetDirectoryName(thisFile)!, "TestData");

    private string CopyToTemp(string source, params string[] files)
    {
        var dir = Directory.CreateTempSubdirectory("tokenizer-test-").FullName;
        _tempDirs.Add(dir);
        foreach (var file in files) File.Copy(Path.Combine(source, file), Path.Combine(dir, file));
        return dir;
    }
}
