using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.IO;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A safetensors file, memory-mapped: the header is parsed and validated on open, each tensor is read only
/// when asked for. Format: u64 little-endian header length N, N bytes of JSON
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, long dataStart,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path; _map = map; _view = view; _dataStart = dataStart; Tensors = tensors; Metadata = metadata;
    }

    public static SafeTensorsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        if (!File.Exists(path))
            throw new DiffusionException("SafeTensorsFileNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The weights file '{path}' does not exist. Check the model folder, or download the model again.", path);
        long fileLength = new FileInfo(path).Length;
        if (fileLength < 8)
            throw Corrupt(path, $"it is {fileLength} bytes long, shorter than the 8-byte header length");

        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        Span<byte> lenBytes = stackalloc byte[8];
        fs.ReadExactly(lenBytes);
        ulong headerLen = BitConverter.ToUInt64(lenBytes);
        if (headerLen == 0 || headerLen > (ulong)MaxHeaderBytes || 8 + (long)headerLen > fileLength)
            throw Corrupt(path, $"the header length field says {headerLen} bytes but the file has {fileLength} bytes (truncated download?)");
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
                throw Corrupt(path, "its header is not a JSON object");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind == JsonValueKind.Object)
                        foreach (var m in prop.Value.EnumerateObject())
                            metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors[prop.Name] = ParseEntry(path, prop, dataLength);
            }
        }

        MemoryMappedFile? map = null; MemoryMappedViewAccessor? view = null;
        if (dataLength > 0)
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        return new SafeTensorsFile(path, map, view, dataStart, tensors, metadata);
    }

    private static SafeTensorInfo ParseEntry(string path, JsonProperty prop, long dataLength)
    {
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Corrupt(path, $"the header entry for tensor '{prop.Name}' lacks dtype, shape or data_offsets");
        var dtype = dt.GetString()!;
        var shape = sh.EnumerateArray().Select(e => e.TryGetInt64(out var x) && x >= 0 ? x : -1).ToArray();
        if (shape.Any(x => x < 0))
            throw Corrupt(path, $"tensor '{prop.Name}' has an invalid shape {sh.GetRawText()}");
        if (!off[0].TryGetInt64(out var begin) || !off[1].TryGetInt64(out var end) || begin < 0 || end < begin)
            throw Corrupt(path, $"tensor '{prop.Name}' has invalid data_offsets {off.GetRawText()}");
        if (end > dataLength)
            throw Corrupt(path, $"tensor '{prop.Name}' has data_offsets [{begin}, {end}] beyond the {dataLength} data bytes in the file (truncated download?)");
        var info = new SafeTensorInfo(prop.Name, dtype, shape, begin, end);
        int elemSize = DTypes.ElementSize(dtype);
        if (elemSize > 0 && info.ElementCount * elemSize != info.ByteLength)
            throw Corrupt(path, $"tensor '{prop.Name}' ({dtype}, shape [{string.Join(",", shape)}]) needs {info.ElementCount * elemSize} bytes but its data_offsets span {info.ByteLength}");
        return info;
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

    /// <summary>Reads a tensor and moves/casts it.</summary>
    public Tensor Load(string name, Device device, ScalarType? dtype = null)
    {
        using var cpu = Load(name);
        var target = dtype ?? cpu.dtype;
        if (cpu.device.type == device.type && cpu.device.index == device.index && cpu.dtype == target)
            return cpu.clone();
        return cpu.to(target, device);
    }

    private unsafe void CopyInto(Tensor t, SafeTensorInfo info)
    {
        byte* basePtr = null;
        _view!.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
        try
        {
            byte* src = basePtr + _view.PointerOffset + _dataStart + info.Begin;
            CopyBytes(t, src, info.ByteLength);
        }
        finally { _view.SafeMemoryMappedViewHandle.ReleasePointer(); }
    }

    /// <summary>Copies raw bytes into a contiguous CPU tensor; Tensor.bytes is an int-length Span, so large tensors go slice by slice along dim 0.</summary>
    private static unsafe void CopyBytes(Tensor t, byte* src, long byteLength)
    {
        if (byteLength <= int.MaxValue || t.dim() == 0 || t.shape[0] <= 1)
        {
            new ReadOnlySpan<byte>(src, checked((int)byteLength)).CopyTo(t.bytes);
            return;
        }
        long rows = t.shape[0];
        long rowBytes = byteLength / rows;
        long rowsPerChunk = Math.Max(1, (1L << 30) / rowBytes);
        for (long r = 0; r < rows; r += rowsPerChunk)
        {
            long n = Math.Min(rowsPerChunk, rows - r);
            using var slice = t.narrow(0, r, n);
            CopyBytes(slice, src + r * rowBytes, n * rowBytes);
        }
    }

    public void Dispose()
    {
        _view?.Dispose();
        _map?.Dispose();
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

    public static string FromScalarType(ScalarType t) => t switch
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
            $"Cannot write tensors of type {t} to safetensors.", null),
    };
}
