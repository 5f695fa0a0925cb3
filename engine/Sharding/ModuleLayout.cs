using Diffusion.Engine.IO;
using Diffusion.Engine.Models;

using Diffusion.Engine.Devices;

namespace Diffusion.Engine.Sharding;


/// <summary>
/// A module of a model's tree as the planner sees it. A unit is placed whole on one device: a no-split block
/// (FluxTransformerBlock, a UNet down/mid/up block, a T5 block, a CLIP encoder layer) or a leftover top-level module
/// (embeddings, norms, projections). Containers (the model, block lists, T5's encoder stack) are placed whole when they
/// fit, else split into their children, as accelerate splits a module that does not fit.
/// </summary>
public sealed class LayoutNode
{
    private readonly List<LayoutNode> _children = new();

    internal LayoutNode(string path, string kind, bool isUnit, bool isBlock)
    {
        Path = path; Kind = kind; IsUnit = isUnit; IsBlock = isBlock;
    }

    /// <summary>Module path from the model ("" for the model itself), e.g. "transformer_blocks.3".</summary>
    public string Path { get; }
    /// <summary>The diffusers/transformers class of a block (e.g. FluxTransformerBlock), "ModuleList" for block lists, else "Module".</summary>
    public string Kind { get; }
    public bool IsUnit { get; }
    public bool IsBlock { get; }
    /// <summary>Bytes of its weights at the planned dtype.</summary>
    public long Bytes { get; internal set; }
    public IReadOnlyList<LayoutNode> Children => _children;

    internal void Add(LayoutNode child) => _children.Add(child);
    internal void SortChildren(Comparison<LayoutNode> order) => _children.Sort(order);

    public IEnumerable<LayoutNode> Units() => IsUnit ? [this] : _children.SelectMany(c => c.Units());

    public override string ToString() => $"{(Path.Length == 0 ? "(model)" : Path)} {Kind} {MemorySize.Format(Bytes)}";
}

/// <summary>
/// What a device-map planner needs of one model, read from its safetensors headers and config.json without loading
/// any weight: the module tree down to the units, each unit's size at the planned dtype, and accelerate's figures
/// (mean size of the final modules).
/// </summary>
public sealed class ModuleLayout
{
    private readonly Dictionary<string, LayoutNode> _byPath;
    private readonly Dictionary<string, string> _unitOfTensor;

    internal ModuleLayout(string className, string dtype, LayoutNode root, Dictionary<string, string> unitOfTensor, long meanLeafModuleBytes, long elements)
    {
        ClassName = className; DType = dtype; Root = root; _unitOfTensor = unitOfTensor; MeanLeafModuleBytes = meanLeafModuleBytes; Elements = elements;
        _byPath = new Dictionary<string, LayoutNode>(StringComparer.Ordinal);
        void Index(LayoutNode n) { _byPath[n.Path] = n; foreach (var c in n.Children) Index(c); }
        Index(root);
        Units = root.Units().ToList();
    }

    public string ClassName { get; }
    public string DType { get; }
    public LayoutNode Root { get; }
    /// <summary>The units in execution order.</summary>
    public IReadOnlyList<LayoutNode> Units { get; }
    public long TotalBytes => Root.Bytes;
    /// <summary>Number of weights (elements of every tensor in the checkpoint).</summary>
    public long Elements { get; }
    /// <summary>accelerate's mean size of the final modules (modules without child modules), used by its balanced buffer.</summary>
    public long MeanLeafModuleBytes { get; }
    /// <summary>True when the model has units below the model itself (it can be split across devices).</summary>
    public bool IsSplittable => !Root.IsUnit;

    public LayoutNode? Find(string path) => _byPath.GetValueOrDefault(path);

    /// <summary>The unit holding a tensor (module key), or null when the tensor is not in this model.</summary>
    public string? UnitOf(string tensorName) => _unitOfTensor.GetValueOrDefault(tensorName);

