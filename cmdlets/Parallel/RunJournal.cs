using System.Globalization;
using System.Text;
using System.Text.Json;
using Diffusion.Engine;
using Diffusion.Engine.Imaging;
using Diffusion.Engine.Parallel;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>
/// A parallel run's record of its saves: what says which images a worker made, whatever became of the worker and of
/// the result objects it sent. Each worker appends to its own file in a folder the parent owns (its path and the run's id
/// come in <see cref="FileVariable"/> and <see cref="RunVariable"/>), one JSON line per event, written before the worker
/// goes on: "saving" before it writes an image (with the state of the file there, if any), "saved" once the image is
/// in place, "refused" when the save failed (the worker reports that error itself). The parent reads the files when a
/// worker ends, and deletes the folder at the end of the run.
/// </summary>
internal sealed class RunJournal : IDisposable
{
    public const string FileVariable = "DIFFUSION_PARALLEL_JOURNAL";
    public const string RunVariable = "DIFFUSION_PARALLEL_RUN";
    private const string Saving = "saving", Saved = "saved", Refused = "refused";

    /// <summary>One line of a journal.</summary>
    internal sealed record Entry(string Run, string Event, int Index, string Path, long Seed, int Rank, string Device, double Seconds,
        long? BeforeLength = null, long? BeforeTicks = null, string? ErrorId = null);

    private static readonly Lazy<RunJournal?> WorkerJournal = new(() =>
        Environment.GetEnvironmentVariable(FileVariable) is { Length: > 0 } file && Environment.GetEnvironmentVariable(RunVariable) is { Length: > 0 } run
            ? new RunJournal(run, System.IO.Path.GetDirectoryName(file)!, file)
            : null);

    /// <summary>The journal of this process when it is a worker of a parallel run; null anywhere else.</summary>
    public static RunJournal? Worker => WorkerJournal.Value;

    public string Id { get; }
    public string Folder { get; }
    private readonly string? _file;

    private RunJournal(string id, string folder, string? file)
    {
        Id = id;
        Folder = folder;
        _file = file;
    }

    // ---- the worker's side ----

    /// <summary>Recorded before an image is written: with the state of the file it may replace, a file found there later tells whether this save made it.</summary>
    public void BeforeSave(int index, string path, long seed, int rank, string device, double seconds)
    {
        var before = FileState(path);
        Append(new Entry(Id, Saving, index, path, seed, rank, device, seconds, before?.Length, before?.Ticks));
    }

    /// <summary>Recorded once the image is in place.</summary>
    public void AfterSave(int index, string path, long seed, int rank, string device, double seconds) =>
        Append(new Entry(Id, Saved, index, path, seed, rank, device, seconds));

    /// <summary>Recorded when the save failed; the worker reports the error.</summary>
    public void SaveFailed(int index, string path, long seed, int rank, string device, string errorId) =>
        Append(new Entry(Id, Refused, index, path, seed, rank, device, 0, ErrorId: errorId));

    private void Append(Entry entry)
    {
        var line = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(entry) + "\n");
        try
        {
            // One write of the whole line, handed to the OS before the worker goes on: a process killed after it keeps it.
            using var stream = new FileStream(_file!, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
            stream.Write(line);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DiffusionException("ParallelJournalWriteFailed", DiffusionErrorKind.ResourceUnavailable,
                $"Could not record image #{entry.Index} in the parallel run's journal '{_file}': {e.Message} Check that the temporary folder is writable and has space.", _file, e);
        }
    }

    // ---- the parent's side ----

