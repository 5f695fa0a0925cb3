using Diffusion.Engine.IO;

namespace Diffusion.Engine.Models;

/// <summary>Where one module tensor comes from in a single-file checkpoint: a stored key, maybe some of its rows, maybe reshaped.</summary>
public sealed record KeyMapping(string ModuleKey, string SourceKey, long[] Shape, IReadOnlyList<RowRange>? Rows = null);

/// <summary>
/// Converts the keys of one model's part of a single-file checkpoint (the tensors under its prefix, prefix removed)
/// into the diffusers model's keys, from the header alone: what diffusers' <c>convert_*_checkpoint</c> functions do to
/// the tensors, done as a plan of reads, so no tensor is copied or held twice.
/// </summary>
internal abstract class KeyMap
{
    /// <summary>
    /// The mappings for the tensors of <paramref name="stored"/> (keys without the prefix); unknown keys throw.
    /// <paramref name="config"/> is the model's typed config (the -Config folder's config.json).
    /// </summary>
    public abstract IEnumerable<KeyMapping> Map(IReadOnlyDictionary<string, SafeTensorInfo> stored, IModelConfig config, string prefix, string file);

    /// <summary>The module tensor is the stored one as it is.</summary>
    protected static KeyMapping Same(string moduleKey, string sourceKey, SafeTensorInfo info) => new(moduleKey, sourceKey, info.Shape);

    /// <summary>The module tensor is <paramref name="count"/> rows of the stored one from <paramref name="start"/>.</summary>
    protected static KeyMapping Rows(string moduleKey, string sourceKey, SafeTensorInfo info, long start, long count) =>
        new(moduleKey, sourceKey, [count, .. info.Shape.Skip(1)], [new RowRange(start, count)]);

    protected static DiffusionException Unknown(string file, string prefix, IEnumerable<string> keys, string model)
    {
        var list = keys.Take(5).Select(k => prefix + k).ToList();
        return new DiffusionException("SingleFileKeyUnknown", DiffusionErrorKind.InvalidData,
            $"'{file}' has weights under '{prefix}' that a {model} does not have: {string.Join(", ", list)}{(keys.Count() > 5 ? $" (+{keys.Count() - 5} more)" : "")}. " +
            "The checkpoint is a variant of the architecture this module does not convert, or it is damaged; convert it with diffusers (from_single_file, then save_pretrained) and load the folder.", file);
    }

}
