namespace Diffusion.Engine;

/// <summary>What kind of failure an engine error is; the cmdlets map it to an ErrorCategory.</summary>
public enum DiffusionErrorKind
{
    InvalidArgument,
    ObjectNotFound,
    InvalidData,
    NotSupported,
    ResourceUnavailable,
    InvalidOperation,
    OperationStopped,
}

/// <summary>
/// An error the user can act on: a stable <see cref="ErrorId"/>, what went wrong and where (<see cref="Target"/>,
/// a file, parameter or component name), and how to fix it (part of the message).
/// </summary>
public class DiffusionException : Exception
{
    public string ErrorId { get; }
    public DiffusionErrorKind Kind { get; }
    public string? Target { get; }

    public DiffusionException(string errorId, DiffusionErrorKind kind, string message, string? target = null, Exception? inner = null)
        : base(message, inner)
    {
        ErrorId = errorId;
        Kind = kind;
        Target = target;
    }
}
