using System.Collections;
using Diffusion.Engine.Models;
using Diffusion.Engine.Sharding;

namespace Diffusion.Engine.Pipelines;

/// <summary>-Offload: the guide's CPU offload for one-GPU users.</summary>
public enum OffloadMode
{
    None,
    /// <summary>enable_model_cpu_offload: each model on the GPU while it is used, in CPU memory otherwise.</summary>
    Model,
    /// <summary>enable_sequential_cpu_offload: every block streamed to the GPU for each call.</summary>
    Sequential,
}

/// <summary>
/// Turns -DeviceMap / -MaxMemory / -Offload into a plan for the components a load brings, from their safetensors
/// headers and configs, without loading a weight. One model component: a module-level map (auto, balanced,
/// balanced_low_0, sequential or a hashtable of module paths). Several: a pipeline-level map (balanced or a hashtable
/// of component names).
/// </summary>
internal static class DevicePlanning
{
    public static readonly string[] Strategies = ["auto", "balanced", "balanced_low_0", "sequential"];

    /// <summary>The plan, or null for a plain load on one device.</summary>
    /// <param name="forLoad">True: devices must exist here. False (-WhatIf): any GPU may be named, to plan for another machine.</param>
    public static PipelineDevicePlan? Plan(ComponentWeights weights, IReadOnlyList<ComponentSpec> specs, PipelineLoadOptions o, bool forLoad)
    {
        var folder = weights.Folder;
        var offload = ParseOffload(o.Offload);
        if (o.DeviceMap is null && offload == OffloadMode.None)
        {
            if (o.MaxMemory is not null)
                throw new DiffusionException("MaxMemoryWithoutDeviceMap", DiffusionErrorKind.InvalidArgument,
                    "-MaxMemory sets the budgets of a device map; add -DeviceMap (e.g. -DeviceMap balanced, or auto when loading one component).", "MaxMemory");
            return null;
        }
        if (o.DeviceMap is not null && offload != OffloadMode.None)
            throw new DiffusionException("DeviceMapWithOffload", DiffusionErrorKind.InvalidArgument,
                "-DeviceMap and -Offload cannot be combined (diffusers refuses CPU offload on a device-mapped pipeline too). " +
                "Use -DeviceMap to place components across devices, or -Offload with -Device to run everything on one GPU.", "Offload");
        if (o.DeviceMap is not null && o.Device is not null)
            throw new DiffusionException("DeviceMapWithDevice", DiffusionErrorKind.InvalidArgument,
                "-Device and -DeviceMap both say where components go; give one. With -DeviceMap the devices come from -MaxMemory (or all devices present).", "Device");
        if (offload != OffloadMode.None && o.MaxMemory is not null)
            throw new DiffusionException("MaxMemoryWithoutDeviceMap", DiffusionErrorKind.InvalidArgument,
                "-MaxMemory sets the budgets of a device map; -Offload keeps weights in CPU memory and runs on -Device.", "MaxMemory");

        var family = PipelineFamilies.ForPipelineClass(folder.ClassName, folder.Path);
        var models = specs.Where(s => ComponentLoader.ModelClasses.Contains(s.ClassName)).ToList();
        if (models.Count == 0)
            throw new DiffusionException("DeviceMapWithoutModels", DiffusionErrorKind.InvalidArgument,
                $"The components being loaded ({string.Join(", ", specs.Select(s => s.Name))}) hold no model weights to place. Drop -DeviceMap / -Offload.", "DeviceMap");
        var dtype = DTypeNames.Name(DTypeNames.Parse(o.DType));
        var request = Request(folder, family, o);
        var components = models.Select(s =>
        {
            var config = weights.ConfigOf(s); // the typed config.json
            var source = weights.For(s, ComponentWeights.ModuleKeyOf(s.ClassName), config); // the folder's files or the single file's key map: headers only
            return new ComponentForPlan(s.Name, ModuleLayouts.FromSource(source, s.ClassName, dtype, config),
                ActivationEstimator.For(s.ClassName, config, dtype, request));
        }).ToList();

        if (offload != OffloadMode.None)
        {
            var exec = DeviceNames.Normalize(o.Device ?? (TorchBackend.Info?.DefaultDevice ?? "cpu"), "-Device");
            var plans = components.Select(c => DeviceMapPlanner.Offloaded(c.Layout, exec, c.Activations, offload == OffloadMode.Model, c.Name)).ToList();
            var usage = new[]
            {
                new DeviceUsage(exec, null, null, 0, plans.Max(p => p.Activations.Bytes), plans.Max(p => p.Devices[0].StreamingBuffer)),
                new DeviceUsage(DeviceNames.Cpu, null, null, plans.Sum(p => p.TotalBytes), 0, 0),
            };
            return new PipelineDevicePlan(offload == OffloadMode.Model ? "model offload" : "sequential offload", HeadroomPolicy.Activations, plans,
                exec == DeviceNames.Cpu ? [usage[1]] : usage, exec);
        }

        bool fromUser = o.MaxMemory is not null;
        var budgets = fromUser ? DeviceBudgets.FromMaxMemory(o.MaxMemory!) : DeviceBudgets.FromFreeMemory();
        IReadOnlyCollection<string>? known = forLoad ? Devices.DeviceCatalog.List().Select(d => d.Name).Append(DeviceNames.Disk).ToList() : null;
        if (known is not null)
            foreach (var b in budgets.Where(b => !known.Contains(b.Device)))
                throw new DiffusionException("UnknownDevice", DiffusionErrorKind.InvalidArgument,
                    $"-MaxMemory names '{b.Device}', which is not a device here (devices: {string.Join(", ", known)}). " +
                    "To plan for another machine without loading, add -WhatIf.", "MaxMemory");

        if (components.Count == 1)
        {
            var c = components[0];
            var plan = o.DeviceMap is IDictionary map
                ? DeviceMapPlanner.FromUserMap(c.Layout, map, budgets, c.Activations, known, c.Name)
                : DeviceMapPlanner.Plan(c.Layout, budgets, ParseStrategy(o.DeviceMap), c.Activations, o.HeadroomPolicy, fromUser, c.Name);
            return PipelineDevicePlan.ForOne(plan);
        }
        if (o.DeviceMap is IDictionary pipelineMap)
            return PipelineDevicePlanner.FromUserMap(components, pipelineMap, budgets, known);
        var strategy = ParseStrategy(o.DeviceMap);
        if (strategy != DeviceMapStrategy.Balanced)
            throw new DiffusionException("DeviceMapStrategyNeedsOneComponent", DiffusionErrorKind.InvalidArgument,
                $"-DeviceMap {o.DeviceMap} places the modules of one model; for a pipeline of several components ({string.Join(", ", components.Select(c => c.Name))}) " +
                $"use -DeviceMap balanced (as diffusers), or load one component: -Component {family.DenoiserComponent} -DeviceMap {o.DeviceMap}.", "DeviceMap");
        return PipelineDevicePlanner.Balanced(components, budgets, o.HeadroomPolicy);
    }

