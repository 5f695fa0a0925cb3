using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.IO;

/// <summary>A run of rows (along dim 0) of a stored tensor: a contiguous byte range of its data.</summary>
public readonly record struct RowRange(long Start, long Count);

/// <summary>
/// Where one module tensor comes from: a tensor of a safetensors file as it is, or rearranged on the way in (rows of a
/// fused tensor, its halves in another order, a 1x1 conv kernel read as a linear weight). <see cref="Rows"/>: the rows
/// of the stored tensor, in order, that make up the module tensor (null: all of it); <see cref="Shape"/>: the module's shape.
/// </summary>
public sealed record MappedTensor(string ModuleKey, SafeTensorsFile File, string SourceKey, long[] Shape, IReadOnlyList<RowRange>? Rows = null)
{
    public string DType => File.Tensors[SourceKey].DType;

    /// <summary>The source key, with the rows taken when only part of it is used (for error messages).</summary>
    public string Describe() => Rows is null ? SourceKey : $"{SourceKey}[rows {string.Join(", ", Rows.Select(r => $"{r.Start}..{r.Start + r.Count}"))}]";

    /// <summary>Reads the tensor onto the CPU in its stored dtype; only the bytes it uses are read.</summary>
    public Tensor Load() => File.Load(SourceKey, Shape, Rows);

    /// <summary>Reads the tensor cast to <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public Tensor Load(Device device, ScalarType dtype)
    {
        var cpu = Load();
        if (device.type == DeviceType.CPU && cpu.dtype == dtype) return cpu;
        using (cpu) return cpu.to(dtype, device);
    }
}

/// <summary>
/// Where a component's weights come from, under the module's keys: a folder's safetensors files (one or sharded),
/// keys as stored (or renamed by a <c>moduleKey</c> function), or a single-file checkpoint read through a key map. The
/// loaders (<see cref="CheckedWeights"/>) and the device-map planner (from headers) both take their tensors from here.
/// </summary>
public sealed class WeightSource
{
    private readonly Func<IReadOnlyList<SafeTensorsFile>, IEnumerable<MappedTensor>> _map;

    private WeightSource(IReadOnlyList<string> files, string label, Func<IReadOnlyList<SafeTensorsFile>, IEnumerable<MappedTensor>> map)
    {
        Files = files; Label = label; _map = map;
    }

    public IReadOnlyList<string> Files { get; }
    /// <summary>What error messages call the weights (a file, or the folder of shards).</summary>
    public string Label { get; }

    /// <summary>A component's weight files, each tensor under its own key (or <paramref name="moduleKey"/>'s rename).</summary>
    public static WeightSource FromFiles(IReadOnlyList<string> files, Func<string, string>? moduleKey = null)
    {
        if (files.Count == 0) throw new ArgumentException("At least one weights file is needed.", nameof(files));
        var label = files.Count == 1 ? Path.GetFullPath(files[0]) : Path.GetDirectoryName(Path.GetFullPath(files[0]))!;
        return new WeightSource(files, label, opened => opened.SelectMany(f => f.Tensors.Values
            .Select(t => new MappedTensor(moduleKey?.Invoke(t.Name) ?? t.Name, f, t.Name, t.Shape))));
    }

    /// <summary>One file whose tensors a key map turns into the module's (a single-file checkpoint).</summary>
    public static WeightSource FromMap(string file, string label, Func<SafeTensorsFile, IEnumerable<MappedTensor>> map) =>
        new([file], label, opened => map(opened[0]));

    internal IEnumerable<MappedTensor> Map(IReadOnlyList<SafeTensorsFile> opened) => _map(opened);

    /// <summary>Module key -> source, refusing a module key given twice.</summary>
    internal static Dictionary<string, MappedTensor> Index(IEnumerable<MappedTensor> mapped)
    {
        var where = new Dictionary<string, MappedTensor>(StringComparer.Ordinal);
        foreach (var m in mapped)
            if (!where.TryAdd(m.ModuleKey, m))
                throw new DiffusionException("WeightKeyDuplicated", DiffusionErrorKind.InvalidData,
                    where[m.ModuleKey].File == m.File
                        ? $"Weight '{m.ModuleKey}' comes from both '{where[m.ModuleKey].Describe()}' and '{m.Describe()}' in '{m.File.Path}'. The checkpoint holds the same weight twice; re-save it with one copy."
                        : $"Weight '{m.SourceKey}' is in both '{where[m.ModuleKey].File.Path}' and '{m.File.Path}'. Download the model again.", m.File.Path);
        return where;
    }

    /// <summary>The module's tensors as the headers describe them (module key, stored dtype, module shape); reads no data.</summary>
    public IReadOnlyList<TensorEntry> Describe()
    {
        var opened = new List<SafeTensorsFile>();
        try
        {
            foreach (var f in Files) opened.Add(SafeTensorsFile.Open(f));
            return Index(Map(opened)).Values.Select(m => new TensorEntry(m.ModuleKey, m.DType, m.Shape)).ToList();
        }
        finally
        {
            foreach (var f in opened) f.Dispose();
        }
    }
}
