using System.Reflection;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Diffusion.Engine.IO;

/// <summary>
/// Models built on torch's meta device and then filled from their checkpoints, as accelerate's init_empty_weights
/// and diffusers' low_cpu_mem_usage do: construction allocates nothing and draws no random initial weights, and
/// each tensor is then created once, from the file, already in its dtype and on its device. A 12B FLUX.1-dev
/// transformer loaded in bfloat16 onto a GPU so never exists in float32 in host memory.
/// </summary>
public static class MetaModules
{
    private static readonly FieldInfo? DeviceTypeField = typeof(nn.Module).GetField("_deviceType", BindingFlags.NonPublic | BindingFlags.Instance);
    private static readonly FieldInfo? DeviceIndexField = typeof(nn.Module).GetField("_deviceIndex", BindingFlags.NonPublic | BindingFlags.Instance);
    private static readonly MethodInfo RegisterParameter = typeof(nn.Module).GetMethod("ConditionallyRegisterParameter",
        BindingFlags.NonPublic | BindingFlags.Instance, [typeof(string), typeof(TorchSharp.Modules.Parameter)])
        ?? throw new MissingMethodException("TorchSharp's nn.Module.ConditionallyRegisterParameter(string, Parameter) is missing: this TorchSharp version is not supported.");
    private static readonly MethodInfo RegisterBuffer = typeof(nn.Module).GetMethod("ConditionallyRegisterBuffer",
        BindingFlags.NonPublic | BindingFlags.Instance, [typeof(string), typeof(Tensor), typeof(bool)])
        ?? throw new MissingMethodException("TorchSharp's nn.Module.ConditionallyRegisterBuffer(string, Tensor, bool) is missing: this TorchSharp version is not supported.");

    /// <summary>Whether any parameter or buffer of the module is still on the meta device (has no data).</summary>
    public static bool HasMetaTensors(nn.Module module) =>
        module.parameters().Any(p => p.device_type == DeviceType.META) || module.buffers().Any(b => b.device_type == DeviceType.META);

    /// <summary>
    /// Replaces the parameters and buffers of <paramref name="module"/> (recursively) by the tensors
    /// <paramref name="create"/> makes from each one's state_dict key (under <paramref name="prefix"/>), the old tensor
    /// and whether it is a parameter; where it returns null the old tensor stays. Unless <paramref name="keepShape"/> is
    /// false, a new tensor must have the old one's shape. New tensors take the old ones' places as TorchSharp's own
    /// Module.to does: through the module's property of that name, else its field, registered under the same name.
    /// </summary>
    public static void Replace(nn.Module module, Func<string, Tensor, bool, Tensor?> create, string prefix = "", bool keepShape = true)
    {
        using var _ = torch.no_grad();
        var modules = new List<(string Path, nn.Module Module)> { ("", module) };
        modules.AddRange(module.named_modules().Where(m => m.name.Length > 0));
        foreach (var (path, m) in modules)
        {
            var at = Join(prefix, path);
            Device? device = null;
            foreach (var (name, old) in m.named_parameters(recurse: false).ToList())
            {
                var key = Join(at, name);
                if (Checked(key, old, create(key, old, true), keepShape) is not { } data) continue;
                var replacement = new TorchSharp.Modules.Parameter(data, old.requires_grad);
                Set(m, name, replacement, isParameter: true, persistent: true);
                device = replacement.device;
            }
            var buffers = m.named_buffers(recurse: false).ToList();
            if (buffers.Count > 0)
            {
                var persistent = m.state_dict().Keys.Where(k => !k.Contains('.')).ToHashSet(StringComparer.Ordinal);
                foreach (var (name, old) in buffers)
                {
                    var key = Join(at, name);
                    if (Checked(key, old, create(key, old, false), keepShape) is not { } replacement) continue;
                    Set(m, name, replacement, isParameter: false, persistent: persistent.Contains(name));
                    device = replacement.device;
                }
            }
            if (device is not null) SetDevice(m, device);
        }
    }

    private static string Join(string a, string b) => a.Length == 0 ? b : b.Length == 0 ? a : a + "." + b;

    private static Tensor? Checked(string key, Tensor old, Tensor? created, bool keepShape)
    {
        if (created is null) return null;
        if (keepShape && !created.shape.SequenceEqual(old.shape))
        {
            var shape = string.Join(",", created.shape);
            created.Dispose();
            throw new InvalidOperationException($"The tensor made for '{key}' has shape [{shape}], the model's has [{string.Join(",", old.shape)}].");
        }
        return created.DetachFromDisposeScope();
    }

    private static void Set(nn.Module m, string name, Tensor replacement, bool isParameter, bool persistent)
    {
        var type = m.GetType();
        var property = type.GetProperty(name, BindingFlags.Public | BindingFlags.Instance);
        if (property is { CanWrite: true } && property.PropertyType.IsInstanceOfType(replacement))
        {
            property.SetValue(m, replacement); // TorchSharp's own modules: the setter disposes the old tensor and registers the new one
            return;
        }
        // A field of that name (or [ComponentName]); none: the module reaches the tensor through its registry alone.
        var field = Fields(type).FirstOrDefault(f => ComponentName(f) == name && f.FieldType.IsInstanceOfType(replacement));
        var old = (field?.GetValue(m) as Tensor) ?? (isParameter ? m.get_parameter(name) : m.get_buffer(name));
        if (isParameter) RegisterParameter.Invoke(m, [name, replacement]);
        else RegisterBuffer.Invoke(m, [name, replacement, persistent]);
        field?.SetValue(m, replacement);
        if (old is not null && !ReferenceEquals(old, replacement)) old.Dispose();
    }

    private static IEnumerable<FieldInfo> Fields(Type? type)
    {
        for (; type is not null && type != typeof(object); type = type.BaseType)
            foreach (var f in type.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.DeclaredOnly))
                yield return f;
    }

    private static string ComponentName(FieldInfo f) => f.GetCustomAttribute<ComponentNameAttribute>()?.Name ?? f.Name;

    /// <summary>Keeps TorchSharp's record of the module's device true, so a later Module.to is not skipped as a no-op.</summary>
    private static void SetDevice(nn.Module m, Device device)
    {
        DeviceTypeField?.SetValue(m, device.type);
        DeviceIndexField?.SetValue(m, device.type == DeviceType.CUDA ? device.index : -1);
    }
}
