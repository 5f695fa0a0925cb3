using Diffusion.Engine.Devices;
using Diffusion.Engine.IO;
using Diffusion.Engine.Placement;
using Diffusion.Engine.Sharding;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// A diffusers pipeline folder with some or all of its components loaded on a device in a dtype. The same object
/// serves every stage: encode (text encoders), denoise (UNet / transformer), decode (VAE); a stage whose component
/// was not loaded says which one and how to load it.
/// </summary>
public sealed class DiffusionPipeline : IDisposable
{
    private readonly Dictionary<string, PipelineComponent> _components;

    public string Path { get; }
    public string Name => System.IO.Path.GetFileName(Path.TrimEnd('/', '\\'));
    public string ClassName { get; }
    /// <summary>The pipeline family, by name ("StableDiffusion", "Flux"): a string, so that it serializes as its name.</summary>
    public string Family => PipelineFamily.Name;
    internal IPipelineFamily PipelineFamily { get; }
    public string Device { get; }
    public string DType { get; }
    public string? SchedulerOverride { get; }
    public DiffusersFolder Folder { get; }
    public IReadOnlyDictionary<string, PipelineComponent> Components => _components;
    public long Parameters => _components.Values.Sum(c => c.Parameters);
    public long Bytes => _components.Values.Sum(c => c.Bytes);
    /// <summary><see cref="Bytes"/> in MiB (one decimal), as the table shows it.</summary>
    public double SizeMB => Math.Round(Bytes / 1048576.0, 1);
    public bool IsDisposed { get; private set; }
    /// <summary>The LoRAs applied to this pipeline's models (Add-DiffusionLora), in the order they were added.</summary>
    public Lora.LoraSet Loras { get; } = new();

    /// <summary>The scheduler class this pipeline denoises with (the folder's, or the override).</summary>
    /// <summary>The scheduler's class (also when -Scheduler gave an alias or a scheduler_config.json); <see cref="SchedulerOverride"/> is what was given.</summary>
    public string Scheduler => _schedulerClass ??= SchedulerClass();
    private string? _schedulerClass;

    private string SchedulerClass()
    {
        try
        {
            if (_components.ContainsKey("scheduler")) return CreateScheduler(null, "Describing the scheduler").Name;
            if (SchedulerOverride is not null && File.Exists(SchedulerOverride))
                return Schedulers.SchedulerFactory.Create(System.IO.Path.GetFullPath(SchedulerOverride)).Name;
        }
        catch (DiffusionException) { }
        return SchedulerOverride ?? (Folder.Components.TryGetValue("scheduler", out var s) ? s.ClassName : "");
    }

    internal Device TorchDevice { get; }
    internal ScalarType TorchDType { get; }

    /// <summary>The plan the components were placed by (-DeviceMap or -Offload), or null for a plain load.</summary>
    public PipelineDevicePlan? DevicePlan { get; }

    /// <summary>Model component -> device, as diffusers' hf_device_map ("cuda:0,cuda:1" for a model split by blocks).</summary>
    public OrderedMap DeviceMap => DevicePlan?.DeviceMap
        ?? new OrderedMap(_components.Values.Where(c => c.Device is not null).Select(c => new KeyValuePair<string, string>(c.Name, c.Device!)));

    /// <summary>The single-file checkpoint the models came from (its configs from <see cref="Folder"/>), or null for a folder.</summary>
    public string? SingleFile { get; }
    /// <summary>The -Variant the weights were loaded with (e.g. fp16), or null.</summary>
    public string? Variant { get; }

    private DiffusionPipeline(ComponentWeights weights, IPipelineFamily family, Device device, ScalarType dtype, string? scheduler, Dictionary<string, PipelineComponent> components,
        PipelineDevicePlan? devicePlan)
    {
        var folder = weights.Folder;
        Folder = folder; Path = weights.ModelPath; ClassName = folder.ClassName; PipelineFamily = family;
        SingleFile = weights.SingleFile?.Path; Variant = weights.Variant;
        TorchDevice = device; TorchDType = dtype; Device = DeviceCatalog.Name(device); DType = DTypeNames.Name(dtype);
        SchedulerOverride = scheduler; _components = components; DevicePlan = devicePlan;
    }

    /// <summary>
    /// The device plan a load with these options would follow (-DeviceMap / -MaxMemory / -Offload), made from the
    /// weights' headers and configs without loading anything; null when the options ask for a plain load. Any GPU may
    /// be named in -MaxMemory, to plan for another machine.
    /// </summary>
    /// <param name="defaultStrategy">Without -DeviceMap and -Offload: plan with auto (one model component) or balanced (several) instead of returning null.</param>
    public static PipelineDevicePlan? PlanDevices(string path, PipelineLoadOptions options, bool defaultStrategy = false)
    {
        var weights = ComponentWeights.Open(path, options);
        var specs = PlanComponents(weights.Folder, options.Components);
        weights.Check(specs);
        if (defaultStrategy && options.DeviceMap is null && options.Offload is null)
        {
            int models = specs.Count(s => ComponentLoader.ModelClasses.Contains(s.ClassName));
            options.DeviceMap = models == 1 ? "auto" : "balanced";
        }
        return DevicePlanning.Plan(weights, specs, options, forLoad: false);
    }

