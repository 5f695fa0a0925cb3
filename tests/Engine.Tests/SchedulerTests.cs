using System.Text.Json.Nodes;
using Diffusion.Engine.IO;
using Diffusion.Engine.Schedulers;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;
using Xunit.Abstractions;

namespace Diffusion.Engine.Tests;

/// <summary>
/// Schedulers against diffusers: timesteps against the reference runs, and each step against an independent
/// float64 re-derivation of diffusers' formulas driven by a fake model.
/// </summary>
public class SchedulerTests(ITestOutputHelper output)
{
    // ---------- fixtures ----------

    /// <summary>sd-tiny-refs.json holds Python's bare -Infinity, so it is read through the scheduler config's literal quoting.</summary>
    private static JsonArray SdRuns() =>
        JsonNode.Parse(SchedulerConfig.QuoteNamedFloatLiterals(File.ReadAllText(Fixtures.PathOf("sd-tiny-refs.json"))))!.AsArray();

    private static JsonObject SdRun(string scheduler) =>
        SdRuns().Select(r => r!.AsObject()).First(r => (string)r["scheduler"]! == scheduler);

    private static IScheduler FromRun(JsonObject run) =>
        SchedulerFactory.Create(SchedulerConfig.FromJson(run["scheduler_config"]!.ToJsonString()));

    private static float[] ReferenceTimesteps(string file)
    {
        using var f = SafeTensorsFile.Open(Fixtures.PathOf(file));
        var steps = f.Tensors.Keys.Where(k => k.EndsWith("_t", StringComparison.Ordinal)).Select(k => int.Parse(k[4..^2])).OrderBy(i => i);
        return steps.Select(i => { using var t = f.Load($"step{i}_t"); return t.to(ScalarType.Float32).item<float>(); }).ToArray();
    }

    public static IEnumerable<object[]> SdRunFiles() => SdRuns().Select(r => new object[] { (string)r!["file"]! });

    [Theory]
    [MemberData(nameof(SdRunFiles))]
    public void TimestepsMatchDiffusersRuns(string file)
    {
        var run = SdRuns().Select(r => r!.AsObject()).First(r => (string)r["file"]! == file);
        var scheduler = FromRun(run);
        Assert.Equal((string)run["scheduler"]!, scheduler.Name);
        scheduler.SetTimesteps((int)run["steps"]!);
        var expected = ReferenceTimesteps(file);
        output.WriteLine($"{file}: {string.Join(", ", scheduler.Timesteps)}");
        Assert.Equal(expected, scheduler.Timesteps); // exact float32 equality
    }

    [Theory]
    [MemberData(nameof(SdRunFiles))]
    public void InitNoiseSigmaFollowsDiffusersFormula(string file)
    {
        var run = SdRuns().Select(r => r!.AsObject()).First(r => (string)r["file"]! == file);
        var scheduler = FromRun(run);
        scheduler.SetTimesteps((int)run["steps"]!);
        var config = scheduler.Config;
        // Euler schedulers: the largest sigma of the schedule (sigma at the first timestep, from float64 alphas_cumprod),
        // in quadrature with 1 for "leading" spacing; the others 1.
        double expected = 1.0;
        if (scheduler is EulerDiscreteScheduler or EulerAncestralDiscreteScheduler)
        {
            double maxSigma = Interp64(scheduler.Timesteps[0], TrainingSigmas64(config));
            expected = (config.TimestepSpacing ?? "linspace") is "linspace" or "trailing" ? maxSigma : Math.Sqrt(maxSigma * maxSigma + 1);
        }
        output.WriteLine($"{scheduler.Name}: {scheduler.InitNoiseSigma} vs float64 {expected}");
        Assert.True(Math.Abs(scheduler.InitNoiseSigma - expected) <= 1e-5 * expected, $"InitNoiseSigma {scheduler.InitNoiseSigma} != {expected}");
    }

    public static IEnumerable<object[]> FluxRunFiles() =>
        JsonNode.Parse(File.ReadAllText(Fixtures.PathOf("flux-tiny-refs.json")))!.AsArray().Select(r => new object[] { (string)r!["file"]! });

