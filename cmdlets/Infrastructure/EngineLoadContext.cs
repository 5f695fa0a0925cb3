using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// The AssemblyLoadContext that holds the engine (Diffusion.Engine.dll) and everything it depends on (TorchSharp,
/// Microsoft.ML.Tokenizers, ImageSharp, libtorch natives), all from the module's deps/ folder. Other modules in the
/// same session may load other versions of those assemblies into the default context without conflict.
/// </summary>
internal sealed class EngineLoadContext : AssemblyLoadContext
{
    private readonly string _dependencyFolder;

    public static string DependencyFolder { get; } =
        Path.Combine(Path.GetDirectoryName(typeof(EngineLoadContext).Assembly.Location)!, "deps");

    public static EngineLoadContext Instance { get; } = new(DependencyFolder);

    private EngineLoadContext(string dependencyFolder) : base("Diffusion.Engine", isCollectible: false)
    {
        _dependencyFolder = dependencyFolder;
    }

    protected override Assembly? Load(AssemblyName assemblyName)
    {
        var candidate = Path.Combine(_dependencyFolder, assemblyName.Name + ".dll");
        // Assemblies we ship load here; everything else (the framework) falls back to the default context.
        return File.Exists(candidate) ? LoadFromAssemblyPath(candidate) : null;
    }

    protected override IntPtr LoadUnmanagedDll(string unmanagedDllName)
    {
        // A library the backend already loaded (possibly from an external libtorch folder) wins over the bundled copy.
        var loaded = LoadedByBackend(unmanagedDllName);
        if (loaded != IntPtr.Zero) return loaded;
        foreach (var name in NativeNames(unmanagedDllName))
        {
            var candidate = Path.Combine(_dependencyFolder, name);
            if (File.Exists(candidate)) return LoadUnmanagedDllFromPath(candidate);
        }
        return IntPtr.Zero;
    }

    // Kept out of line so that the engine assembly is only resolved once natives are being loaded (it is by then).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static IntPtr LoadedByBackend(string name) => Diffusion.Engine.TorchBackend.LoadedHandle(name);

    private static IEnumerable<string> NativeNames(string name)
    {
        yield return name;
        if (OperatingSystem.IsWindows()) { yield return name + ".dll"; yield break; }
        var ext = OperatingSystem.IsMacOS() ? ".dylib" : ".so";
        yield return name + ext;
        yield return "lib" + name + ext;
    }
}

/// <summary>Hooks the engine's context into assembly resolution when the module is imported.</summary>
public sealed class ModuleInitializer : System.Management.Automation.IModuleAssemblyInitializer, System.Management.Automation.IModuleAssemblyCleanup
{
    private static bool _hooked;

    public void OnImport()
    {
        if (_hooked) return;
        AssemblyLoadContext.Default.Resolving += ResolveEngine;
        _hooked = true;
    }

    public void OnRemove(System.Management.Automation.PSModuleInfo psModuleInfo)
    {
        // Natives can't be unloaded; the hook stays so a re-import in the same session finds the same engine.
    }

    private static Assembly? ResolveEngine(AssemblyLoadContext context, AssemblyName name)
    {
        // Only the engine is bridged into the default context; its dependencies stay private to EngineLoadContext.
        return name.Name == "Diffusion.Engine" ? EngineLoadContext.Instance.LoadFromAssemblyName(name) : null;
    }
}