    /// <summary>
    /// The components a load of <paramref name="path"/> (a folder, or a single file with -Config) will bring, in load
    /// order, after checking that the weights for them are there; loads nothing.
    /// </summary>
    public static IReadOnlyList<ComponentSpec> PlanComponents(string path, PipelineLoadOptions options)
    {
        var weights = ComponentWeights.Open(path, options);
        var specs = PlanComponents(weights.Folder, options.Components);
        weights.Check(specs);
        return specs;
    }

    /// <summary>The components a load will bring, in load order, without loading anything (for -WhatIf and validation).</summary>
    public static IReadOnlyList<ComponentSpec> PlanComponents(DiffusersFolder folder, string[]? only)
    {
        var family = PipelineFamilies.ForPipelineClass(folder.ClassName, folder.Path);
        IEnumerable<string> wanted = folder.Components.Keys;
        if (only is { Length: > 0 })
        {
            foreach (var name in only)
                if (!folder.Components.ContainsKey(name))
                    throw new DiffusionException("ComponentNotDeclared", DiffusionErrorKind.InvalidArgument,
                        $"-Component '{name}': the {folder.ClassName} in '{folder.Path}' has no such component. Its components are: {string.Join(", ", folder.Components.Keys)}.", "Component");
            var set = new HashSet<string>(only, StringComparer.Ordinal);
            // A text encoder brings its tokenizer; the denoiser brings the scheduler.
            if (set.Contains("text_encoder")) set.Add("tokenizer");
            if (set.Contains("text_encoder_2")) set.Add("tokenizer_2");
            if (set.Contains(family.DenoiserComponent)) set.Add("scheduler");
            wanted = set.Where(folder.Components.ContainsKey);
        }
        // The order the stages use them: text, denoiser (with its scheduler), VAE; anything else after, by name.
        string[] order = [.. family.TextComponents, family.DenoiserComponent, "scheduler", "vae"];
        return wanted.OrderBy(n => Array.IndexOf(order, n) is var i && i < 0 ? int.MaxValue : i).ThenBy(n => n, StringComparer.Ordinal)
            .Select(n => folder.Components[n]).ToList();
    }

    /// <param name="cancel">Stops the load between tensors (OperationCanceledException); everything loaded so far is freed.</param>
    public static DiffusionPipeline Load(string path, PipelineLoadOptions options, Action<string>? onComponent = null, CancellationToken cancel = default)
    {
        using var stoppable = LoadCancellation.On(cancel);
        TorchBackend.EnsureLoaded();
        var weights = ComponentWeights.Open(path, options);
        var folder = weights.Folder;
        var family = PipelineFamilies.ForPipelineClass(folder.ClassName, folder.Path);
        var dtype = DTypeNames.Parse(options.DType);
        var plan = PlanComponents(folder, options.Components);
        // Only a scheduler the load brings is checked: a partial snapshot (-Component text_encoder) may have no scheduler folder.
        if (options.Scheduler is not null && !File.Exists(options.Scheduler) && !Directory.Exists(options.Scheduler) && plan.Any(c => c.Name == "scheduler"))
            Schedulers.SchedulerFactory.Create(folder.ComponentFile("scheduler", "scheduler_config.json"), options.Scheduler); // fails early on an unknown or incompatible name
        weights.Check(plan);
        // -Offload runs on -Device: a device that is not here is -Device's error (the plan would blame -DeviceMap).
        if (DevicePlanning.ParseOffload(options.Offload) != OffloadMode.None) DeviceCatalog.Parse(options.Device);
        var devicePlan = DevicePlanning.Plan(weights, plan, options, forLoad: true);
        static Device Resolve(string name) => name is DeviceNames.Cpu or DeviceNames.Disk ? torch.CPU : DeviceCatalog.Parse(name, "DeviceMap");
        var device = devicePlan is null ? DeviceCatalog.Parse(options.Device) : Resolve(devicePlan.MainDevice);
        var chain = new OffloadChain();
        var loaded = new Dictionary<string, PipelineComponent>(StringComparer.Ordinal);
        try
        {
            foreach (var spec in plan)
            {
                onComponent?.Invoke(spec.Name);
                var placement = devicePlan is not null && devicePlan.Components.TryGetValue(spec.Name, out var modelPlan)
                    ? new ComponentPlacement(modelPlan, Resolve(modelPlan.ExecutionDevice), Resolve, chain)
                    : null;
                var clock = System.Diagnostics.Stopwatch.StartNew();
                long readBefore = SafeTensorsFile.BytesReadTotal;
                var component = NativeFailure.Guard($"Loading {spec.Name}", () => ComponentLoader.Load(weights, spec, device, dtype, placement));
                component.LoadSeconds = clock.Elapsed.TotalSeconds;
                component.BytesRead = SafeTensorsFile.BytesReadTotal - readBefore;
                loaded[spec.Name] = component;
            }
            PipelineChecks.TokenizersFitEncoders(folder, loaded);
        }
        catch
        {
            foreach (var c in loaded.Values) c.Dispose();
            if (cancel.IsCancellationRequested) MemoryCleaner.Flush(); // a stopped load gives its memory back at once
            throw;
        }
        return new DiffusionPipeline(weights, family, device, dtype, options.Scheduler, loaded, devicePlan);
    }

