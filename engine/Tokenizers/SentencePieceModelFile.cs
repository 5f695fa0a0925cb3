using System.Buffers.Binary;
using System.Text;

namespace Diffusion.Engine.Tokenizers;

/// <summary>
/// The pieces of a SentencePiece model file (spiece.model, a protobuf ModelProto): what transformers'
/// SentencePieceExtractor takes from it to build a `tokenizers` Unigram model, and its normalizer's precompiled
/// charsmap. Nothing else of the file is used.
/// </summary>
internal static class SentencePieceModelFile
{
    /// <summary>SentencePiece.Type: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.</summary>
    public const int Control = 3, UserDefined = 4;

    /// <summary>The pieces and the normalizer's precompiled charsmap (null when the model has none).</summary>
    public static (List<(string Piece, double Score, int Type)> Pieces, byte[]? CharsMap) Read(string path)
    {
        var data = IO.RegularFile.ReadAllBytes(path);
        var pieces = new List<(string, double, int)>();
        byte[]? charsMap = null;
        try
        {
            var model = new ProtoReader(data, 0, data.Length);
            while (model.Next(out int field, out int wireType))
            {
                if (field == 1 && wireType == 2) // repeated SentencePiece pieces = 1
                {
                    var (start, end) = model.ReadLengthDelimited();
                    pieces.Add(ReadPiece(data, start, end));
                }
                else if (field == 3 && wireType == 2) // NormalizerSpec normalizer_spec = 3
                {
                    var (start, end) = model.ReadLengthDelimited();
                    charsMap = ReadCharsMap(data, start, end) ?? charsMap;
                }
                else model.Skip(wireType);
            }
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentException or FormatException or OverflowException)
        {
            throw TokenizerFiles.Invalid(path, "it is not a SentencePiece model", e);
        }
        if (pieces.Count == 0) throw TokenizerFiles.Invalid(path, "it holds no pieces");
        return (pieces, charsMap);
    }

    /// <summary>NormalizerSpec's bytes precompiled_charsmap = 2; null when absent or empty (no normalization).</summary>
    private static byte[]? ReadCharsMap(byte[] data, int start, int end)
    {
        var reader = new ProtoReader(data, start, end);
        byte[]? charsMap = null;
        while (reader.Next(out int field, out int wireType))
        {
            if (field == 2 && wireType == 2)
            {
                var (s, e) = reader.ReadLengthDelimited();
                charsMap = e > s ? data[s..e] : null;
            }
            else reader.Skip(wireType);
        }
        return charsMap;
    }

    private static (string, double, int) ReadPiece(byte[] data, int start, int end)
    {
        var reader = new ProtoReader(data, start, end);
        string piece = "";
        float score = 0;
        int type = 1; // NORMAL unless said otherwise
        while (reader.Next(out int field, out int wireType))
        {
            if (field == 1 && wireType == 2)
            {
                var (s, e) = reader.ReadLengthDelimited();
                piece = Encoding.UTF8.GetString(data, s, e - s);
            }
            else if (field == 2 && wireType == 5) score = reader.ReadFloat();
            else if (field == 3 && wireType == 0) type = (int)reader.ReadVarint();
            else reader.Skip(wireType);
        }
        return (piece, score, type);
    }

    /// <summary>Just enough protobuf wire format to walk a message's fields.</summary>
    private sealed class ProtoReader(byte[] data, int position, int end)
    {
        public bool Next(out int field, out int wireType)
        {
            field = wireType = 0;
            if (position >= end) return false;
            ulong key = ReadVarint();
            field = (int)(key >> 3);
            wireType = (int)(key & 7);
            return true;
        }

        public ulong ReadVarint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = data[position++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return value;
            }
            throw new FormatException("varint longer than 10 bytes");
        }

        public float ReadFloat()
        {
            float value = BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(position, 4));
            position += 4;
            return value;
        }

        public (int Start, int End) ReadLengthDelimited()
        {
            int length = checked((int)ReadVarint());
            int start = position;
            position += length;
            if (length < 0 || position > end) throw new FormatException("field runs past its message");
            return (start, position);
        }

        public void Skip(int wireType)
        {
            switch (wireType)
            {
                case 0: ReadVarint(); break;
                case 1: position += 8; break;
                case 2: ReadLengthDelimited(); break;
                case 5: position += 4; break;
                default: throw new FormatException($"unknown wire type {wireType}");
            }
        }
    }
}
