using System.Text.Json;
using Diffusion.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Pipelines;

/// <summary>
/// Embeddings and latents to and from safetensors files, so that each stage can run in its own process or machine.
/// Tensor names follow diffusers: prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, latents (batched on
/// dim 0); the per-item facts (prompt, seed, size, ...) go in the header's __metadata__.
/// </summary>
public static class TensorExchange
{
    private const string KindKey = "diffusion.kind";
    private const string ItemsKey = "diffusion.items";
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    public static void Export(string path, IReadOnlyList<object> items, bool overwrite)
    {
        if (items.Count == 0)
            throw new DiffusionException("NothingToExport", DiffusionErrorKind.InvalidArgument, "No embeddings or latents were given to export.", path);
        if (File.Exists(path) && !overwrite)
            throw new DiffusionException("TensorFileExists", DiffusionErrorKind.InvalidOperation,
                $"'{path}' already exists. Use -Force to overwrite it, or choose another -Path.", path);
        if (items.All(i => i is DiffusionEmbedding)) ExportEmbeddings(path, items.Cast<DiffusionEmbedding>().ToList(), overwrite);
        else if (items.All(i => i is DiffusionLatent)) ExportLatents(path, items.Cast<DiffusionLatent>().ToList(), overwrite);
        else
            throw new DiffusionException("MixedExport", DiffusionErrorKind.InvalidArgument,
                "Export embeddings and latents to separate files: one file holds one kind (got " +
                string.Join(", ", items.Select(i => i.GetType().Name).Distinct()) + ").", path);
    }

