using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Placement;

/// <summary>Where tensors are, and the tensors held in a forward's arguments and results (tensors, lists, arrays, tuples).</summary>
internal static class TensorDevices
{
    /// <summary>Whether <paramref name="t"/> lives on <paramref name="d"/> (cuda means cuda:0).</summary>
    public static bool IsOn(Tensor t, Device d) =>
        t.device_type == d.type && (d.type != DeviceType.CUDA || t.device_index == Math.Max(0, d.index));

    /// <summary>
    /// <paramref name="value"/> with each tensor in it replaced by <paramref name="map"/>'s result: a tensor, a
    /// Tensor[] or list of tensors (a new array or list), a value tuple (nullable or not, nested or not); anything else
    /// (numbers, shapes, null) as it is. The value itself when no tensor changed.
    /// </summary>
    public static T Map<T>(T value, Func<Tensor, Tensor> map) => (T)MapObject(value, map)!;

    /// <summary>The first tensor in <paramref name="value"/> (in argument order), or null.</summary>
    public static Tensor? First(object? value)
    {
        Tensor? found = null;
        MapObject(value, t => { found ??= t; return t; });
        return found;
    }

    private static object? MapObject(object? value, Func<Tensor, Tensor> map)
    {
        switch (value)
        {
            case null: return null;
            case Tensor t: return map(t);
            case Tensor[] array:
            {
                var mapped = array.Select(map).ToArray();
                return Same(mapped, array) ? array : mapped;
            }
            case IReadOnlyList<Tensor> list:
            {
                var mapped = list.Select(map).ToList();
                return Same(mapped, list) ? list : mapped;
            }
            case ITuple when value.GetType() is { IsValueType: true } type && type.FullName!.StartsWith("System.ValueTuple`", StringComparison.Ordinal):
            {
                var copy = RuntimeHelpers.GetObjectValue(value)!; // a box of its own (a copy of the value): its fields are set in place
                bool changed = false;
                foreach (var field in type.GetFields()) // Item1..Item7, then Rest (a nested tuple)
                {
                    var before = field.GetValue(copy);
                    var after = MapObject(before, map);
                    if (ReferenceEquals(before, after)) continue;
                    field.SetValue(copy, after);
                    changed = true;
                }
                return changed ? copy : value;
            }
            default: return value;
        }
    }

    private static bool Same(IReadOnlyList<Tensor> a, IReadOnlyList<Tensor> b)
    {
        for (int i = 0; i < a.Count; i++) if (!ReferenceEquals(a[i], b[i])) return false;
        return true;
    }
}