    /// <summary>A new, empty journal folder for a run, in the temporary folder.</summary>
    public static RunJournal Create()
    {
        var id = Guid.NewGuid().ToString("N");
        var folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"diffusion-run-{id}");
        try { Directory.CreateDirectory(folder); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DiffusionException("ParallelJournalWriteFailed", DiffusionErrorKind.ResourceUnavailable,
                $"Could not create the parallel run's journal folder '{folder}': {e.Message} Check that the temporary folder is writable.", folder, e);
        }
        return new RunJournal(id, folder, null);
    }

    /// <summary>The launch of a worker with the variables that name its journal file.</summary>
    public WorkerLaunch ForWorker(WorkerLaunch launch)
    {
        var environment = new Dictionary<string, string>(launch.Environment, StringComparer.Ordinal)
        {
            [FileVariable] = System.IO.Path.Combine(Folder, $"rank{launch.Rank.ToString(CultureInfo.InvariantCulture)}.jsonl"),
            [RunVariable] = Id,
        };
        return launch with { Environment = environment };
    }

    /// <summary>Everything the workers have recorded so far (a line still being written is left out).</summary>
    public Record Read()
    {
        var entries = new List<Entry>();
        foreach (var file in Directory.Exists(Folder) ? Directory.EnumerateFiles(Folder, "rank*.jsonl") : [])
        {
            string text;
            try
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var reader = new StreamReader(stream, Encoding.UTF8);
                text = reader.ReadToEnd();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                Entry? entry = null;
                try { entry = JsonSerializer.Deserialize<Entry>(line); }
                catch (JsonException) { }
                if (entry is not null && entry.Run == Id) entries.Add(entry);
            }
        }
        return new Record(entries);
    }

    /// <summary>What the journal says of each prompt.</summary>
    internal sealed class Record(List<Entry> entries)
    {
        /// <summary>
        /// The save of this run that made the image now on disk for prompt <paramref name="index"/>, or null: a "saved"
        /// entry whose file is there, or a "saving" entry (the worker died before it could say more) whose file is there,
        /// changed since the entry was written, and holds that prompt's seed.
        /// </summary>
        public Entry? Written(int index)
        {
            var mine = entries.Where(e => e.Index == index).ToList();
            foreach (var e in mine.Where(e => e.Event == Saved))
                if (File.Exists(e.Path)) return e;
            foreach (var e in mine.Where(e => e.Event == Saving))
            {
                var before = e.BeforeLength is long length && e.BeforeTicks is long ticks ? (length, ticks) : ((long, long)?)null;
                if (FileState(e.Path) is not { } now || now == before) continue;
                try
                {
                    if (DiffusionImage.ReadParameters(e.Path)?.Seed == e.Seed) return e;
                }
                catch (Exception x) when (x is DiffusionException or IOException or UnauthorizedAccessException or FormatException) { }
            }
            return null;
        }

        /// <summary>A worker's record that saving prompt <paramref name="index"/> failed (the worker reports that error), or null.</summary>
        public Entry? SaveFailed(int index) => entries.LastOrDefault(e => e.Index == index && e.Event == Refused);

        public IEnumerable<string> SavedOrSavingPaths => entries.Where(e => e.Event is Saving or Saved).Select(e => e.Path).Distinct(StringComparer.Ordinal);
    }

    /// <summary>
    /// After the run (every worker gone): removes what killed workers left half-written next to the images (the
    /// engine's atomic save writes '.name.guid.tmp' and renames it), and the journal folder.
    /// </summary>
    public void Dispose()
    {
        try
        {
            foreach (var path in Read().SavedOrSavingPaths)
            {
                var folder = System.IO.Path.GetDirectoryName(path);
                var name = System.IO.Path.GetFileName(path);
                if (folder is null || !Directory.Exists(folder)) continue;
                foreach (var temp in Directory.EnumerateFiles(folder, $".{name}.*.tmp"))
                    if (Engine.IO.StaleTempFiles.IsTempNameOf(System.IO.Path.GetFileName(temp), name)) TryDelete(() => File.Delete(temp));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        TryDelete(() => Directory.Delete(Folder, recursive: true));
    }

    private static void TryDelete(Action delete)
    {
        try { delete(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>The length and last write time of a file, or null when there is none.</summary>
    private static (long Length, long Ticks)? FileState(string path)
    {
        var info = new FileInfo(path);
        return info.Exists ? (info.Length, info.LastWriteTimeUtc.Ticks) : null;
    }
}
