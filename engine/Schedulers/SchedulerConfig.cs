using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Diffusion.Engine.Schedulers;

/// <summary>
/// The values of a diffusers <c>scheduler_config.json</c>: every key any of the engine's schedulers reads.
/// As in diffusers' <c>from_config</c>, a key that is absent (or listed in <c>_use_default_values</c>) takes the
/// default of the scheduler class that is built, so keys whose default differs between classes are nullable here
/// and each scheduler resolves them with its own default; the other keys carry the diffusers default directly.
/// </summary>
public sealed class SchedulerConfig
{
    [JsonPropertyName("_class_name")] public string? ClassName { get; set; }

    // Noise schedule (all DDPM-family schedulers).
    [JsonPropertyName("num_train_timesteps")] public int NumTrainTimesteps { get; set; } = 1000;
    [JsonPropertyName("beta_start")] public double BetaStart { get; set; } = 0.0001;
    [JsonPropertyName("beta_end")] public double BetaEnd { get; set; } = 0.02;
    [JsonPropertyName("beta_schedule")] public string BetaSchedule { get; set; } = "linear";
    [JsonPropertyName("trained_betas")] public double[]? TrainedBetas { get; set; }
    [JsonPropertyName("rescale_betas_zero_snr")] public bool RescaleBetasZeroSnr { get; set; }
    [JsonPropertyName("prediction_type")] public string PredictionType { get; set; } = "epsilon";

    /// <summary>"leading" for PNDM/DDIM, "linspace" for Euler/Euler ancestral/DPM-Solver when absent.</summary>
    [JsonPropertyName("timestep_spacing")] public string? TimestepSpacing { get; set; }
    [JsonPropertyName("steps_offset")] public int StepsOffset { get; set; }

    // PNDM / DDIM.
    [JsonPropertyName("skip_prk_steps")] public bool SkipPrkSteps { get; set; }
    /// <summary>false for PNDM, true for DDIM when absent.</summary>
    [JsonPropertyName("set_alpha_to_one")] public bool? SetAlphaToOne { get; set; }
    [JsonPropertyName("clip_sample")] public bool ClipSample { get; set; } = true;
    [JsonPropertyName("clip_sample_range")] public double ClipSampleRange { get; set; } = 1.0;
    [JsonPropertyName("thresholding")] public bool Thresholding { get; set; }
    [JsonPropertyName("dynamic_thresholding_ratio")] public double DynamicThresholdingRatio { get; set; } = 0.995;
    [JsonPropertyName("sample_max_value")] public double SampleMaxValue { get; set; } = 1.0;

    // Sigma schedules (Euler, DPM-Solver, flow matching).
    [JsonPropertyName("interpolation_type")] public string InterpolationType { get; set; } = "linear";
    [JsonPropertyName("use_karras_sigmas")] public bool UseKarrasSigmas { get; set; }
    [JsonPropertyName("use_exponential_sigmas")] public bool UseExponentialSigmas { get; set; }
    [JsonPropertyName("use_beta_sigmas")] public bool UseBetaSigmas { get; set; }
    [JsonPropertyName("use_lu_lambdas")] public bool UseLuLambdas { get; set; }
    [JsonPropertyName("use_flow_sigmas")] public bool UseFlowSigmas { get; set; }
    [JsonPropertyName("sigma_min")] public double? SigmaMin { get; set; }
    [JsonPropertyName("sigma_max")] public double? SigmaMax { get; set; }
    [JsonPropertyName("timestep_type")] public string TimestepType { get; set; } = "discrete";
    [JsonPropertyName("final_sigmas_type")] public string FinalSigmasType { get; set; } = "zero";

    // DPM-Solver multistep.
    [JsonPropertyName("solver_order")] public int SolverOrder { get; set; } = 2;
    [JsonPropertyName("algorithm_type")] public string AlgorithmType { get; set; } = "dpmsolver++";
    [JsonPropertyName("solver_type")] public string SolverType { get; set; } = "midpoint";
    [JsonPropertyName("lower_order_final")] public bool LowerOrderFinal { get; set; } = true;
    [JsonPropertyName("euler_at_final")] public bool EulerAtFinal { get; set; }
    [JsonPropertyName("lambda_min_clipped")] public double LambdaMinClipped { get; set; } = double.NegativeInfinity;
    [JsonPropertyName("variance_type")] public string? VarianceType { get; set; }
    [JsonPropertyName("flow_shift")] public double FlowShift { get; set; } = 1.0;

    // Flow matching (FLUX).
    [JsonPropertyName("shift")] public double Shift { get; set; } = 1.0;
    [JsonPropertyName("use_dynamic_shifting")] public bool UseDynamicShifting { get; set; }
    [JsonPropertyName("base_shift")] public double BaseShift { get; set; } = 0.5;
    [JsonPropertyName("max_shift")] public double MaxShift { get; set; } = 1.15;
    [JsonPropertyName("base_image_seq_len")] public int BaseImageSeqLen { get; set; } = 256;
    [JsonPropertyName("max_image_seq_len")] public int MaxImageSeqLen { get; set; } = 4096;
    [JsonPropertyName("time_shift_type")] public string TimeShiftType { get; set; } = "exponential";
    [JsonPropertyName("invert_sigmas")] public bool InvertSigmas { get; set; }
    [JsonPropertyName("shift_terminal")] public double? ShiftTerminal { get; set; }
    [JsonPropertyName("stochastic_sampling")] public bool StochasticSampling { get; set; }

