namespace Diffusion.Engine.Models;

/// <summary>
/// How a model class splits into units (its registration gives them: <see cref="ModelClass"/>): the children of each
/// container in execution order (module path → child names), the block lists (path → the class of block N) and the
/// single blocks (path → class), each block a unit placed whole; <paramref name="SpecialDType"/> gives the dtype a
/// tensor is kept in when it is not the load dtype (tensor name, load dtype → dtype).
/// </summary>
internal sealed record LayoutRules(
    Dictionary<string, string[]> Containers,
    Dictionary<string, Func<int, string>> BlockLists,
    Dictionary<string, string> SingleBlocks,
    Func<string, string, string>? SpecialDType = null);