    [Theory]
    [MemberData(nameof(FluxRunFiles))]
    public void FluxTimestepsMatchDiffusersRuns(string file)
    {
        var run = JsonNode.Parse(File.ReadAllText(Fixtures.PathOf("flux-tiny-refs.json")))!.AsArray().First(r => (string)r!["file"]! == file)!;
        var scheduler = SchedulerFactory.Create(Fixtures.PathOf("flux-tiny", "scheduler", "scheduler_config.json"));
        var c = scheduler.Config;
        int imageSeqLen = ((int)run["height"]! / 16) * ((int)run["width"]! / 16);
        double mu = FlowMatchEulerDiscreteScheduler.CalculateShift(imageSeqLen, c.BaseImageSeqLen, c.MaxImageSeqLen, c.BaseShift, c.MaxShift);
        scheduler.SetTimesteps((int)run["steps"]!, mu);
        output.WriteLine($"{file}: mu {mu}: {string.Join(", ", scheduler.Timesteps)}");
        Assert.Equal(ReferenceTimesteps(file), scheduler.Timesteps);
    }

    // ---------- independent float64 re-derivations ----------

    /// <summary>alphas_cumprod in float64 straight from the DDPM definitions (scaled_linear or linear betas).</summary>
    private static double[] AlphasCumprod64(SchedulerConfig c)
    {
        int n = c.NumTrainTimesteps;
        var result = new double[n];
        double product = 1;
        for (int i = 0; i < n; i++)
        {
            double beta = c.BetaSchedule == "scaled_linear"
                ? Math.Pow(Math.Sqrt(c.BetaStart) + i * (Math.Sqrt(c.BetaEnd) - Math.Sqrt(c.BetaStart)) / (n - 1), 2)
                : c.BetaStart + i * (c.BetaEnd - c.BetaStart) / (n - 1);
            product *= 1 - beta;
            result[i] = product;
        }
        return result;
    }

    private static double[] TrainingSigmas64(SchedulerConfig c) => AlphasCumprod64(c).Select(a => Math.Sqrt((1 - a) / a)).ToArray();

    /// <summary>A fake denoiser: smooth in x, different at every timestep.</summary>
    private static Tensor FakeModel(Tensor x, double t) => x * 0.3 + x.sin() * 0.2 + t / 1000.0;

    private static Tensor Latents(int seed, ScalarType dtype = ScalarType.Float32) =>
        randn([2, 4, 8, 8], ScalarType.Float32, generator: new Generator((ulong)seed)).to(dtype);

    private (double MaxAbs, double MaxRel) Compare(Tensor reference, Tensor actual, string what)
    {
        using var e = reference.to(ScalarType.Float64);
        using var a = actual.to(ScalarType.Float64);
        using var diff = (a - e).abs();
        double maxAbs = diff.max().item<double>();
        double maxRel = (diff / (e.abs() + 1e-3)).max().item<double>();
        output.WriteLine($"{what}: max |diff| {maxAbs:g3}, max rel {maxRel:g3}");
        Fixtures.AssertClose(reference, actual, rtol: 1e-4, atol: 1e-5, what);
        return (maxAbs, maxRel);
    }

    /// <summary>Runs the engine scheduler (float32) and a float64 reference side by side on the fake model.</summary>
    private void RunAgainstReference(IScheduler scheduler, int steps, Func<Tensor, int, Tensor> referenceStep,
        double? mu = null, Generator? generator = null)
    {
        scheduler.SetTimesteps(steps, mu);
        var x = Latents(1) * scheduler.InitNoiseSigma;
        var x64 = x.to(ScalarType.Float64);
        for (int i = 0; i < scheduler.Timesteps.Length; i++)
        {
            double t = scheduler.Timesteps[i];
            var modelOutput = FakeModel(scheduler.ScaleModelInput(x, i), t);
            x = scheduler.Step(modelOutput, i, x, generator);
            x64 = referenceStep(x64, i);
            Compare(x64, x, $"{scheduler.Name} step {i} (t={t})");
        }
        Assert.Equal(ScalarType.Float32, x.dtype);
    }

    [Fact]
    public void DdimStepMatchesFloat64Derivation()
    {
        var scheduler = FromRun(SdRun("DDIMScheduler"));
        var c = scheduler.Config;
        var ac = AlphasCumprod64(c);
        int steps = 5;
        RunAgainstReference(scheduler, steps, (x, i) =>
        {
            int t = (int)scheduler.Timesteps[i], prev = t - c.NumTrainTimesteps / steps;
            double aT = ac[t], aPrev = prev >= 0 ? ac[prev] : ac[0]; // set_alpha_to_one = false
            var eps = FakeModel(x, t);
            var x0 = (x - Math.Sqrt(1 - aT) * eps) / Math.Sqrt(aT);
            return Math.Sqrt(aPrev) * x0 + Math.Sqrt(1 - aPrev) * eps;
        });
    }

