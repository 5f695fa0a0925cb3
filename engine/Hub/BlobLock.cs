namespace Diffusion.Engine.Hub;

/// <summary>
/// An exclusive lock on .locks/models--org--name/{etag}.lock, held by an open FileStream with FileShare.None: on Linux
/// and macOS .NET takes flock(LOCK_EX) on it (the lock Python's filelock, which huggingface_hub uses, takes too), on
/// Windows the sharing mode itself excludes other openers. It works across processes and within one; the OS drops it
/// when the holder dies. Waits, retrying, until the holder lets go or <c>cancel</c> fires.
/// </summary>
public sealed class BlobLock : IDisposable
{
    private readonly FileStream _stream;

    private BlobLock(FileStream stream) => _stream = stream;

    public static BlobLock Acquire(string path, CancellationToken cancel, Action? onWait = null)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        bool told = false;
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            try
            {
                return new BlobLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another download of this blob holds it: wait for it (its blob is then reused).
                if (!told) { onWait?.Invoke(); told = true; }
                cancel.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(100));
            }
        }
    }

    public void Dispose() => _stream.Dispose();
}
