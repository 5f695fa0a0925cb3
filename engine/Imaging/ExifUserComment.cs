using System.Buffers.Binary;
using System.Text;

namespace Diffusion.Engine.Imaging;

/// <summary>
/// The EXIF UserComment of JPEG and WebP files, as AUTOMATIC1111 writes it with piexif: a big-endian TIFF block whose
/// Exif IFD holds one UserComment (tag 0x9286, UNDEFINED) of "UNICODE\0" + the text in UTF-16 big-endian. JPEG carries it
/// in an APP1 "Exif\0\0" segment, WebP in an EXIF chunk (with a VP8X header that announces it).
/// </summary>
internal static class ExifUserComment
{
    private const ushort ExifIfdPointerTag = 0x8769, UserCommentTag = 0x9286;
    private static readonly byte[] ExifHeader = "Exif\0\0"u8.ToArray();
    private static readonly byte[] UnicodeCode = "UNICODE\0"u8.ToArray();
    private static readonly byte[] AsciiCode = "ASCII\0\0\0"u8.ToArray();

    /// <summary>The TIFF block: header, IFD0 with the Exif IFD pointer, the Exif IFD with the UserComment, the comment.</summary>
    internal static byte[] BuildTiff(string text)
    {
        var comment = UnicodeCode.Concat(Encoding.BigEndianUnicode.GetBytes(text)).ToArray();
        const int ifd0 = 8, exifIfd = ifd0 + 2 + 12 + 4, data = exifIfd + 2 + 12 + 4;
        var tiff = new byte[data + comment.Length];
        var s = tiff.AsSpan();
        "MM"u8.CopyTo(s);
        BinaryPrimitives.WriteUInt16BigEndian(s[2..], 42);
        BinaryPrimitives.WriteUInt32BigEndian(s[4..], ifd0);
        WriteIfd(s[ifd0..], ExifIfdPointerTag, type: 4, count: 1, value: exifIfd);
        WriteIfd(s[exifIfd..], UserCommentTag, type: 7, count: (uint)comment.Length, value: data);
        comment.CopyTo(s[data..]);
        return tiff;
    }

    private static void WriteIfd(Span<byte> at, ushort tag, ushort type, uint count, uint value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(at, 1); // one entry
        BinaryPrimitives.WriteUInt16BigEndian(at[2..], tag);
        BinaryPrimitives.WriteUInt16BigEndian(at[4..], type);
        BinaryPrimitives.WriteUInt32BigEndian(at[6..], count);
        BinaryPrimitives.WriteUInt32BigEndian(at[10..], value);
        BinaryPrimitives.WriteUInt32BigEndian(at[14..], 0); // no next IFD
    }

    /// <summary>The JPEG with an APP1 Exif segment after SOI (and after the JFIF APP0, which must come first).</summary>
    public static byte[] InsertIntoJpeg(byte[] jpeg, string text)
    {
        var payload = ExifHeader.Concat(BuildTiff(text)).ToArray();
        if (payload.Length + 2 > ushort.MaxValue)
            throw new DiffusionException("ImageParametersTooLong", DiffusionErrorKind.InvalidArgument,
                $"The generation parameters ({text.Length} characters) do not fit a JPEG's EXIF segment (64 KB). Save as .png, or shorten the prompt.");
        int at = 2;
        if (jpeg.Length > 4 && jpeg[2] == 0xFF && jpeg[3] == 0xE0) at = 4 + BinaryPrimitives.ReadUInt16BigEndian(jpeg.AsSpan(4));
        var segment = new byte[4 + payload.Length];
        segment[0] = 0xFF; segment[1] = 0xE1;
        BinaryPrimitives.WriteUInt16BigEndian(segment.AsSpan(2), (ushort)(payload.Length + 2));
        payload.CopyTo(segment, 4);
        return [.. jpeg.AsSpan(0, at), .. segment, .. jpeg.AsSpan(at)];
    }

