using System.Diagnostics;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Reflection;
using Diffusion.Engine.Parallel;

namespace Diffusion.Cmdlets.Parallel;

/// <summary>Something a worker produced or a change of its state, handed to the cmdlet's thread in arrival order.</summary>
internal abstract record WorkerEvent(WorkerProcess Worker);
internal sealed record WorkerOutput(WorkerProcess Worker, PSObject Value) : WorkerEvent(Worker);
internal sealed record WorkerProgress(WorkerProcess Worker, ProgressRecord Record) : WorkerEvent(Worker);
internal sealed record WorkerError(WorkerProcess Worker, ErrorRecord Record) : WorkerEvent(Worker);
/// <summary>A warning, verbose, debug or information record.</summary>
internal sealed record WorkerMessage(WorkerProcess Worker, object Record) : WorkerEvent(Worker);
/// <summary>The current invocation ended; <see cref="Failure"/> says why when it did not complete.</summary>
internal sealed record WorkerFinished(WorkerProcess Worker, WorkerFailure? Failure) : WorkerEvent(Worker);

/// <summary>Why a worker's invocation did not complete.</summary>
/// <param name="ProcessDied">The worker process is gone (killed, crashed, exited): it can take no more work.</param>
public sealed record WorkerFailure(int ProcessRank, string Device, int? ProcessId, bool ProcessDied, int? ExitCode, string Message)
{
    public override string ToString() => $"rank {ProcessRank} ({Device}{(ProcessId is null ? "" : $", pid {ProcessId}")}): {Message}";
}

/// <summary>
/// One worker: a pwsh process (the same pwsh as this one) running a PowerShell remoting server over its stdin and
/// stdout, as Start-Job uses. Its objects come back serialized (CLIXML), with its progress, errors and other streams,
/// and the runspace stays open between invocations, so a model loaded by one invocation serves the next.
/// </summary>
internal sealed class WorkerProcess : IDisposable
{
    private readonly object _gate = new();
    private readonly Action<WorkerEvent> _post;
    private readonly IDisposable _instance;
    private readonly Process _process;
    private Runspace? _runspace;
    private Invocation? _current;
    private volatile bool _killRequested;
    private bool _exited; // under _gate
    private readonly Queue<string> _stderr = new();
    private volatile bool _disposed;

    public int Rank { get; }
    /// <summary>The device as the user named it, or null when the worker chose (see <see cref="WorkerLaunch.Device"/>).</summary>
    public string? Device { get; }
    /// <summary>The device the worker reported its pipeline on (cpu, cuda:0), once it did.</summary>
    public string? ResolvedDevice { get; set; }
    public string DeviceLabel => Device ?? ResolvedDevice ?? "auto";
    public int? ProcessId { get; private set; }
    /// <summary>Set once the process is gone or could not start; the worker takes no more work.</summary>
    public WorkerFailure? Death { get => _death; private set => _death = value; }
    private volatile WorkerFailure? _death;
    public bool IsAlive => Death is null && _runspace?.RunspaceStateInfo.State == RunspaceState.Opened;
    public bool IsBusy { get { lock (_gate) return _current is not null; } }

    public WorkerProcess(WorkerLaunch launch, Action<WorkerEvent> post)
    {
        Rank = launch.Rank;
        Device = launch.Device;
        _post = post;
        (_instance, _process) = OutOfProcess.NewInstance();
        var start = _process.StartInfo;
        var (fileName, leadingArguments) = PwshCommand();
        if (fileName is not null)
        {
            start.FileName = fileName;
            for (int i = 0; i < leadingArguments.Length; i++) start.ArgumentList.Insert(i, leadingArguments[i]);
        }
        foreach (var (name, value) in launch.Environment) start.Environment[name] = value;
        _process.EnableRaisingEvents = true;
        _process.Exited += OnExited;
        _process.ErrorDataReceived += (_, e) =>
        {
            if (string.IsNullOrWhiteSpace(e.Data)) return;
            lock (_stderr)
            {
                _stderr.Enqueue(e.Data.Trim());
                while (_stderr.Count > 5) _stderr.Dequeue();
            }
        };
    }

