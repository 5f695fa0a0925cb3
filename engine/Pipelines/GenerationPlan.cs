using Diffusion.Engine.Imaging;
using Diffusion.Engine.IO;
using Diffusion.Engine.Lora;

namespace Diffusion.Engine.Pipelines;

/// <summary>One prompt of a generation with the values it is generated with: its own, else the request's.</summary>
internal sealed record PlannedPrompt(GenerationPrompt Source, string? NegativePrompt, string? Prompt2, string? NegativePrompt2,
    long? Seed, int? Steps, double? GuidanceScale, int? Width, int? Height, OutputPathTemplate? Output, string? LoraKey)
{
    public int Index => Source.Index;
    public string Prompt => Source.Prompt;

    /// <summary>
    /// Whether the two can be denoised in one batch: everything but the prompt, negative prompts and index is the same
    /// (with LoRA tags, the prompts' tags too: <see cref="LoraKey"/>).
    /// </summary>
    public bool SharesRunWith(PlannedPrompt other) =>
        Seed == other.Seed && Steps == other.Steps && GuidanceScale == other.GuidanceScale && Width == other.Width && Height == other.Height
        && Output?.Template == other.Output?.Template && LoraKey == other.LoraKey;
}

/// <summary>A request's checks and its prompts' values, before anything is generated.</summary>
internal static class GenerationPlan
{
    /// <param name="seedBase">With a seed per prompt: the base seed (the request's, or the one drawn for it); null: not known yet.</param>
    public static IReadOnlyList<PlannedPrompt> Prompts(GenerationRequest r, long? seedBase)
    {
        CheckModes(r);
        var prompts = r.Prompts;
        if (prompts.GroupBy(p => p.Index).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new DiffusionException("GenerationIndexTaken", DiffusionErrorKind.InvalidArgument,
                $"Two prompts have index {twice.Key}: each prompt needs its own index, for its seed and file name.", "Index");
        var negatives = Generation.ExpandNegatives(prompts.Count, r.NegativePrompts);
        var prompt2 = PerPrompt(r.Prompt2, prompts.Count);
        var negative2 = PerPrompt(r.NegativePrompt2, prompts.Count);
        var templates = new Dictionary<string, OutputPathTemplate>(StringComparer.Ordinal);
        OutputPathTemplate? Template(string? path) =>
            path is null ? null : templates.TryGetValue(path, out var t) ? t : templates[path] = new OutputPathTemplate(path);
        var planned = prompts.Select((p, k) => new PlannedPrompt(p, p.NegativePrompt ?? negatives[k], prompt2?[k], negative2?[k],
            p.Seed ?? (r.SeedPerPrompt ? seedBase is long b ? unchecked(b + p.Index) : null : r.Seed),
            p.Steps ?? r.Steps, p.GuidanceScale ?? r.GuidanceScale, p.Width ?? r.Width, p.Height ?? r.Height,
            Template(p.OutputPath ?? r.OutputPath), r.ParseLoraTags ? LoraKey(p.Prompt) : null)).ToList();
        RequireDistinctPaths(planned, r.Rank);
        return planned;
    }

    private static void CheckModes(GenerationRequest r)
    {
        if (r.SeedPerPrompt && r.BatchSize is not null)
            throw Invalid("SeedPerPromptBatch", "A batch size cannot be combined with a seed per prompt: with a seed per prompt each prompt is generated on its own.", "BatchSize");
        if (r.BatchSize is < 1) throw Invalid("BatchSizeInvalid", $"The batch size is {r.BatchSize}: give 1 or more.", "BatchSize");
        if (r.BatchPosition is not int position) return;
        if (r.SeedPerPrompt)
            throw Invalid("BatchPositionMode", "A batch position replays one image of a batch that shared one generator; it cannot be combined with a seed per prompt.", "BatchPosition");
        if (r.BatchSize is not int size || position < 0 || position >= size)
            throw Invalid("BatchPositionInvalid", $"Batch position {position} needs a batch size greater than it: the batch the image was made in (its 'Batch size' parameter).", "BatchPosition");
        if (r.Prompts.Count != 1)
            throw Invalid("BatchPositionPrompts", $"A batch position replays one image: give one prompt, not {r.Prompts.Count}.", "Prompt");
    }

    /// <summary>Each prompt's entry of a one-for-all or one-per-prompt list (prompt_2, negative_prompt_2); null when none is given.</summary>
    private static IReadOnlyList<string?>? PerPrompt(IReadOnlyList<string?>? values, int count) =>
        values is null || values.Count == 0 ? null
        : Generation.PerPrompt(count, values, "Prompt2CountMismatch", "-Prompt2 / -NegativePrompt2", what: null, "Prompt2");

    /// <summary>The part of a prompt's run key its LoRA tags make. A tag that does not parse runs alone (and fails there).</summary>
    private static string LoraKey(string prompt)
    {
        try { return LoraTags.Key(LoraTags.Parse(prompt).Tags); }
        catch (DiffusionException) { return "invalid:" + Guid.NewGuid(); }
    }

    /// <summary>With LoRA tags: the LoRAs a prompt tags, by name with their scales (none tagged: all off); else null.</summary>
    public static IReadOnlyDictionary<string, double>? ActiveLoras(GenerationRequest r, PlannedPrompt p) =>
        r.ParseLoraTags ? LoraTags.Parse(p.Prompt).Tags.ToDictionary(t => t.Name, t => t.Scale, StringComparer.OrdinalIgnoreCase) : null;

    /// <summary>
    /// Refuses (OutputPathCollision) output paths that give two images the same file, which would overwrite one or fail
    /// after generating it; checked per template. Without a seed, {seed} is taken to differ per image.
    /// </summary>
    private static void RequireDistinctPaths(IReadOnlyList<PlannedPrompt> planned, int rank)
    {
        foreach (var group in planned.Where(p => p.Output is not null).GroupBy(p => p.Output!))
        {
            if (group.Count() < 2) continue;
            group.Key.RequireDistinct(group.Select(p => new OutputPathTemplate.PlannedImage(p.Index, p.Seed ?? p.Index, p.Prompt)).ToList(), rank);
        }
    }

    private static DiffusionException Invalid(string id, string message, string target) =>
        new(id, DiffusionErrorKind.InvalidArgument, message, target);
}