    /// <summary>The WebP as an extended file: VP8X (EXIF flag set) first, the image chunks, then an EXIF chunk.</summary>
    public static byte[] InsertIntoWebp(byte[] webp, int width, int height, string text)
    {
        var chunks = new List<byte[]>();
        var body = webp.AsSpan(12);
        bool hasVp8x = body.Length >= 8 && body[..4].SequenceEqual("VP8X"u8);
        if (!hasVp8x)
        {
            var vp8x = new byte[18];
            "VP8X"u8.CopyTo(vp8x);
            BinaryPrimitives.WriteUInt32LittleEndian(vp8x.AsSpan(4), 10);
            WriteUInt24(vp8x.AsSpan(12), width - 1);
            WriteUInt24(vp8x.AsSpan(15), height - 1);
            chunks.Add(vp8x);
        }
        var rest = body.ToArray();
        if (hasVp8x) rest[8] |= 0x08;
        else chunks[0][8] = 0x08; // EXIF flag
        chunks.Add(rest);
        var tiff = BuildTiff(text);
        var exif = new byte[8 + tiff.Length + (tiff.Length & 1)];
        "EXIF"u8.CopyTo(exif);
        BinaryPrimitives.WriteUInt32LittleEndian(exif.AsSpan(4), (uint)tiff.Length);
        tiff.CopyTo(exif, 8);
        chunks.Add(exif);
        var content = chunks.SelectMany(c => c).ToArray();
        var file = new byte[12 + content.Length];
        "RIFF"u8.CopyTo(file);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(4), (uint)(4 + content.Length));
        "WEBP"u8.CopyTo(file.AsSpan(8));
        content.CopyTo(file, 12);
        return file;
    }

    private static void WriteUInt24(Span<byte> at, int value)
    {
        at[0] = (byte)value; at[1] = (byte)(value >> 8); at[2] = (byte)(value >> 16);
    }

    /// <summary>The UserComment of the first APP1 Exif segment before the image data; null when there is none.</summary>
    public static string? ReadFromJpeg(byte[] jpeg)
    {
        int i = 2;
        while (i + 4 <= jpeg.Length && jpeg[i] == 0xFF)
        {
            byte marker = jpeg[i + 1];
            if (marker == 0xDA || marker == 0xD9) break; // start of scan / end of image
            int length = BinaryPrimitives.ReadUInt16BigEndian(jpeg.AsSpan(i + 2));
            if (length < 2 || i + 2 + length > jpeg.Length) break;
            var payload = jpeg.AsSpan(i + 4, length - 2);
            if (marker == 0xE1 && payload.StartsWith(ExifHeader)) return ReadTiff(payload[ExifHeader.Length..]);
            i += 2 + length;
        }
        return null;
    }

    /// <summary>The UserComment of a WebP's EXIF chunk; null when there is none.</summary>
    public static string? ReadFromWebp(byte[] webp)
    {
        int i = 12;
        while (i + 8 <= webp.Length)
        {
            var id = webp.AsSpan(i, 4);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(webp.AsSpan(i + 4));
            if (i + 8 + size > webp.Length) break;
            if (id.SequenceEqual("EXIF"u8))
            {
                var data = webp.AsSpan(i + 8, (int)size);
                return ReadTiff(data.StartsWith(ExifHeader) ? data[ExifHeader.Length..] : data);
            }
            i += 8 + (int)size + (int)(size & 1);
        }
        return null;
    }

    /// <summary>The UserComment of a TIFF block (either byte order); null when it has none or is malformed.</summary>
    internal static string? ReadTiff(ReadOnlySpan<byte> tiff)
    {
        if (tiff.Length < 8) return null;
        bool big = tiff[0] == (byte)'M';
        uint U32(ReadOnlySpan<byte> s, int at) => big ? BinaryPrimitives.ReadUInt32BigEndian(s[at..]) : BinaryPrimitives.ReadUInt32LittleEndian(s[at..]);
        ushort U16(ReadOnlySpan<byte> s, int at) => big ? BinaryPrimitives.ReadUInt16BigEndian(s[at..]) : BinaryPrimitives.ReadUInt16LittleEndian(s[at..]);
        (uint Count, uint Value)? Find(ReadOnlySpan<byte> s, uint ifd, ushort tag)
        {
            if (ifd + 2 > s.Length) return null;
            int n = U16(s, (int)ifd);
            for (int k = 0; k < n; k++)
            {
                int entry = (int)ifd + 2 + 12 * k;
                if (entry + 12 > s.Length) return null;
                if (U16(s, entry) == tag) return (U32(s, entry + 4), U32(s, entry + 8));
            }
            return null;
        }
        var exifPointer = Find(tiff, U32(tiff, 4), ExifIfdPointerTag);
        if (exifPointer is null) return null;
        var comment = Find(tiff, exifPointer.Value.Value, UserCommentTag);
        if (comment is null || comment.Value.Count < 8 || comment.Value.Count <= 4) return null;
        var (count, offset) = comment.Value;
        if (offset + count > tiff.Length) return null;
        var bytes = tiff.Slice((int)offset, (int)count);
        var code = bytes[..8];
        var value = bytes[8..];
        if (code.SequenceEqual(UnicodeCode))
            return (big ? Encoding.BigEndianUnicode : Encoding.Unicode).GetString(value).TrimEnd('\0');
        if (code.SequenceEqual(AsciiCode) || code.SequenceEqual(new byte[8]))
            return Encoding.UTF8.GetString(value).TrimEnd('\0');
        return Encoding.UTF8.GetString(value).TrimEnd('\0');
    }
}