    private static void ExportEmbeddings(string path, List<DiffusionEmbedding> items, bool overwrite)
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["prompt_embeds"] = Cat(items.Select(e => e.PromptEmbeds), "prompt_embeds"),
        };
        if (items.All(e => e.NegativePromptEmbeds is not null)) tensors["negative_prompt_embeds"] = Cat(items.Select(e => e.NegativePromptEmbeds!), "negative_prompt_embeds");
        if (items.All(e => e.PooledPromptEmbeds is not null)) tensors["pooled_prompt_embeds"] = Cat(items.Select(e => e.PooledPromptEmbeds!), "pooled_prompt_embeds");
        if (items.All(e => e.NegativePooledPromptEmbeds is not null)) tensors["negative_pooled_prompt_embeds"] = Cat(items.Select(e => e.NegativePooledPromptEmbeds!), "negative_pooled_prompt_embeds");
        var meta = items.Select(e => new ItemMeta
        {
            Index = e.Index, Prompt = e.Prompt, NegativePrompt = e.NegativePrompt, Prompt2 = e.Prompt2, NegativePrompt2 = e.NegativePrompt2, Family = e.Family, Model = e.Model,
            TokenCount = e.TokenCount, Truncated = e.Truncated, TruncatedText = e.TruncatedText,
        }).ToList();
        SafeTensorsWriter.Save(path, tensors, new Dictionary<string, string> { [KindKey] = "embeddings", [ItemsKey] = JsonSerializer.Serialize(meta, Json) }, overwrite);
    }

    private static void ExportLatents(string path, List<DiffusionLatent> items, bool overwrite)
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor> { ["latents"] = Cat(items.Select(l => l.Latents), "latents") };
        var meta = items.Select(l => new ItemMeta
        {
            Index = l.Index, Prompt = l.Prompt, NegativePrompt = l.NegativePrompt, Family = l.Family, Model = l.Model,
            Seed = l.Seed, Steps = l.Steps, Step = l.Step, TotalSteps = l.TotalSteps, GuidanceScale = l.GuidanceScale, GuidanceRescale = l.GuidanceRescale is 0 ? null : l.GuidanceRescale, Scheduler = l.Scheduler, Height = l.Height, Width = l.Width, Seconds = l.Seconds,
            Sampler = l.Sampler, ModelHash = l.ModelHash, BatchSize = l.BatchSize > 1 ? l.BatchSize : null, BatchPosition = l.BatchSize > 1 ? l.BatchPosition : null,
        }).ToList();
        SafeTensorsWriter.Save(path, tensors, new Dictionary<string, string> { [KindKey] = "latents", [ItemsKey] = JsonSerializer.Serialize(meta, Json) }, overwrite);
    }

    private static Tensor Cat(IEnumerable<Tensor> parts, string name)
    {
        var list = parts.Select(t => t.to(torch.CPU)).ToList();
        if (list.Select(t => string.Join(",", t.shape.Skip(1))).Distinct().Count() > 1)
            throw new DiffusionException("ExportShapeMismatch", DiffusionErrorKind.InvalidArgument,
                $"The {name} of the given objects have different shapes ({string.Join("; ", list.Select(t => "[" + string.Join(",", t.shape) + "]").Distinct())}); export them to separate files.", name);
        return torch.cat(list.ToArray(), 0);
    }

    /// <summary>Reads a file written by <see cref="Export"/> (or by diffusers users with the same tensor names) back into objects.</summary>
    public static IReadOnlyList<object> Import(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        var kind = file.Metadata.GetValueOrDefault(KindKey) ?? (file.Contains("latents") ? "latents" : file.Contains("prompt_embeds") ? "embeddings" : null);
        List<ItemMeta>? meta = null;
        if (file.Metadata.TryGetValue(ItemsKey, out var json))
        {
            try { meta = JsonSerializer.Deserialize<List<ItemMeta>>(json, Json); }
            catch (JsonException e)
            {
                throw new DiffusionException("TensorMetadataInvalid", DiffusionErrorKind.InvalidData, $"'{path}' has unreadable {ItemsKey} metadata ({e.Message}).", path, e);
            }
        }
        switch (kind)
        {
            case "embeddings":
            {
                using var prompt = file.Load("prompt_embeds");
                using var negative = file.Contains("negative_prompt_embeds") ? file.Load("negative_prompt_embeds") : null;
                using var pooled = file.Contains("pooled_prompt_embeds") ? file.Load("pooled_prompt_embeds") : null;
                using var negativePooled = file.Contains("negative_pooled_prompt_embeds") ? file.Load("negative_pooled_prompt_embeds") : null;
                RequireFloat(path, "prompt_embeds", prompt, 3, "[N, tokens, width]");
                if (negative is not null) RequireFloat(path, "negative_prompt_embeds", negative, 3, "[N, tokens, width]");
                if (pooled is not null) RequireFloat(path, "pooled_prompt_embeds", pooled, 2, "[N, width]");
                if (negativePooled is not null) RequireFloat(path, "negative_pooled_prompt_embeds", negativePooled, 2, "[N, width]");
                long n = prompt.shape[0];
                var result = new List<object>();
                for (int i = 0; i < n; i++)
                {
                    var m = Meta(meta, i, n, path);
                    result.Add(new DiffusionEmbedding(prompt.narrow(0, i, 1).contiguous(), negative?.narrow(0, i, 1).contiguous(), pooled?.narrow(0, i, 1).contiguous(),
                        negativePooled?.narrow(0, i, 1).contiguous())
                    {
                        Index = m.Index ?? i, Prompt = m.Prompt ?? "", NegativePrompt = m.NegativePrompt, Prompt2 = m.Prompt2, NegativePrompt2 = m.NegativePrompt2,
                        Family = FamilyName(m.Family), Model = m.Model ?? "", TokenCount = m.TokenCount ?? 0,
                        Truncated = m.Truncated ?? false, TruncatedText = m.TruncatedText,
                    });
                }
                return result;
            }
            case "latents":
            {
                using var latents = file.Load("latents");
                RequireFloat(path, "latents", latents, latents.dim() == 3 ? 3 : 4, "[N, C, h, w] (SD) or [N, tokens, C] (FLUX, packed)");
                long n = latents.shape[0];
                var result = new List<object>();
                for (int i = 0; i < n; i++)
                {
                    var m = Meta(meta, i, n, path);
                    result.Add(new DiffusionLatent(latents.narrow(0, i, 1).contiguous())
                    {
                        Index = m.Index ?? i, Prompt = m.Prompt ?? "", NegativePrompt = m.NegativePrompt, Family = FamilyName(m.Family), Model = m.Model ?? "",
                        Seed = m.Seed ?? 0, Steps = m.Steps ?? 0, Step = m.Step ?? m.Steps ?? 0, TotalSteps = m.TotalSteps ?? m.Steps ?? 0, GuidanceScale = m.GuidanceScale ?? 0, GuidanceRescale = m.GuidanceRescale ?? 0, Scheduler = m.Scheduler ?? "",
                        // Not recorded: unpacked latents [1, C, h, w] are for an image 8 times their size (VAEs of
                        // scale 8); packed ones [1, tokens, C] do not say, and decoding asks for Height and Width.
                        Height = m.Height ?? (int)(latents.dim() == 4 ? latents.shape[2] * 8 : 0),
                        Width = m.Width ?? (int)(latents.dim() == 4 ? latents.shape[3] * 8 : 0), Seconds = m.Seconds ?? 0,
                        Sampler = m.Sampler ?? m.Scheduler ?? "", ModelHash = m.ModelHash, BatchSize = m.BatchSize ?? 1, BatchPosition = m.BatchPosition ?? 0,
                    });
                }
                return result;
            }
            default:
                throw new DiffusionException("TensorFileKindUnknown", DiffusionErrorKind.InvalidData,
                    $"'{path}' holds neither 'prompt_embeds' nor 'latents', so it is not an embeddings or latents file. It has: {string.Join(", ", file.Tensors.Keys.Take(8))}.", path);
        }
    }

    /// <summary>Embeddings and latents are floating-point tensors of a known rank; integer ids or other shapes are refused.</summary>
    private static void RequireFloat(string path, string name, Tensor t, int rank, string expected)
    {
        if (!t.is_floating_point())
            throw new DiffusionException("TensorDTypeInvalid", DiffusionErrorKind.InvalidData,
                $"'{path}': {name} is {t.dtype}, not a floating-point tensor; embeddings and latents are float32, float16 or bfloat16. " +
                "Token ids are not embeddings: encode the prompts with ConvertTo-DiffusionEmbedding and export those.", path);
        if (t.dim() != rank)
            throw new DiffusionException("TensorShapeInvalid", DiffusionErrorKind.InvalidData,
                $"'{path}': {name} has shape [{string.Join(",", t.shape)}]; expected {expected}.", path);
    }

    private static ItemMeta Meta(List<ItemMeta>? meta, int i, long n, string path)
    {
        if (meta is null) return new ItemMeta();
        if (meta.Count != n)
            throw new DiffusionException("TensorMetadataInvalid", DiffusionErrorKind.InvalidData,
                $"'{path}' describes {meta.Count} items in its metadata but holds {n}; the file was edited or is damaged. Export it again.", path);
        return meta[i];
    }

    /// <summary>
    /// The recorded family, spelled as registered; "" when the file does not say (a pipeline then takes the tensors if
    /// their shapes fit). Shapes are not read as a family: SDXL and FLUX embeddings both have pooled parts.
    /// </summary>
    private static string FamilyName(string? recorded) => PipelineFamilies.ByName(recorded)?.Name ?? recorded ?? "";

    private sealed class ItemMeta
    {
        public int? Index { get; set; }
        public string? Prompt { get; set; }
        public string? NegativePrompt { get; set; }
        public string? Prompt2 { get; set; }
        public string? NegativePrompt2 { get; set; }
        public string? Family { get; set; }
        public string? Model { get; set; }
        public int? TokenCount { get; set; }
        public bool? Truncated { get; set; }
        public string? TruncatedText { get; set; }
        public long? Seed { get; set; }
        public int? Steps { get; set; }
        public int? Step { get; set; }
        public int? TotalSteps { get; set; }
        public double? GuidanceScale { get; set; }
        public double? GuidanceRescale { get; set; }
        public string? Scheduler { get; set; }
        public int? Height { get; set; }
        public int? Width { get; set; }
        public double? Seconds { get; set; }
        public string? Sampler { get; set; }
        public string? ModelHash { get; set; }
        public int? BatchSize { get; set; }
        public int? BatchPosition { get; set; }
    }
}