    /// <summary>
    /// The pwsh this session runs in: its executable, or for `dotnet pwsh` (the .NET tool) dotnet with pwsh.dll first.
    /// (null, []) for a host that is not pwsh: then PowerShell's own default, $PSHOME/pwsh.
    /// </summary>
    internal static (string? FileName, string[] LeadingArguments) PwshCommand()
    {
        var path = Environment.ProcessPath;
        var name = Path.GetFileNameWithoutExtension(path ?? "");
        if (string.Equals(name, "pwsh", StringComparison.OrdinalIgnoreCase)) return (path, []);
        var entry = Assembly.GetEntryAssembly()?.Location;
        if (string.Equals(name, "dotnet", StringComparison.OrdinalIgnoreCase) && !string.IsNullOrEmpty(entry)
            && string.Equals(Path.GetFileNameWithoutExtension(entry), "pwsh", StringComparison.OrdinalIgnoreCase))
            return (path, [entry]);
        return (null, []);
    }

    /// <summary>
    /// Starts the process, opens the runspace, imports the module and moves to <paramref name="location"/> (relative paths
    /// in a worker's script mean what they mean to the caller); false (and <see cref="Death"/>) when that fails.
    /// </summary>
    public bool Open(string modulePath, string? location = null)
    {
        try
        {
            _runspace = OutOfProcess.CreateRunspace(_instance);
            _runspace.OpenAsync();
            WhileAlive(() => _runspace.RunspaceStateInfo.State == RunspaceState.BeforeOpen || _runspace.RunspaceStateInfo.State == RunspaceState.Opening);
            if (_runspace.RunspaceStateInfo.State != RunspaceState.Opened)
                throw _runspace.RunspaceStateInfo.Reason ?? new InvalidOperationException($"the runspace is {_runspace.RunspaceStateInfo.State}");
            ProcessId = SafeId();
            using var ps = PowerShell.Create();
            ps.Runspace = _runspace;
            ps.AddCommand("Import-Module").AddParameter("Name", modulePath).AddParameter("ErrorAction", "Stop");
            if (location is not null) ps.AddStatement().AddCommand("Set-Location").AddParameter("LiteralPath", location).AddParameter("ErrorAction", "Stop");
            var pending = ps.BeginInvoke();
            WhileAlive(() => !pending.IsCompleted);
            ps.EndInvoke(pending);
            return true;
        }
        catch (Exception e) // whatever stops a worker from starting makes it a dead worker, reported with its rank
        {
            Death = Failure(_killRequested ? "stopped while starting" : $"could not start: {Describe(e)}", died: true);
            Kill();
            return false;
        }
    }

    /// <summary>Waits while <paramref name="waiting"/> holds; a process that exits (or is killed) ends the wait with an error at once.</summary>
    private void WhileAlive(Func<bool> waiting)
    {
        while (waiting())
        {
            bool started = SafeId() is not null;
            if (_killRequested || (started && WaitExit(50)))
                throw new InvalidOperationException(_killRequested ? "stopped" : ExitDescription());
            if (!started) Thread.Sleep(50);
        }
    }

    /// <summary>Runs a script in the worker; events arrive through the pool, ending with <see cref="WorkerFinished"/>.</summary>
    public void BeginInvoke(string script, IDictionary<string, object?> parameters)
    {
        var ps = PowerShell.Create();
        ps.Runspace = _runspace;
        ps.AddScript(script);
        foreach (var (name, value) in parameters) ps.AddParameter(name, value);
        var invocation = new Invocation(ps, new PSDataCollection<PSObject>(), this);
        invocation.Output.DataAdded += (_, _) => invocation.Pump();
        ps.Streams.Error.DataAdded += (_, _) => invocation.Pump();
        ps.Streams.Progress.DataAdded += (s, e) => _post(new WorkerProgress(this, ((PSDataCollection<ProgressRecord>)s!)[e.Index]));
        ps.Streams.Warning.DataAdded += (s, e) => _post(new WorkerMessage(this, ((PSDataCollection<WarningRecord>)s!)[e.Index]));
        ps.Streams.Verbose.DataAdded += (s, e) => _post(new WorkerMessage(this, ((PSDataCollection<VerboseRecord>)s!)[e.Index]));
        ps.Streams.Debug.DataAdded += (s, e) => _post(new WorkerMessage(this, ((PSDataCollection<DebugRecord>)s!)[e.Index]));
        ps.Streams.Information.DataAdded += (s, e) => _post(new WorkerMessage(this, ((PSDataCollection<InformationRecord>)s!)[e.Index]));
        bool exited;
        lock (_gate)
        {
            exited = _exited;
            _current = invocation;
        }
        if (exited) // died since it was last seen alive: OnExited has come and gone
        {
            Finish(invocation, null, processEnded: true);
            return;
        }
        try
        {
            ps.BeginInvoke<PSObject, PSObject>(null, invocation.Output, null, ar =>
            {
                Exception? error = null;
                try { ps.EndInvoke(ar); }
                catch (Exception e) { error = e; }
                Finish(invocation, error);
            }, null);
        }
        catch (Exception e) when (e is InvalidRunspaceStateException or InvalidOperationException or RuntimeException)
        {
            Finish(invocation, e);
        }
    }