    private static readonly JsonSerializerOptions Options = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Reads a <c>scheduler_config.json</c>.</summary>
    public static SchedulerConfig Load(string configJsonPath)
    {
        IO.RegularFile.Require(configJsonPath);
        if (!File.Exists(configJsonPath))
            throw new DiffusionException("SchedulerConfigNotFound", DiffusionErrorKind.ObjectNotFound,
                $"The scheduler config '{configJsonPath}' does not exist. A diffusers model folder has it at scheduler/scheduler_config.json.",
                configJsonPath);
        return FromJson(IO.RegularFile.ReadAllText(configJsonPath), configJsonPath);
    }

    /// <summary>Parses scheduler config JSON text (as diffusers writes it, NaN/Infinity literals included).</summary>
    public static SchedulerConfig FromJson(string json, string source = "scheduler config")
    {
        try
        {
            var node = JsonNode.Parse(QuoteNamedFloatLiterals(json)) as JsonObject
                ?? throw new JsonException("the top level is not a JSON object");
            // diffusers' from_config drops the keys that were defaults of the class that saved the config.
            if (node["_use_default_values"] is JsonArray usedDefaults)
                foreach (var key in usedDefaults.Select(k => k?.GetValue<string>()).OfType<string>().ToList())
                    node.Remove(key);
            // A JSON null is Python's None: treat the key as absent so it takes its default.
            foreach (var key in node.Where(p => p.Value is null).Select(p => p.Key).ToList())
                node.Remove(key);
            var config = node.Deserialize<SchedulerConfig>(Options) ?? throw new JsonException("the config is null");
            config.Validate(source);
            return config;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new DiffusionException("SchedulerConfigInvalid", DiffusionErrorKind.InvalidData,
                $"The scheduler config '{source}' is not valid ({e.Message}). It must be a diffusers scheduler_config.json object.",
                source, e);
        }
    }

    /// <summary>
    /// Values no schedule can work with (diffusers fails later with NaN latents or an index error): a train schedule
    /// of fewer than 1 step, betas outside (0, 1) or decreasing, steps_offset past the schedule.
    /// </summary>
    private void Validate(string source)
    {
        DiffusionException Invalid(string key, object value, string rule) =>
            new("SchedulerConfigValueInvalid", DiffusionErrorKind.InvalidData,
                $"The scheduler config '{source}' sets '{key}' to {value}, which cannot work: {rule}. Restore the model's original scheduler_config.json.", source);
        if (NumTrainTimesteps < 1) throw Invalid("num_train_timesteps", NumTrainTimesteps, "it must be at least 1 (1000 for SD)");
        if (StepsOffset < 0 || StepsOffset >= NumTrainTimesteps)
            throw Invalid("steps_offset", StepsOffset, $"it must be between 0 and num_train_timesteps - 1 ({NumTrainTimesteps - 1}); SD uses 1");
        if (TrainedBetas is { } trained)
        {
            if (trained.Length != NumTrainTimesteps) throw Invalid("trained_betas", $"{trained.Length} values", $"it must give one beta per train timestep ({NumTrainTimesteps})");
            if (trained.Any(b => !(b > 0 && b < 1))) throw Invalid("trained_betas", "a value outside (0, 1)", "every beta must be above 0 and below 1");
        }
        else if (BetaSchedule is "linear" or "scaled_linear")
        {
            if (!(BetaStart > 0 && BetaStart < 1)) throw Invalid("beta_start", BetaStart, "it must be above 0 and below 1 (SD: 0.00085)");
            if (!(BetaEnd >= BetaStart && BetaEnd < 1)) throw Invalid("beta_end", BetaEnd, $"it must be at least beta_start ({BetaStart}) and below 1 (SD: 0.012)");
        }
    }

    /// <summary>A copy whose values can be changed without touching this one.</summary>
    public SchedulerConfig Clone() => (SchedulerConfig)MemberwiseClone();

    /// <summary>
    /// Python's json writes float infinities and NaN as bare <c>Infinity</c>, <c>-Infinity</c>, <c>NaN</c>
    /// (e.g. DPM-Solver's <c>lambda_min_clipped</c>); quote them so System.Text.Json can read them as named literals.
    /// </summary>
    internal static string QuoteNamedFloatLiterals(string json)
    {
        var result = new StringBuilder(json.Length + 16);
        bool inString = false;
        for (int i = 0; i < json.Length; i++)
        {
            char c = json[i];
            if (inString)
            {
                result.Append(c);
                if (c == '\\' && i + 1 < json.Length) result.Append(json[++i]);
                else if (c == '"') inString = false;
                continue;
            }
            if (c == '"') { inString = true; result.Append(c); continue; }
            var literal = new[] { "-Infinity", "Infinity", "NaN" }.FirstOrDefault(l => string.CompareOrdinal(json, i, l, 0, l.Length) == 0);
            if (literal is null) { result.Append(c); continue; }
            result.Append('"').Append(literal).Append('"');
            i += literal.Length - 1;
        }
        return result.ToString();
    }
}