    public IEnumerable<string> TensorsOf(string unitPath) => _unitOfTensor.Where(kv => kv.Value == unitPath).Select(kv => kv.Key);
}

/// <summary>How each supported model class splits into units, and layouts built from headers.</summary>
public static class ModuleLayouts
{
    /// <summary>Layout of a component folder: its safetensors headers (single or sharded, of <paramref name="variant"/> if given) and config.json (absent: the class's defaults).</summary>
    public static ModuleLayout FromComponentFolder(string componentDir, string className, string dtype, string? variant = null)
    {
        var model = ModelClasses.Find(className);
        var source = WeightSource.FromFiles(WeightLoader.FindWeightFiles(componentDir, variant), model?.ModuleKey);
        var configPath = Path.Combine(componentDir, "config.json");
        var config = model is not null && File.Exists(configPath) ? model.ReadConfig(configPath) : null;
        return FromSource(source, className, dtype, config);
    }

    /// <summary>Layout from a weight source's headers (a folder's files or a single-file checkpoint's key map) and the model's typed config.</summary>
    public static ModuleLayout FromSource(WeightSource source, string className, string dtype, IModelConfig? config) =>
        FromTensors(className, source.Describe(), dtype, config);

    /// <summary>Layout from a list of tensors (module keys, checkpoint dtypes and shapes); dtype is the one the model will be loaded in.</summary>
    /// <param name="config">The model's typed config (null: the class's defaults); its registration gives the no-split units.</param>
    public static ModuleLayout FromTensors(string className, IEnumerable<TensorEntry> tensors, string dtype, IModelConfig? config = null)
    {
        var rules = RulesFor(className, config);
        var list = tensors.ToList();
        var root = rules is null
            ? new LayoutNode("", className, isUnit: true, isBlock: false)
            : new LayoutNode("", className, isUnit: false, isBlock: false);
        var nodes = new Dictionary<string, LayoutNode>(StringComparer.Ordinal) { [""] = root };
        var unitOf = new Dictionary<string, string>(StringComparer.Ordinal);
        var moduleBytes = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var t in list)
        {
            long bytes = checked(t.Elements * ElementSize(t, dtype, rules));
            var unit = rules is null ? root : Walk(root, t.Name, rules, nodes);
            unitOf[t.Name] = unit.Path;
            for (var n = unit.Path; ; n = Parent(n))
            {
                nodes[n].Bytes += bytes;
                if (n.Length == 0) break;
            }
            var module = Parent(t.Name);
            moduleBytes[module] = moduleBytes.GetValueOrDefault(module) + bytes;
        }
        if (rules is not null) Order(root, rules);
        return new ModuleLayout(className, dtype, root, unitOf, MeanLeafBytes(moduleBytes), list.Sum(t => t.Elements));
    }

    /// <summary>The no-split units of a registered class (<see cref="ModelClass"/>); other classes (the VAE, unknown ones) are one unit.</summary>
    private static LayoutRules? RulesFor(string className, IModelConfig? config) =>
        ModelClasses.Find(className) is { } model ? model.Layout(config ?? model.DefaultConfig()) : null;

    /// <summary>Finds or creates the nodes from the root down to the unit holding the tensor.</summary>
    private static LayoutNode Walk(LayoutNode root, string tensorName, LayoutRules rules, Dictionary<string, LayoutNode> nodes)
    {
        var parts = tensorName.Split('.');
        var node = root;
        int i = 0;
        while (true)
        {
            if (i >= parts.Length - 1) // a tensor directly on a container: treat the container's own tensors as one leftover unit
                return Child(node, Join(node.Path, "_direct"), "Module", unit: true, block: false, nodes);
            var path = Join(node.Path, parts[i]);
            if (rules.BlockLists.TryGetValue(path, out var kindOf))
            {
                var list = Child(node, path, "ModuleList", unit: false, block: false, nodes);
                if (i + 2 >= parts.Length || !int.TryParse(parts[i + 1], out var index))
                    return Child(list, Join(path, "_direct"), "Module", unit: true, block: false, nodes);
                return Child(list, Join(path, parts[i + 1]), kindOf(index), unit: true, block: true, nodes);
            }
            if (rules.SingleBlocks.TryGetValue(path, out var kind))
                return Child(node, path, kind, unit: true, block: true, nodes);
            if (rules.Containers.ContainsKey(path))
            {
                node = Child(node, path, "Module", unit: false, block: false, nodes);
                i++;
                continue;
            }
            return Child(node, path, "Module", unit: true, block: false, nodes);
        }
    }

    private static LayoutNode Child(LayoutNode parent, string path, string kind, bool unit, bool block, Dictionary<string, LayoutNode> nodes)
    {
        if (nodes.TryGetValue(path, out var existing)) return existing;
        var n = new LayoutNode(path, kind, unit, block);
        parent.Add(n);
        nodes[path] = n;
        return n;
    }

    /// <summary>Children in execution order: the rule's order, blocks by number, anything else after, by name.</summary>
    private static void Order(LayoutNode node, LayoutRules rules)
    {
        if (node.IsUnit) return;
        var named = rules.Containers.GetValueOrDefault(node.Path) ?? [];
        node.SortChildren((a, b) =>
        {
            var ka = Key(a.Path); var kb = Key(b.Path);
            int c = ka.Rank.CompareTo(kb.Rank);
            if (c != 0) return c;
            c = ka.Number.CompareTo(kb.Number);
            return c != 0 ? c : string.CompareOrdinal(a.Path, b.Path);
        });
        foreach (var c in node.Children) Order(c, rules);

        (int Rank, long Number) Key(string path)
        {
            var last = path[(path.LastIndexOf('.') + 1)..];
            int rank = Array.IndexOf(named, last);
            if (rank >= 0) return (rank, 0);
            return long.TryParse(last, out var n) ? (named.Length, n) : (named.Length + 1, 0);
        }
    }

    private static int ElementSize(TensorEntry t, string dtype, LayoutRules? rules)
    {
        int stored = DTypes.ElementSize(t.DType);
        if (t.DType is not ("F32" or "F16" or "BF16" or "F64")) return Math.Max(stored, 1); // integers keep their type
        var target = rules?.SpecialDType?.Invoke(t.Name, dtype) ?? dtype;
        return DTypeSize(target);
    }

    /// <summary>Bytes per element of a dtype name (float32, float16, bfloat16).</summary>
    public static int DTypeSize(string dtype) => dtype switch
    {
        "float32" => 4,
        "float16" or "bfloat16" => 2,
        _ => throw new DiffusionException("UnknownDType", DiffusionErrorKind.InvalidArgument,
            $"dtype '{dtype}' is not supported. Use float32, float16 or bfloat16.", "DType"),
    };

    /// <summary>
    /// accelerate's get_module_leaves on compute_module_sizes, twice: the final modules are the modules holding tensors
    /// that have no child module holding tensors; their mean size, as an integer.
    /// </summary>
    private static long MeanLeafBytes(Dictionary<string, long> moduleBytes)
    {
        var withChildren = new HashSet<string>(StringComparer.Ordinal);
        foreach (var m in moduleBytes.Keys)
            for (var p = m; p.Length > 0;)
            {
                var parent = Parent(p);
                if (!withChildren.Add(parent) && parent.Length > 0) break;
                p = parent;
            }
        var leaves = moduleBytes.Where(kv => kv.Key.Length > 0 && !withChildren.Contains(kv.Key)).Select(kv => kv.Value).ToList();
        return leaves.Count == 0 ? 0 : (long)(leaves.Sum(v => (double)v) / leaves.Count);
    }

    private static string Parent(string path) => path.LastIndexOf('.') is var i && i < 0 ? "" : path[..i];
    private static string Join(string a, string b) => a.Length == 0 ? b : a + "." + b;
}