    /// <summary>One running script: its output is handed on in order, and it finishes once (completion, or the process's death).</summary>
    private sealed class Invocation(PowerShell ps, PSDataCollection<PSObject> output, WorkerProcess worker)
    {
        private int _sentOutput, _sentErrors, _finished;
        private bool _released = !WorkerTestHooks.HoldsOutput(worker.Rank);
        public PowerShell Ps { get; } = ps;
        public PSDataCollection<PSObject> Output { get; } = output;
        public bool HoldsOutput { get { lock (this) return !_released; } }

        /// <summary>Hands on what arrived; <paramref name="release"/> ends the test hook's holding back of the output.</summary>
        public void Pump(bool release = false)
        {
            lock (this)
            {
                _released |= release;
                for (; _released && _sentOutput < Output.Count; _sentOutput++) worker._post(new WorkerOutput(worker, Output[_sentOutput]));
                for (; _released && _sentErrors < Ps.Streams.Error.Count; _sentErrors++) worker._post(new WorkerError(worker, Ps.Streams.Error[_sentErrors]));
            }
        }

        public bool TryFinish() => Interlocked.Exchange(ref _finished, 1) == 0;
    }

    /// <summary>
    /// The worker process exited. PowerShell's remoting client notices a dead server only after a minute, so the
    /// running script is finished here, at once. What the process sent before dying may still come after that (late
    /// output): what it finished is not decided from what arrived but from the run's journal (see <see cref="RunJournal"/>).
    /// A worker that dies between scripts is marked dead, so that it is given no more work.
    /// </summary>
    private void OnExited(object? sender, EventArgs e)
    {
        Invocation? running;
        lock (_gate)
        {
            _exited = true;
            running = _current;
        }
        if (running is not null) Finish(running, null, processEnded: true);
        else if (Death is null && !_killRequested && !_disposed) Death = Failure(ExitDescription(), died: true);
    }

    private void Finish(Invocation invocation, Exception? error, bool processEnded = false)
    {
        if (!invocation.TryFinish()) return;
        invocation.Pump();
        var ps = invocation.Ps;
        WorkerFailure? failure = null;
        bool died = processEnded || ProcessGone();
        if (died || error is not null || ps.InvocationStateInfo.State is PSInvocationState.Failed or PSInvocationState.Stopped)
        {
            var message = died ? ExitDescription() : Describe(error ?? ps.InvocationStateInfo.Reason);
            failure = Failure(message, died);
            if (died) Death = failure;
        }
        lock (_gate) _current = null;
        bool held = invocation.HoldsOutput;
        if (!died && !held) ps.Dispose(); // on a dead connection Dispose would wait for the remoting client's timeout
        _post(new WorkerFinished(this, failure));
        if (!held) return;
        invocation.Pump(release: true); // what the test hook held back comes after the end, as late output does
        if (!died) ps.Dispose();
    }

    /// <summary>What is known of a process that ended: its exit code, a signal, and the end of what it wrote to stderr.</summary>
    private string ExitDescription()
    {
        WaitExit(2000);
        string text = "the worker process ended";
        try
        {
            var code = _process.ExitCode;
            if (!OperatingSystem.IsWindows() && code > 128)
                text += $", killed by signal {code - 128}{(code - 128 == 9 ? " (SIGKILL: kill -9, or the out-of-memory killer)" : "")}";
        }
        catch (InvalidOperationException) { }
        string[] tail;
        lock (_stderr) tail = _stderr.ToArray();
        return tail.Length == 0 ? text : $"{text}; its last error output: {string.Join(" | ", tail)}";
    }

