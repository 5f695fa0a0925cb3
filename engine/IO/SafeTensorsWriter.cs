using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.IO;

/// <summary>
/// Writes tensors to a safetensors file the way the reference (Rust) implementation does: u64 little-endian header
/// length, the JSON header padded with spaces to a multiple of 8 bytes, then the raw little-endian data. The file is
/// written atomically (temp file + rename, no-replace unless asked to overwrite), so a failure never leaves a half-written file behind.
/// </summary>
public static class SafeTensorsWriter
{
    private const int HeaderAlignment = 8;
    private const long ChunkBytes = 64L * 1024 * 1024;

    /// <summary>
    /// Saves <paramref name="tensors"/> (any device, any layout: they are copied to contiguous CPU memory) to
    /// <paramref name="path"/>, replacing an existing file unless <paramref name="overwrite"/> is false (then an existing
    /// file, also one another writer creates meanwhile, fails with TensorFileExists). Header entries are sorted by name;
    /// the data is laid out largest element size first (then by name) so every tensor starts aligned to its element size.
    /// </summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = true)
    {
        path = Path.GetFullPath(path);
        foreach (var name in tensors.Keys)
            if (name.Length == 0 || name == "__metadata__")
                throw new DiffusionException("SafeTensorsInvalidName", DiffusionErrorKind.InvalidArgument,
                    $"Cannot save a tensor named '{name}' to '{path}': safetensors names must be non-empty and not \"__metadata__\".", path);

        using var scope = torch.NewDisposeScope();
        var entries = tensors
            .Select(kv => new Entry(kv.Key, DTypes.FromScalarType(kv.Value.dtype, path, kv.Key), kv.Value.detach().cpu().contiguous()))
            .ToList();
        var dataOrder = entries
            .OrderByDescending(e => e.Data.ElementSize)
            .ThenBy(e => e.Name, StringComparer.Ordinal)
            .ToList();
        long offset = 0;
        foreach (var e in dataOrder)
        {
            e.Begin = offset;
            offset += e.Data.NumberOfElements * e.Data.ElementSize;
        }
        byte[] header = Header(entries, metadata);

        try
        {
            AtomicFile.Write(path, overwrite, stream =>
            {
                stream.Write(BitConverter.GetBytes((ulong)header.Length));
                stream.Write(header);
                foreach (var e in dataOrder) WriteData(stream, e.Data);
            });
        }
        catch (TargetExistsException)
        {
            throw new DiffusionException("TensorFileExists", DiffusionErrorKind.InvalidOperation,
                $"'{path}' already exists. Use -Force to overwrite it, or choose another -Path.", path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new DiffusionException("SafeTensorsWriteFailed", DiffusionErrorKind.ResourceUnavailable,
                $"Could not write the weights file '{path}': {ex.Message} Check that the folder is writable and the disk has space.", path, ex);
        }
    }

    private sealed class Entry(string name, string dtype, Tensor data)
    {
        public string Name { get; } = name;
        public string DType { get; } = dtype;
        public Tensor Data { get; } = data;
        public long Begin { get; set; }
        public long End => Begin + Data.NumberOfElements * Data.ElementSize;
    }

    /// <summary>The JSON header ("__metadata__" first, then tensors by name), padded with spaces to a multiple of 8 bytes.</summary>
    private static byte[] Header(List<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                    json.WriteString(key, value);
                json.WriteEndObject();
            }
            foreach (var e in entries.OrderBy(e => e.Name, StringComparer.Ordinal))
            {
                json.WriteStartObject(e.Name);
                json.WriteString("dtype", e.DType);
                json.WriteStartArray("shape");
                foreach (var d in e.Data.shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(e.Begin);
                json.WriteNumberValue(e.End);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int padding = (HeaderAlignment - (int)(buffer.Length % HeaderAlignment)) % HeaderAlignment;
        for (int i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    /// <summary>Writes a contiguous CPU tensor's bytes; Tensor.bytes is an int-length span, so large tensors go in chunks.</summary>
    private static void WriteData(Stream stream, Tensor data)
    {
        if (data.NumberOfElements == 0) return;
        using var flat = data.reshape(-1);
        long chunkElements = Math.Max(1, ChunkBytes / data.ElementSize);
        for (long start = 0; start < flat.NumberOfElements; start += chunkElements)
        {
            using var chunk = flat.narrow(0, start, Math.Min(chunkElements, flat.NumberOfElements - start));
            stream.Write(chunk.bytes);
        }
    }
}