    public bool Has(string component) => _components.ContainsKey(component);

    /// <summary>
    /// A fresh scheduler for one denoise run: the folder's scheduler_config.json with the class it names, or an
    /// override given as a class name / alias (keeps the compatible config values, like diffusers' from_config), or as
    /// the path of a scheduler_config.json file or a folder holding one.
    /// </summary>
    internal Schedulers.IScheduler CreateScheduler(string? overrideName, string stage)
    {
        var folderConfig = Require<string>("scheduler", stage);
        var choice = overrideName ?? SchedulerOverride;
        if (choice is not null)
        {
            var file = Directory.Exists(choice) ? System.IO.Path.Combine(choice, "scheduler_config.json") : choice;
            if (File.Exists(file)) return Schedulers.SchedulerFactory.Create(System.IO.Path.GetFullPath(file));
        }
        return Schedulers.SchedulerFactory.Create(folderConfig, choice);
    }

    /// <summary>
    /// The scheduler a run with <paramref name="overrideName"/> (or none) would use, with its key settings, in one line;
    /// null when this pipeline has no scheduler (a text-encoder or VAE stage).
    /// </summary>
    public string? DescribeScheduler(string? overrideName = null) =>
        Has("scheduler") && !IsDisposed ? Schedulers.SchedulerSummary.Describe(CreateScheduler(overrideName, "Describing the scheduler")) : null;

    /// <summary>A loaded component as T, or an error naming the component and how to load it.</summary>
    internal T Require<T>(string component, string stage) where T : class
    {
        if (IsDisposed)
            throw new DiffusionException("PipelineRemoved", DiffusionErrorKind.InvalidOperation,
                $"This pipeline ('{Path}') was removed with Remove-DiffusionPipeline. Load it again with New-DiffusionPipeline.", Path);
        if (!_components.TryGetValue(component, out var c))
            throw new DiffusionException("ComponentNotLoaded", DiffusionErrorKind.InvalidOperation,
                $"{stage} needs the '{component}' component, which this pipeline was loaded without (it has: {string.Join(", ", _components.Keys)}). " +
                $"Load it: New-DiffusionPipeline '{Path}'{(SingleFile is null ? "" : $" -Config '{Folder.Path}'")} -Component {component}", component);
        return c.As<T>();
    }

    private int? _vaeScaleFactor;

    /// <summary>
    /// 2^(levels-1) from the VAE's config: latents are this many times smaller than the image. Read once: every run and
    /// decode asks for it, and the folder's config does not change under a loaded pipeline.
    /// </summary>
    internal int VaeScaleFactor => _vaeScaleFactor ??= VaeScaleFactorOf(Folder);

    /// <summary>
    /// diffusers' <c>vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)</c>, from the typed VAE config; 8,
    /// diffusers' default, when the pipeline has no vae (not declared, or a partial snapshot without its config).
    /// </summary>
    internal static int VaeScaleFactorOf(DiffusersFolder folder) =>
        folder.OptionalConfig("vae") is { } path ? Models.AutoencoderKLConfig.Load(path).ScaleFactor : 8;

    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Loras.Clear();
        foreach (var c in _components.Values) c.Dispose();
        _components.Clear();
    }

    public override string ToString() => $"{ClassName} '{Path}' [{string.Join(", ", _components.Keys)}] on {Device} ({DType})";
}

/// <summary>dtype names as users type them.</summary>
public static class DTypeNames
{
    public static readonly string[] All = ["float32", "float16", "bfloat16"];

    public static ScalarType Parse(string? name) => (name ?? "float32").Trim().ToLowerInvariant() switch
    {
        "float32" or "fp32" or "float" => ScalarType.Float32,
        "float16" or "fp16" or "half" => ScalarType.Float16,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        _ => throw new DiffusionException("UnknownDType", DiffusionErrorKind.InvalidArgument,
            $"-DType '{name}' is not supported. Use float32, float16 or bfloat16.", "DType"),
    };

    public static string Name(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        _ => t.ToString().ToLowerInvariant(),
    };
}