    [Fact]
    public void DdimTrailingVPredictionMatchesFloat64Derivation()
    {
        var config = SchedulerConfig.FromJson(SdRun("DDIMScheduler")["scheduler_config"]!.ToJsonString());
        config.TimestepSpacing = "trailing";
        config.PredictionType = "v_prediction";
        config.SetAlphaToOne = true;
        config.ClipSample = true;
        var scheduler = new DDIMScheduler(config);
        var ac = AlphasCumprod64(config);
        scheduler.SetTimesteps(5);
        Assert.Equal([999f, 799f, 599f, 399f, 199f], scheduler.Timesteps);
        RunAgainstReference(scheduler, 5, (x, i) =>
        {
            int t = (int)scheduler.Timesteps[i], prev = t - 200;
            double aT = ac[t], aPrev = prev >= 0 ? ac[prev] : 1.0;
            var v = FakeModel(x, t);
            var x0 = (Math.Sqrt(aT) * x - Math.Sqrt(1 - aT) * v).clamp(-1.0, 1.0);
            var eps = Math.Sqrt(aT) * v + Math.Sqrt(1 - aT) * x;
            return Math.Sqrt(aPrev) * x0 + Math.Sqrt(1 - aPrev) * eps;
        });
    }

    [Fact]
    public void PndmPlmsStepMatchesFloat64Derivation()
    {
        var scheduler = SchedulerFactory.Create(Fixtures.PathOf("sd-tiny", "scheduler", "scheduler_config.json"));
        var c = scheduler.Config;
        var ac = AlphasCumprod64(c);
        const int steps = 4, stride = 250;
        // PNDM formula (9): x_prev from x_t and eps between two training timesteps.
        Tensor Prev(Tensor x, int t, int prev, Tensor eps)
        {
            double aT = ac[t], aPrev = prev >= 0 ? ac[prev] : ac[0];
            double denom = aT * Math.Sqrt(1 - aPrev) + Math.Sqrt(aT * (1 - aT) * aPrev);
            return Math.Sqrt(aPrev / aT) * x - (aPrev - aT) * eps / denom;
        }
        // PLMS: the first step evaluates twice (Heun-like average), then Adams-Bashforth of order 2, 3, 4.
        var history = new List<Tensor>();
        Tensor? firstSample = null, firstEps = null;
        RunAgainstReference(scheduler, steps, (x, i) =>
        {
            int t = (int)scheduler.Timesteps[i];
            var eps = FakeModel(x, t);
            if (i == 0) { firstSample = x; firstEps = eps; history.Add(eps); return Prev(x, t, t - stride, eps); }
            if (i == 1) return Prev(firstSample!, t + stride, t, (eps + firstEps!) / 2);
            history.Add(eps);
            var e = history.AsEnumerable().Reverse().ToList();
            var combined = e.Count switch
            {
                2 => (3 * e[0] - e[1]) / 2,
                3 => (23 * e[0] - 16 * e[1] + 5 * e[2]) / 12,
                _ => (55 * e[0] - 59 * e[1] + 37 * e[2] - 9 * e[3]) / 24,
            };
            return Prev(x, t, t - stride, combined);
        });
    }

    [Fact]
    public void EulerStepMatchesFloat64Derivation()
    {
        var scheduler = FromRun(SdRun("EulerDiscreteScheduler"));
        var trainingSigmas = TrainingSigmas64(scheduler.Config);
        scheduler.SetTimesteps(6);
        // np.interp on the (float32) timesteps, then 0.
        var sigmas = scheduler.Timesteps.Select(t => Interp64(t, trainingSigmas)).Append(0).ToArray();
        AssertSigmas(sigmas, ((EulerDiscreteScheduler)scheduler).Sigmas);
        RunAgainstReference(scheduler, 6, (x, i) =>
        {
            var eps = FakeModel(x / Math.Sqrt(sigmas[i] * sigmas[i] + 1), scheduler.Timesteps[i]);
            var x0 = x - sigmas[i] * eps;
            return x + (x - x0) / sigmas[i] * (sigmas[i + 1] - sigmas[i]);
        });
    }

