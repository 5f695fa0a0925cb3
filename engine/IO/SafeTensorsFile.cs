using Microsoft.Win32.SafeHandles;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.IO;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
    public long ElementCount => Shape.Aggregate(1L, (a, b) => checked(a * b));
}

/// <summary>
/// A safetensors file: the header is parsed and validated on open, each tensor is read only when asked for, with
/// positioned reads straight into the tensor's memory (no mapping: file pages never count as the process's memory). Format: u64 little-endian header length N, N bytes of JSON
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;
    private readonly SafeFileHandle? _handle;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    private static long s_bytesRead;
    /// <summary>Tensor bytes read from safetensors files by this process so far (for the loads' -Verbose report).</summary>
    public static long BytesReadTotal => Interlocked.Read(ref s_bytesRead);
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsFile(string path, SafeFileHandle? handle, long dataStart,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path; _handle = handle; _dataStart = dataStart; Tensors = tensors; Metadata = metadata;
    }

    public static SafeTensorsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        RegularFile.Require(path); // a dangling link, FIFO or device: a clear error instead of "missing" or a hang
        if (!File.Exists(path))
            throw new DiffusionException("SafeTensorsFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The weights file '{path}' does not exist. Check the model folder, or download the model again.", path);

        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = fs.Length; // the opened file's length: for a symbolic link (Hugging Face cache) its target's, not the link's
        if (fileLength < 8)
            throw Corrupt(path, $"it is {fileLength} bytes long, shorter than the 8-byte header length");
        Span<byte> lenBytes = stackalloc byte[8];
        fs.ReadExactly(lenBytes);
        ulong headerLen = BitConverter.ToUInt64(lenBytes);
        if (headerLen == 0 || headerLen > (ulong)MaxHeaderBytes)
            throw Corrupt(path, $"its header length field says {headerLen} bytes (valid: 1 to {MaxHeaderBytes})");
        if (8 + (long)headerLen > fileLength)
            throw Corrupt(path, $"its header length field says {headerLen} bytes but the file has only {fileLength} bytes (truncated download?)");
        var header = new byte[headerLen];
        fs.ReadExactly(header);
        long dataStart = 8 + (long)headerLen;
        long dataLength = fileLength - dataStart;

        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw Corrupt(path, $"its header is not valid JSON ({e.Message})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw Corrupt(path, $"its header is a JSON {doc.RootElement.ValueKind.ToString().ToLowerInvariant()}, not an object");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                    ReadMetadata(path, prop.Value, metadata);
                else if (!tensors.TryAdd(prop.Name, ParseEntry(path, prop, dataLength)))
                    throw Corrupt(path, $"its header lists tensor '{prop.Name}' twice");
            }
        }
        CheckDataLayout(path, tensors.Values, dataLength);

        var handle = dataLength > 0 ? File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess) : null;
        return new SafeTensorsFile(path, handle, dataStart, tensors, metadata);
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw Corrupt(path, "its \"__metadata__\" header entry is not an object of strings");
        foreach (var m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw Corrupt(path, $"its \"__metadata__\" value for '{m.Name}' is not a string");
            metadata[m.Name] = m.Value.GetString()!;
        }
    }

    private static SafeTensorInfo ParseEntry(string path, JsonProperty prop, long dataLength)
    {
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array)
            throw Corrupt(path, $"the header entry for tensor '{prop.Name}' lacks dtype, shape or data_offsets");
        var dtype = dt.GetString()!;
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var dim in sh.EnumerateArray())
            if (!TryGetCount(dim, out shape[i++]))
                throw Corrupt(path, $"tensor '{prop.Name}' has an invalid shape {sh.GetRawText()}");
        if (off.GetArrayLength() != 2 || !TryGetCount(off[0], out var begin) || !TryGetCount(off[1], out var end) || end < begin)
            throw Corrupt(path, $"tensor '{prop.Name}' has invalid data_offsets {off.GetRawText()}");
        if (end > dataLength)
            throw Corrupt(path, $"tensor '{prop.Name}' has data_offsets [{begin}, {end}] beyond the {dataLength} data bytes in the file (truncated download?)");
        long elements;
        try { elements = shape.Aggregate(1L, (a, b) => checked(a * b)); }
        catch (OverflowException) { throw Corrupt(path, $"tensor '{prop.Name}' has a shape {sh.GetRawText()} too large to exist"); }
        int elemSize = DTypes.ElementSize(dtype);
        if (elemSize > 0 && (elements > long.MaxValue / elemSize || elements * elemSize != end - begin))
            throw Corrupt(path, $"tensor '{prop.Name}' ({dtype}, shape [{string.Join(",", shape)}]) needs {(decimal)elements * elemSize} bytes but its data_offsets [{begin}, {end}] span {end - begin}");
        return new SafeTensorInfo(prop.Name, dtype, shape, begin, end);
    }

    private static bool TryGetCount(JsonElement e, out long value)
    {
        value = -1;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out value) && value >= 0;
    }

    /// <summary>Like the reference reader: the tensors' data must tile the data section exactly, without overlaps, gaps or trailing bytes.</summary>
    private static void CheckDataLayout(string path, IEnumerable<SafeTensorInfo> tensors, long dataLength)
    {
        long expected = 0;
        string? previous = null;
        foreach (var t in tensors.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (t.Begin < expected)
                throw Corrupt(path, $"the data of tensor '{t.Name}' (bytes {t.Begin}-{t.End}) overlaps tensor '{previous}'");
            if (t.Begin > expected)
                throw Corrupt(path, $"data bytes {expected}-{t.Begin} belong to no tensor");
            expected = t.End;
            previous = t.Name;
        }
        if (expected != dataLength)
            throw Corrupt(path, $"the tensors' data ends at byte {expected} of the {dataLength}-byte data section (extra bytes after the last tensor)");
    }

    internal static DiffusionException Corrupt(string path, string why) =>
        new("SafeTensorsCorrupt", DiffusionErrorKind.InvalidData,
            $"The weights file '{path}' is not a valid safetensors file: {why}. Download it again or re-save it with safetensors.", path);

    public bool Contains(string name) => Tensors.ContainsKey(name);

    /// <summary>Reads a tensor onto the CPU in its stored dtype (a copy: the file stays untouched).</summary>
    public Tensor Load(string name)
    {
        if (!Tensors.TryGetValue(name, out var info))
            throw new DiffusionException("SafeTensorNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The weights file '{Path}' has no tensor named '{name}'.", Path);
        var dtype = DTypes.ToScalarType(info.DType, Path, name);
        var t = torch.empty(info.Shape, dtype, torch.CPU);
        if (info.ByteLength > 0) CopyInto(t, info);
        return t;
    }

    /// <summary>Reads a tensor cast to <paramref name="dtype"/> (default: as stored) on <paramref name="device"/>; read once, converted only where needed.</summary>
    public Tensor Load(string name, Device device, ScalarType? dtype = null)
    {
        var cpu = Load(name);
        var target = dtype ?? cpu.dtype;
        if (device.type == DeviceType.CPU && cpu.dtype == target) return cpu; // already a fresh tensor of its own
        using (cpu) return cpu.to(target, device);
    }

    /// <summary>
    /// Reads <paramref name="rows"/> of a tensor (runs along dim 0, in order; null: all of it) into a new CPU tensor of
    /// <paramref name="shape"/> in its stored dtype: only those rows' bytes are read. A whole tensor may take another
    /// shape of the same size (a [C,C,1,1] conv kernel as a [C,C] linear weight).
    /// </summary>
    public Tensor Load(string name, long[] shape, IReadOnlyList<RowRange>? rows)
    {
        if (rows is null && Tensors.TryGetValue(name, out var whole) && whole.Shape.SequenceEqual(shape)) return Load(name);
        var info = Tensors.TryGetValue(name, out var found) ? found
            : throw new DiffusionException("SafeTensorNotFound", DiffusionErrorKind.ObjectNotFound, $"The weights file '{Path}' has no tensor named '{name}'.", Path);
        long rowCount = info.Shape.Length == 0 ? 1 : info.Shape[0];
        long rowBytes = rowCount == 0 ? 0 : info.ByteLength / rowCount;
        var ranges = rows ?? [new RowRange(0, rowCount)];
        long elements = shape.Aggregate(1L, (a, b) => checked(a * b));
        long bytes = ranges.Sum(r => r.Count) * rowBytes;
        if (ranges.Any(r => r.Start < 0 || r.Count < 0 || r.Start + r.Count > rowCount) || elements * DTypes.ElementSize(info.DType) != bytes)
            throw new ArgumentException($"Rows {string.Join(",", ranges)} of '{name}' [{string.Join(",", info.Shape)}] do not make a [{string.Join(",", shape)}] tensor.");
        var t = torch.empty(shape, DTypes.ToScalarType(info.DType, Path, name), torch.CPU);
        using var flat = t.view(-1);
        long elementsPerRow = rowCount == 0 ? 0 : info.ElementCount / rowCount, at = 0;
        foreach (var r in ranges)
        {
            if (r.Count == 0) continue;
            using var part = flat.narrow(0, at * elementsPerRow, r.Count * elementsPerRow);
            ReadContiguous(part, _dataStart + info.Begin + r.Start * rowBytes, r.Count * rowBytes, name);
            at += r.Count;
        }
        return t;
    }

    /// <summary>Bytes read per positioned read: Tensor.bytes is an int-length Span, so larger tensors go in chunks.</summary>
    internal const long ReadChunkBytes = 1L << 30;

    /// <summary>
    /// Reads a tensor's bytes into a contiguous CPU tensor, in chunks of at most <see cref="ReadChunkBytes"/> of its
    /// flattened elements, whatever its shape (a [1, 3e9] tensor is as readable as a [3e9] one).
    /// </summary>
    private void CopyInto(Tensor t, SafeTensorInfo info) => ReadContiguous(t, _dataStart + info.Begin, info.ByteLength, info.Name);

    /// <summary>Reads <paramref name="byteLength"/> bytes at <paramref name="offset"/> into a contiguous CPU tensor (a view is fine), in chunks.</summary>
    private void ReadContiguous(Tensor t, long offset, long byteLength, string name)
    {
        if (byteLength == 0) return;
        if (byteLength <= ReadChunkBytes) { ReadSpan(t.bytes, offset, name); return; }
        using var flat = t.view(-1);
        long elementSize = byteLength / flat.NumberOfElements;
        long chunkElements = Math.Max(1, ReadChunkBytes / elementSize);
        for (long start = 0; start < flat.NumberOfElements; start += chunkElements)
        {
            using var chunk = flat.narrow(0, start, Math.Min(chunkElements, flat.NumberOfElements - start));
            ReadSpan(chunk.bytes, offset + start * elementSize, name);
        }
    }

    private void ReadSpan(Span<byte> span, long offset, string name)
    {
        for (int done = 0; done < span.Length;)
        {
            int n = RandomAccess.Read(_handle!, span[done..], offset + done);
            if (n == 0)
                throw Corrupt(Path, $"the file ended while reading tensor '{name}' (it was changed or truncated after it was opened)");
            done += n;
        }
        Interlocked.Add(ref s_bytesRead, span.Length);
    }

    public void Dispose()
    {
        _handle?.Dispose();
    }
}

/// <summary>safetensors dtype names and their TorchSharp scalar types.</summary>
public static class DTypes
{
    public static int ElementSize(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
        _ => -1,
    };

    public static ScalarType ToScalarType(string dtype, string? path = null, string? tensor = null) => dtype switch
    {
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte,
        "BOOL" => ScalarType.Bool,
        _ => throw new DiffusionException("SafeTensorsUnsupportedDType", DiffusionErrorKind.NotSupported,
            $"Tensor '{tensor}' in '{path}' has dtype {dtype}, which this module does not read (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL).", path),
    };

    public static string FromScalarType(ScalarType t, string? path = null, string? tensor = null) => t switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new DiffusionException("SafeTensorsUnsupportedDType", DiffusionErrorKind.NotSupported,
            $"Cannot write tensor '{tensor}' to '{path}': safetensors has no dtype for {t} (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL).", path),
    };
}
