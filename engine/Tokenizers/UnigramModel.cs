namespace Diffusion.Engine.Tokenizers;

/// <summary>
/// A unigram language-model tokenizer as the `tokenizers` library runs it (Unigram::encode_optimized): the Viterbi
/// path of highest total piece score through each pre-token; a character no piece covers becomes the unknown piece
/// scored (lowest score - 10), and runs of unknown pieces fuse into one.
/// </summary>
internal sealed class UnigramModel
{
    private const double UnknownPenalty = 10.0;

    private readonly string[] _pieces;
    private readonly double[] _scores;
    private readonly Dictionary<string, int> _ids;
    private readonly TrieNode _root = new();
    private readonly double _unknownScore;

    public int UnknownId { get; }
    public int Count => _pieces.Length;

    /// <param name="vocab">Pieces with their log-probability scores; a piece's id is its index.</param>
    public UnigramModel(IReadOnlyList<(string Piece, double Score)> vocab, int unknownId)
    {
        if (vocab.Count == 0 || unknownId < 0 || unknownId >= vocab.Count)
            throw new ArgumentException($"The unknown id {unknownId} is not in a vocabulary of {vocab.Count} pieces.", nameof(unknownId));
        _pieces = new string[vocab.Count];
        _scores = new double[vocab.Count];
        _ids = new Dictionary<string, int>(vocab.Count, StringComparer.Ordinal);
        for (int id = 0; id < vocab.Count; id++)
        {
            var (piece, score) = vocab[id];
            _pieces[id] = piece;
            _scores[id] = score;
            _ids[piece] = id; // a repeated piece means its last id, as in the library
            _root.Add(piece);
        }
        _unknownScore = _scores.Min() - UnknownPenalty;
        UnknownId = unknownId;
    }

    public string Piece(int id) => _pieces[id];

    public bool TryGetId(string piece, out int id) => _ids.TryGetValue(piece, out id);

    /// <summary>Appends the ids of the best segmentation of <paramref name="text"/> to <paramref name="ids"/>.</summary>
    public void Encode(string text, List<int> ids)
    {
        if (text.Length == 0) return;
        // best[end]: the best path over text[..end], whose last piece starts at Start (-1: not reached yet).
        var best = new (double Score, int Start, int Id)[text.Length + 1];
        for (int i = 1; i <= text.Length; i++) best[i].Start = -1;

        for (int start = 0; start < text.Length; start = NextChar(text, start))
        {
            double scoreHere = best[start].Score;
            int charLength = NextChar(text, start) - start;
            bool coversChar = false;
            var node = _root;
            for (int end = start; end < text.Length; end++)
            {
                if (!node.Children.TryGetValue(text[end], out node!)) break;
                if (node.Piece is not string piece) continue;
                int id = _ids[piece];
                Offer(best, end + 1, scoreHere + _scores[id], start, id);
                if (end + 1 - start == charLength) coversChar = true;
            }
            if (!coversChar) Offer(best, start + charLength, scoreHere + _unknownScore, start, UnknownId);
        }

        // Walk back from the end; consecutive unknown pieces become one piece (its id if the vocabulary has it).
        var reversed = new List<int>();
        int unknownEnd = -1;
        for (int end = text.Length; end > 0; end = best[end].Start)
        {
            var (_, start, id) = best[end];
            if (id == UnknownId)
            {
                if (unknownEnd < 0) unknownEnd = end;
                if (start > 0 && best[start].Id == UnknownId) continue;
                reversed.Add(_ids.TryGetValue(text[start..unknownEnd], out int fused) ? fused : UnknownId);
                unknownEnd = -1;
                continue;
            }
            reversed.Add(id);
        }
        reversed.Reverse();
        ids.AddRange(reversed);
    }

    private static void Offer((double Score, int Start, int Id)[] best, int end, double score, int start, int id)
    {
        if (best[end].Start < 0 || score > best[end].Score) best[end] = (score, start, id);
    }

    private static int NextChar(string text, int i) =>
        char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? i + 2 : i + 1;

    private sealed class TrieNode
    {
        public readonly Dictionary<char, TrieNode> Children = [];
        public string? Piece;

        public void Add(string piece)
        {
            var node = this;
            foreach (char c in piece)
            {
                if (!node.Children.TryGetValue(c, out var child)) node.Children[c] = child = new TrieNode();
                node = child;
            }
            node.Piece = piece;
        }
    }
}