    [Fact]
    public void DpmSolverPlusPlus2MKarrasStepMatchesFloat64Derivation()
    {
        var scheduler = FromRun(SdRun("DPMSolverMultistepScheduler"));
        Assert.True(scheduler.Config.UseKarrasSigmas);
        var trainingSigmas = TrainingSigmas64(scheduler.Config);
        const int steps = 8;
        scheduler.SetTimesteps(steps);
        // Karras et al. (rho = 7) between the smallest and largest training sigma, then the final sigma 0.
        double minInv = Math.Pow(trainingSigmas[0], 1 / 7.0), maxInv = Math.Pow(trainingSigmas[^1], 1 / 7.0);
        var sigmas = Enumerable.Range(0, steps).Select(i => Math.Pow(maxInv + i / (steps - 1.0) * (minInv - maxInv), 7)).Append(0).ToArray();
        AssertSigmas(sigmas, ((DPMSolverMultistepScheduler)scheduler).Sigmas);

        double Alpha(int i) => 1 / Math.Sqrt(sigmas[i] * sigmas[i] + 1);
        double Sigma(int i) => sigmas[i] * Alpha(i);
        double Lambda(int i) => Math.Log(Alpha(i)) - Math.Log(Sigma(i));
        var dataPredictions = new List<Tensor>();
        RunAgainstReference(scheduler, steps, (x, i) =>
        {
            var eps = FakeModel(x, scheduler.Timesteps[i]);
            var x0 = (x - Sigma(i) * eps) / Alpha(i); // data prediction (dpmsolver++)
            dataPredictions.Add(x0);
            double h = Lambda(i + 1) - Lambda(i);
            var next = Sigma(i + 1) / Sigma(i) * x - Alpha(i + 1) * (Math.Exp(-h) - 1) * x0;
            bool firstOrder = i == 0 || i == steps - 1; // warm-up, and lower_order_final at the last step
            if (firstOrder) return next;
            double r0 = (Lambda(i) - Lambda(i - 1)) / h;
            var d1 = (x0 - dataPredictions[i - 1]) / r0;
            return next - 0.5 * Alpha(i + 1) * (Math.Exp(-h) - 1) * d1; // midpoint second-order correction
        });
    }

    [Fact]
    public void EulerAncestralUsesTheGenerator()
    {
        var run = SdRun("EulerAncestralDiscreteScheduler");
        const int steps = 4, seed = 7;
        Tensor Run(int noiseSeed)
        {
            var scheduler = FromRun(run);
            scheduler.SetTimesteps(steps);
            var generator = new Generator((ulong)noiseSeed);
            var x = Latents(1) * scheduler.InitNoiseSigma;
            for (int i = 0; i < steps; i++)
                x = scheduler.Step(FakeModel(scheduler.ScaleModelInput(x, i), scheduler.Timesteps[i]), i, x, generator);
            return x;
        }
        var first = Run(seed);
        Assert.True(first.equal(Run(seed)).all().item<bool>(), "the same seed must give the same result");
        Assert.False(first.allclose(Run(seed + 1)), "another seed must give another result");

        // float64 re-derivation: Euler to sigma_down, then torch.randn(model_output.shape) from the generator times sigma_up.
        var ancestral = FromRun(run);
        var trainingSigmas = TrainingSigmas64(ancestral.Config);
        ancestral.SetTimesteps(steps);
        var sigmas = ancestral.Timesteps.Select(t => Interp64(t, trainingSigmas)).Append(0).ToArray();
        var referenceGenerator = new Generator((ulong)seed);
        RunAgainstReference(ancestral, steps, (x, i) =>
        {
            double from = sigmas[i], to = sigmas[i + 1];
            double up = Math.Sqrt(to * to * (from * from - to * to) / (from * from)), down = Math.Sqrt(to * to - up * up);
            var eps = FakeModel(x / Math.Sqrt(from * from + 1), ancestral.Timesteps[i]);
            var noise = randn(eps.shape, ScalarType.Float32, generator: referenceGenerator).to(ScalarType.Float64);
            return x + eps * (down - from) + noise * up;
        }, generator: new Generator((ulong)seed));
    }