    public static OffloadMode ParseOffload(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "none" => OffloadMode.None,
        "model" => OffloadMode.Model,
        "sequential" => OffloadMode.Sequential,
        _ => throw new DiffusionException("UnknownOffload", DiffusionErrorKind.InvalidArgument,
            $"-Offload '{text}' is not an offload mode. Use model (each model on the GPU while it is used) or sequential (block by block, least memory).", "Offload"),
    };

    public static DeviceMapStrategy ParseStrategy(object? value) => (value as string)?.Trim().ToLowerInvariant() switch
    {
        "auto" => DeviceMapStrategy.Auto,
        "balanced" => DeviceMapStrategy.Balanced,
        "balanced_low_0" => DeviceMapStrategy.BalancedLow0,
        "sequential" => DeviceMapStrategy.Sequential,
        _ => throw new DiffusionException("UnknownDeviceMapStrategy", DiffusionErrorKind.InvalidArgument,
            $"-DeviceMap '{value}' is not a strategy. Use {string.Join(", ", Strategies)}, or a hashtable: module path -> device for one component " +
            "(e.g. @{''='cpu'; transformer_blocks=0}), component -> device for a pipeline (e.g. @{transformer=0; vae=1}).", "DeviceMap"),
    };

    /// <summary>The image the plan keeps head-room for: -Height/-Width, else the model's default size; batch 1.</summary>
    private static ActivationRequest Request(DiffusersFolder folder, IPipelineFamily family, PipelineLoadOptions o)
    {
        int vsf = DiffusionPipeline.VaeScaleFactorOf(folder);
        int size = family.DefaultImageSize(folder, vsf);
        int height = o.Height ?? size, width = o.Width ?? size;
        if (height <= 0 || width <= 0)
            throw new DiffusionException("InvalidImageSize", DiffusionErrorKind.InvalidArgument,
                $"-Height {height} / -Width {width}: the image size a device map plans for must be positive.", "Height");
        return new ActivationRequest(height, width, VaeScaleFactor: vsf);
    }
}
