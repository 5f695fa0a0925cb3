using System.Collections;
using System.Globalization;

namespace Diffusion.Engine.Parallel;

/// <summary>The environment variables one launcher sets for each process it starts.</summary>
/// <param name="Launcher">Who sets them, e.g. "torchrun/accelerate".</param>
/// <param name="LocalRankVariables">Tried in order; the local rank is 0 when none is set.</param>
public sealed record LauncherVariables(string Launcher, string RankVariable, string WorldSizeVariable, params string[] LocalRankVariables);

/// <summary>Where this process stands among the processes of a data-parallel run.</summary>
/// <param name="ProcessRank">This process's index, 0..WorldSize-1 (accelerate's process_index).</param>
/// <param name="WorldSize">How many processes share the work (accelerate's num_processes).</param>
/// <param name="LocalRank">The index among the processes on this machine; picks the GPU.</param>
/// <param name="Launcher">What set the values: "parameters", a launcher such as "torchrun/accelerate" or "Slurm", or "none".</param>
/// <param name="Source">Which parameters and variables the values came from, e.g. "SLURM_PROCID=3, SLURM_NTASKS=8, SLURM_LOCALID=1".</param>
public sealed record RankInfo(int ProcessRank, int WorldSize, int LocalRank, string Launcher, string Source)
{
    /// <summary>The device this process uses by default; filled in by <see cref="WithDevice"/>.</summary>
    public string? Device { get; init; }

    /// <summary>
    /// The default device: cuda:LOCAL_RANK when there are CUDA devices (wrapping round when there are fewer devices
    /// than local ranks, e.g. one visible device per process), else cpu.
    /// </summary>
    public string DefaultDevice(int cudaDeviceCount) =>
        cudaDeviceCount > 0 ? $"cuda:{LocalRank % cudaDeviceCount}" : "cpu";

    public RankInfo WithDevice(int cudaDeviceCount) => this with { Device = DefaultDevice(cudaDeviceCount) };

    public override string ToString() => $"rank {ProcessRank} of {WorldSize} (local {LocalRank}) from {Launcher}";
}

/// <summary>
/// Detects rank and world size: explicit values first, then the variables of torchrun/accelerate
/// (RANK, WORLD_SIZE, LOCAL_RANK), Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID), Open MPI
/// (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK) and MPICH/Intel MPI (PMI_RANK, PMI_SIZE,
/// MPI_LOCALRANKID), the first launcher whose rank or size variable is set; else rank 0 of 1.
/// Takes the variables as a dictionary so it can be tested without touching the process's environment.
/// </summary>
public static class RankEnvironment
{
    public static IReadOnlyList<LauncherVariables> Launchers { get; } =
    [
        new("torchrun/accelerate", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
        new("Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
        new("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
        new("MPICH/Intel MPI (PMI)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ];

    /// <summary>Detects from this process's environment.</summary>
    public static RankInfo FromProcess(int? rank = null, int? worldSize = null) =>
        Detect(Environment.GetEnvironmentVariables(), rank, worldSize);

    /// <summary>
    /// Detects from <paramref name="variables"/> (name to value; a PowerShell hashtable works). Explicit
    /// <paramref name="rank"/> / <paramref name="worldSize"/> win over the variables, each on its own.
    /// </summary>
    /// <exception cref="DiffusionException">A variable is not a whole number, a value is out of range, or a launcher set its rank without its size (or the other way round).</exception>
    public static RankInfo Detect(IDictionary variables, int? rank = null, int? worldSize = null)
    {
        if (rank is int r && worldSize is int n)
            return Checked(new RankInfo(r, n, 0, "parameters", $"-ProcessIndex {r}, -NumProcesses {n}"), "-ProcessIndex", "-NumProcesses");

        string? Get(string name) => variables.Contains(name) && variables[name]?.ToString() is { Length: > 0 } v ? v.Trim() : null;
        var launcher = Launchers.FirstOrDefault(l => Get(l.RankVariable) is not null || Get(l.WorldSizeVariable) is not null);
        if (launcher is null)
        {
            var none = new RankInfo(rank ?? 0, worldSize ?? 1, 0, rank is null && worldSize is null ? "none" : "parameters",
                rank is not null ? $"-ProcessIndex {rank}, no launcher variables: 1 process"
                : worldSize is not null ? $"-NumProcesses {worldSize}, no launcher variables: rank 0" : "no launcher variables: rank 0 of 1");
            return Checked(none, "-ProcessIndex", "-NumProcesses");
        }

        var rankText = Get(launcher.RankVariable);
        var sizeText = Get(launcher.WorldSizeVariable);
        if ((rankText is null && rank is null) || (sizeText is null && worldSize is null))
        {
            var (set, missing) = rankText is null ? (launcher.WorldSizeVariable, launcher.RankVariable) : (launcher.RankVariable, launcher.WorldSizeVariable);
            throw new DiffusionException("RankVariableMissing", DiffusionErrorKind.InvalidArgument,
                $"{set} is set but {missing} is not, and {launcher.Launcher} sets both. Set {missing}, remove {set}, or give -ProcessIndex and -NumProcesses.", missing);
        }
        var sources = new List<string>();
        int finalRank = rank ?? Parse(launcher.RankVariable, rankText!, min: 0);
        sources.Add(rank is null ? $"{launcher.RankVariable}={rankText}" : $"-ProcessIndex {rank}");
        int finalSize = worldSize ?? Parse(launcher.WorldSizeVariable, sizeText!, min: 1);
        sources.Add(worldSize is null ? $"{launcher.WorldSizeVariable}={sizeText}" : $"-NumProcesses {worldSize}");
        var localName = launcher.LocalRankVariables.FirstOrDefault(v => Get(v) is not null);
        int localRank = localName is null ? 0 : Parse(localName, Get(localName)!, min: 0);
        sources.Add(localName is null ? $"{string.Join("/", launcher.LocalRankVariables)} not set: local rank 0" : $"{localName}={Get(localName)}");
        var who = rank is null && worldSize is null ? launcher.Launcher : $"parameters and {launcher.Launcher}";
        return Checked(new RankInfo(finalRank, finalSize, localRank, who, string.Join(", ", sources)),
            rank is null ? launcher.RankVariable : "-ProcessIndex", worldSize is null ? launcher.WorldSizeVariable : "-NumProcesses");
    }

    private static RankInfo Checked(RankInfo info, string rankName, string sizeName)
    {
        if (info.WorldSize < 1)
            throw new DiffusionException("RankWorldSizeInvalid", DiffusionErrorKind.InvalidArgument,
                $"{sizeName} {info.WorldSize}: there must be at least 1 process.", sizeName.TrimStart('-'));
        if (info.ProcessRank < 0 || info.ProcessRank >= info.WorldSize)
            throw new DiffusionException("RankOutOfRange", DiffusionErrorKind.InvalidArgument,
                $"{rankName} {info.ProcessRank} is not below {sizeName} {info.WorldSize}: ranks run 0..{info.WorldSize - 1}. Check the launcher's variables or the parameters.",
                rankName.TrimStart('-'));
        return info;
    }

    private static int Parse(string name, string text, int min)
    {
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
            throw new DiffusionException("RankVariableInvalid", DiffusionErrorKind.InvalidArgument,
                $"The environment variable {name}='{text}' is not a whole number. Launchers set it to a process number; fix or remove it.", name);
        if (value < min)
            throw new DiffusionException("RankVariableInvalid", DiffusionErrorKind.InvalidArgument,
                $"The environment variable {name}={value} must be at least {min}.", name);
        return value;
    }
}