    [Fact]
    public void FlowMatchEulerStepMatchesFloat64Derivation()
    {
        var scheduler = SchedulerFactory.Create(Fixtures.PathOf("flux-tiny", "scheduler", "scheduler_config.json"));
        var c = scheduler.Config;
        const int steps = 4;
        double mu = FlowMatchEulerDiscreteScheduler.CalculateShift(64, c.BaseImageSeqLen, c.MaxImageSeqLen, c.BaseShift, c.MaxShift);
        Assert.Equal(0.5 + (1.15 - 0.5) / (4096 - 256) * (64 - 256), mu, 12);
        // FLUX: sigmas linspace(1, 1/n, n), shifted by exp(mu) / (exp(mu) + 1/sigma - 1), then 0.
        var sigmas = Enumerable.Range(0, steps).Select(i => 1 - i * (1 - 1.0 / steps) / (steps - 1))
            .Select(s => Math.Exp(mu) / (Math.Exp(mu) + 1 / s - 1)).Append(0).ToArray();
        RunAgainstReference(scheduler, steps, (x, i) => x + (sigmas[i + 1] - sigmas[i]) * FakeModel(x, scheduler.Timesteps[i]), mu: mu);
        AssertSigmas(sigmas, ((FlowMatchEulerDiscreteScheduler)scheduler).Sigmas);
        Assert.Equal(sigmas.SkipLast(1).Select(s => s * 1000), scheduler.Timesteps.Select(t => (double)t), new ToleranceComparer(1e-6));
    }

    [Fact]
    public void FlowMatchNeedsMuWithDynamicShifting()
    {
        var scheduler = SchedulerFactory.Create(Fixtures.PathOf("flux-tiny", "scheduler", "scheduler_config.json"));
        var e = Assert.Throws<DiffusionException>(() => scheduler.SetTimesteps(4));
        Assert.Equal("FlowMatchMuRequired", e.ErrorId);
    }

    [Fact]
    public void NewSetTimestepsResetsMultistepState()
    {
        var scheduler = FromRun(SdRun("PNDMScheduler"));
        Tensor Run()
        {
            scheduler.SetTimesteps(4);
            var x = Latents(3);
            for (int i = 0; i < scheduler.Timesteps.Length; i++) x = scheduler.Step(FakeModel(x, scheduler.Timesteps[i]), i, x);
            return x;
        }
        Assert.True(Run().equal(Run()).all().item<bool>());
    }

    private static double Interp64(double x, double[] fp)
    {
        int j = Math.Min((int)Math.Floor(x), fp.Length - 2);
        return fp[j] + (x - j) * (fp[j + 1] - fp[j]);
    }

    private void AssertSigmas(double[] expected, IReadOnlyList<float> actual)
    {
        Assert.Equal(expected.Length, actual.Count);
        double worst = expected.Zip(actual, (e, a) => Math.Abs(a - e) / Math.Max(Math.Abs(e), 1e-12)).Max();
        output.WriteLine($"sigmas: max rel {worst:g3} vs float64");
        // float32 alphas_cumprod (as diffusers computes it) is ~1e-5 relative off the float64 product.
        Assert.True(worst <= 5e-5, $"sigmas differ from the float64 derivation by {worst:g3} relative");
    }