    /// <summary>True when the worker process has ended (or its connection broke); waits briefly for the exit code.</summary>
    private bool ProcessGone()
    {
        if (_runspace?.RunspaceStateInfo.State is RunspaceState.Broken or RunspaceState.Closed) { WaitExit(2000); return true; }
        return WaitExit(0);
    }

    private bool WaitExit(int milliseconds)
    {
        try { return _process.WaitForExit(milliseconds); }
        catch (InvalidOperationException) { return true; } // never started
        catch (SystemException) { return true; }
    }

    private WorkerFailure Failure(string message, bool died)
    {
        int? exit = null;
        try { if (_process.HasExited) exit = _process.ExitCode; }
        catch (InvalidOperationException) { }
        return new WorkerFailure(Rank, DeviceLabel, ProcessId, died, exit, message);
    }

    /// <summary>The user-facing text of a worker error: the remote error's message, or the transport's (with the exit code).</summary>
    private static string Describe(Exception? e)
    {
        while (e is MethodInvocationException or TargetInvocationException && e.InnerException is not null) e = e.InnerException;
        if (e is null) return "stopped";
        var text = e is IContainsErrorRecord { ErrorRecord: { } r } ? r.ErrorDetails?.Message ?? r.ToString() : e.Message;
        return string.Join(" ", text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    private int? SafeId()
    {
        try { return _process.Id; }
        catch (InvalidOperationException) { return null; }
    }

    /// <summary>Kills the process and everything it started (Ctrl+C, failures): no orphans.</summary>
    public void Kill()
    {
        _killRequested = true;
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { } // not started, or already gone
        catch (System.ComponentModel.Win32Exception) { }
    }

    private static void DisposeQuietly(Runspace? runspace)
    {
        try { runspace?.Dispose(); }
        catch (Exception e) when (e is InvalidRunspaceStateException or InvalidOperationException or System.Management.Automation.Remoting.PSRemotingTransportException) { }
    }

    /// <summary>Closes the runspace (the server exits) and makes sure the process and its children are gone.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Invocation? running;
        lock (_gate) running = _current;
        if (running is not null) Kill();
        // Closing the runspace of a dead (or killed) process waits for the remoting client's one-minute timeout: do that on a
        // background thread, so neither this command nor the exit of pwsh waits for it.
        var runspace = _runspace;
        if (!_killRequested && Death is null && !WaitExit(0)) DisposeQuietly(runspace);
        else if (runspace is not null) System.Threading.Tasks.Task.Run(() => DisposeQuietly(runspace));
        Kill();
        try { _instance.Dispose(); }
        catch (InvalidOperationException) { }
        WaitExit(5000);
    }

    /// <summary>
    /// PowerShell's out-of-process runspace API (PowerShellProcessInstance, RunspaceFactory.CreateOutOfProcessRunspace
    /// with it), public in PowerShell 7 but missing from the PowerShellStandard reference this module compiles against.
    /// </summary>
    private static class OutOfProcess
    {
        private static readonly Type InstanceType = typeof(PSObject).Assembly.GetType("System.Management.Automation.Runspaces.PowerShellProcessInstance", throwOnError: true)!;
        private static readonly MethodInfo Create = typeof(RunspaceFactory).GetMethod("CreateOutOfProcessRunspace", [typeof(TypeTable), InstanceType])
            ?? throw new MissingMethodException("RunspaceFactory.CreateOutOfProcessRunspace(TypeTable, PowerShellProcessInstance) is missing: this needs PowerShell 7.4 or newer.");

        public static (IDisposable Instance, Process Process) NewInstance()
        {
            var instance = (IDisposable)Activator.CreateInstance(InstanceType)!;
            var process = (Process)InstanceType.GetProperty("Process")!.GetValue(instance)!;
            return (instance, process);
        }

        public static Runspace CreateRunspace(IDisposable instance)
        {
            try { return (Runspace)Create.Invoke(null, [null, instance])!; }
            catch (TargetInvocationException e) when (e.InnerException is not null) { throw e.InnerException; }
        }
    }
}
