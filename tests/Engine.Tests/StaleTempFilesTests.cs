using Diffusion.Engine.Imaging;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>A writer killed mid-write leaves its hidden temp file; the next save into that folder removes it, but never a live writer's.</summary>
public class StaleTempFilesTests
{
    private static string TempOf(string name) => $".{name}.{Guid.NewGuid():N}.tmp";

    private static string Leftover(TempDirectory dir, string name, TimeSpan age)
    {
        var path = dir.File(name);
        File.WriteAllBytes(path, [1, 2, 3]);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow - age);
        return path;
    }

    [Fact]
    public void NextSave_RemovesStaleTempFiles_KeepsLiveFreshAndForeignOnes()
    {
        using var dir = new TempDirectory();
        var old = TimeSpan.FromHours(2);
        var stale = Leftover(dir, TempOf("000.png"), old);                 // SIGKILLed writer, long ago
        var staleTensor = Leftover(dir, TempOf("x.safetensors"), old);
        var fresh = Leftover(dir, TempOf("001.png"), TimeSpan.FromSeconds(5)); // may be a writer between open and lock
        var foreign = new[] { Leftover(dir, ".notes.tmp", old), Leftover(dir, "002.png.tmp", old), Leftover(dir, $".002.png.{Guid.NewGuid():N}.bak", old) };
        var live = Leftover(dir, TempOf("003.png"), old);                     // a live writer that stalled: holds its lock
        using (new FileStream(live, FileMode.Open, FileAccess.Write, FileShare.None))
        {
            new DiffusionImage(2, 2, new byte[12]).SavePng(dir.File("new.png"), overwrite: false);
            Assert.True(File.Exists(live), "a temp file held by a live writer was removed");
        }
        Assert.False(File.Exists(stale), "the stale temp file of a killed PNG writer is still there");
        Assert.False(File.Exists(staleTensor), "the stale temp file of a killed tensor writer is still there");
        Assert.True(File.Exists(fresh), "a temp file written seconds ago was removed");
        foreach (var f in foreign) Assert.True(File.Exists(f), $"'{Path.GetFileName(f)}' is not this module's temp file but was removed");
        Assert.True(File.Exists(dir.File("new.png")));
    }
}