    private sealed class ToleranceComparer(double rtol) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= rtol * Math.Max(Math.Abs(x), Math.Abs(y));
        public int GetHashCode(double obj) => 0;
    }

    // ---------- factory and config ----------

    [Fact]
    public void FactoryBuildsTheConfiguredScheduler()
    {
        var scheduler = SchedulerFactory.Create(Fixtures.PathOf("sd-tiny", "scheduler", "scheduler_config.json"));
        Assert.IsType<PNDMScheduler>(scheduler);
        Assert.Equal(0.00085, scheduler.Config.BetaStart);
        Assert.Equal("scaled_linear", scheduler.Config.BetaSchedule);
    }

    [Fact]
    public void OverrideKeepsTheCompatibleConfigValues()
    {
        var path = Fixtures.PathOf("sd-tiny", "scheduler", "scheduler_config.json");
        var euler = SchedulerFactory.Create(path, "euler");
        Assert.IsType<EulerDiscreteScheduler>(euler);
        Assert.Equal("EulerDiscreteScheduler", euler.Name);
        Assert.Equal((0.00085, 0.012, "scaled_linear"), (euler.Config.BetaStart, euler.Config.BetaEnd, euler.Config.BetaSchedule));
        // Same betas as the PNDM config: the largest sigma is the SD 1.5 one, and its saved "leading" spacing and
        // steps_offset 1 are kept, as EulerDiscreteScheduler.from_config would.
        euler.SetTimesteps(4);
        Assert.Equal([751f, 501f, 251f, 1f], euler.Timesteps);
        // diffusers' init_noise_sigma is (max(sigmas) ** 2 + 1) ** 0.5 for "leading": here the sigma of timestep 751.
        double maxSigma = Interp64(751, TrainingSigmas64(euler.Config));
        Assert.Equal(Math.Sqrt(maxSigma * maxSigma + 1), euler.InitNoiseSigma, 1e-5 * maxSigma);

        Assert.IsType<EulerAncestralDiscreteScheduler>(SchedulerFactory.Create(path, "EULER_A"));
        Assert.IsType<EulerAncestralDiscreteScheduler>(SchedulerFactory.Create(path, "Euler-Ancestral"));
        Assert.IsType<DDIMScheduler>(SchedulerFactory.Create(path, "ddimscheduler"));
        var karras = SchedulerFactory.Create(path, "DPM++2M-Karras");
        Assert.IsType<DPMSolverMultistepScheduler>(karras);
        Assert.True(karras.Config.UseKarrasSigmas);
        Assert.Equal(("dpmsolver++", 2), (karras.Config.AlgorithmType, karras.Config.SolverOrder));
        Assert.False(SchedulerFactory.Create(path, "dpm++2m").Config.UseKarrasSigmas);
        Assert.IsType<PNDMScheduler>(SchedulerFactory.Create(path, "pndm"));
    }

    [Fact]
    public void OverrideDropsValuesTheSavingClassHadAsDefaults()
    {
        // The reference PNDM run's config lists timestep_spacing among _use_default_values, so Euler gets its own "linspace".
        var config = SchedulerConfig.FromJson(SdRun("PNDMScheduler")["scheduler_config"]!.ToJsonString());
        Assert.Null(config.TimestepSpacing);
        var euler = SchedulerFactory.Create(config, "euler");
        euler.SetTimesteps(6);
        Assert.Equal(ReferenceTimesteps("sd-tiny-ref-euler.safetensors"), euler.Timesteps);
    }

    [Fact]
    public void UnknownNameListsTheValidOnes()
    {
        var e = Assert.Throws<DiffusionException>(() => SchedulerFactory.Create(Fixtures.PathOf("sd-tiny", "scheduler", "scheduler_config.json"), "lms"));
        Assert.Equal("SchedulerNameUnknown", e.ErrorId);
        Assert.Equal(DiffusionErrorKind.InvalidArgument, e.Kind);
        foreach (var name in SchedulerFactory.Names) Assert.Contains(name, e.Message);
        foreach (var alias in new[] { "pndm", "ddim", "euler", "euler_a", "euler-ancestral", "dpm++2m", "dpm++2m-karras", "flow-euler", "DDIMScheduler" })
            Assert.Contains(alias, SchedulerFactory.Names);
    }

    [Fact]
    public void FlowMatchingAndDiscreteTimeSchedulersDoNotReplaceEachOther()
    {
        var flux = Fixtures.PathOf("flux-tiny", "scheduler", "scheduler_config.json");
        Assert.Equal("SchedulerNotCompatible", Assert.Throws<DiffusionException>(() => SchedulerFactory.Create(flux, "euler")).ErrorId);
        Assert.IsType<FlowMatchEulerDiscreteScheduler>(SchedulerFactory.Create(flux, "flow-euler"));
        var sd = Fixtures.PathOf("sd-tiny", "scheduler", "scheduler_config.json");
        Assert.Equal("SchedulerNotCompatible", Assert.Throws<DiffusionException>(() => SchedulerFactory.Create(sd, "flow-euler")).ErrorId);
    }

    [Fact]
    public void ConfigReadsPythonInfinityAndReportsBadFiles()
    {
        var dpm = SchedulerConfig.FromJson(SdRun("DPMSolverMultistepScheduler")["scheduler_config"]!.ToJsonString());
        Assert.Equal(double.NegativeInfinity, dpm.LambdaMinClipped);
        var text = "{\"_class_name\": \"DPMSolverMultistepScheduler\", \"lambda_min_clipped\": -Infinity, \"note\": \"-Infinity stays\"}";
        Assert.Equal(double.NegativeInfinity, SchedulerConfig.FromJson(text).LambdaMinClipped);
        Assert.Equal("SchedulerConfigInvalid", Assert.Throws<DiffusionException>(() => SchedulerConfig.FromJson("[1, 2]")).ErrorId);
        Assert.Equal("SchedulerConfigNotFound", Assert.Throws<DiffusionException>(() => SchedulerConfig.Load("/nonexistent/scheduler_config.json")).ErrorId);
    }
}
