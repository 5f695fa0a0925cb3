using System.Collections;
using System.Globalization;
using System.Management.Automation;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>One LoRA file of Invoke-Diffusion -Lora and the scale it is added at (Add-DiffusionLora -Scale).</summary>
public sealed record LoraFileArgument(string Path, double Scale)
{
    public override string ToString() => Scale == 1.0 ? Path : $"{Path} (scale {Scale.ToString(CultureInfo.InvariantCulture)})";
}

/// <summary>
/// Turns what -Lora is given into <see cref="LoraFileArgument"/>s: paths (strings, Get-Item/Get-ChildItem output) at
/// scale 1, and hashtables of path = scale (<c>@{ 'style.safetensors' = 0.8 }</c>; [ordered] keeps their order), mixed freely.
/// </summary>
public sealed class LoraFileArgumentTransformationAttribute : ArgumentTransformationAttribute
{
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        var list = new List<LoraFileArgument>();
        Add(list, inputData);
        return list.ToArray();
    }

    private static void Add(List<LoraFileArgument> list, object? value)
    {
        value = value is PSObject p ? p.BaseObject : value;
        switch (value)
        {
            case null: return;
            case LoraFileArgument a: list.Add(a); return;
            case string s: list.Add(new LoraFileArgument(s, 1.0)); return;
            case FileSystemInfo f: list.Add(new LoraFileArgument(f.FullName, 1.0)); return;
            case IDictionary d:
                foreach (DictionaryEntry e in d) list.Add(new LoraFileArgument(PathOf(e.Key), ScaleOf(e.Key, e.Value)));
                return;
            case IEnumerable many:
                foreach (var item in many) Add(list, item);
                return;
            default:
                throw new ArgumentTransformationMetadataException(
                    $"-Lora takes LoRA file paths (or Get-Item output), or a hashtable of path = scale (@{{ 'style.safetensors' = 0.8 }}); not a {value.GetType().Name}.");
        }
    }

    private static string PathOf(object key) => (key is PSObject p ? p.BaseObject : key) switch
    {
        FileSystemInfo f => f.FullName,
        var k => Convert.ToString(k, CultureInfo.InvariantCulture) ?? "",
    };

    private static double ScaleOf(object key, object? value)
    {
        double scale;
        try { scale = (double)LanguagePrimitives.ConvertTo(value, typeof(double), CultureInfo.InvariantCulture); }
        catch (PSInvalidCastException)
        {
            throw new ArgumentTransformationMetadataException($"-Lora: the scale '{value}' of '{key}' is not a number. Write @{{ 'file.safetensors' = 0.8 }}.");
        }
        if (!double.IsFinite(scale) || scale < -100 || scale > 100)
            throw new ArgumentTransformationMetadataException($"-Lora: the scale {scale} of '{key}' is outside -100..100.");
        return scale;
    }
}
