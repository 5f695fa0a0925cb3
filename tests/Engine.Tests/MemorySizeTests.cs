using Diffusion.Engine.Devices;
using System.Collections;
using Diffusion.Engine.Sharding;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>-MaxMemory values and keys, with accelerate's convert_file_size_to_int rules.</summary>
public class MemorySizeTests
{
    [Theory]
    [InlineData("16GB", 16_000_000_000L)]
    [InlineData("16GiB", 17_179_869_184L)]
    [InlineData("1.5GB", 1_500_000_000L)]
    [InlineData("512MiB", 536_870_912L)]
    [InlineData("512MB", 512_000_000L)]
    [InlineData("100KB", 100_000L)]
    [InlineData("1KiB", 1024L)]
    [InlineData("0.5kib", 512L)]
    [InlineData(" 16 GB ", 16_000_000_000L)]
    [InlineData("8Gb", 1_000_000_000L)]    // a lowercase final b means bits, as in accelerate
    [InlineData("5gb", 625_000_000L)]
    [InlineData("123", 123L)]
    [InlineData(1024, 1024L)]
    [InlineData(17_179_869_184L, 17_179_869_184L)] // PowerShell's 16GB literal is 16 GiB
    [InlineData(2.0, 2L)]
    public void ParsesBytesAndUnits(object value, long bytes) => Assert.Equal(bytes, MemorySize.Parse(value));

    [Theory]
    [InlineData("16TB", "has no unit")]
    [InlineData("16", null)]
    [InlineData("GB", "is not a number")]
    [InlineData("abcGB", "'abc' is not a number")]
    [InlineData("-5GB", "negative")]
    [InlineData(-1, "negative")]
    [InlineData(1.5, "must be whole")]
    [InlineData("", "has no unit")]
    [InlineData(true, "not a number or a string")]
    public void RefusesWhatIsNotASize(object value, string? why)
    {
        if (why is null) { Assert.Equal(16, MemorySize.Parse(value)); return; }
        var e = Assert.Throws<DiffusionException>(() => MemorySize.Parse(value));
        Assert.Equal("InvalidMemorySize", e.ErrorId);
        Assert.Contains(why, e.Message);
        Assert.Contains("'16GB', '512MB', '100KB' (powers of 10) or '16GiB'", e.Message);
    }

    [Theory]
    [InlineData(0, "cuda:0")]
    [InlineData(3L, "cuda:3")]
    [InlineData("1", "cuda:1")]
    [InlineData("cuda", "cuda:0")]
    [InlineData("CUDA:2", "cuda:2")]
    [InlineData("CPU", "cpu")]
    [InlineData("disk", "disk")]
    public void NormalizesDeviceNames(object key, string device) => Assert.Equal(device, DeviceNames.Normalize(key, "test"));

    [Theory]
    [InlineData("gpu")]
    [InlineData("mps")]
    [InlineData(-1)]
    [InlineData("cuda:x")]
    public void RefusesUnknownDevices(object key)
    {
        var e = Assert.Throws<DiffusionException>(() => DeviceNames.Normalize(key, "-MaxMemory"));
        Assert.Equal("UnknownDevice", e.ErrorId);
        Assert.Contains($"'{key}' is not a device", e.Message);
    }

    [Fact]
    public void MaxMemoryIsOrderedGpusThenCpuThenDisk()
    {
        var budgets = DeviceBudgets.FromMaxMemory(new Hashtable { ["disk"] = "1000GB", ["cpu"] = "64GB", [1] = "16GB", ["cuda:0"] = 8_000_000_000L });
        Assert.Equal(["cuda:0", "cuda:1", "cpu", "disk"], budgets.Select(b => b.Device));
        Assert.Equal([8_000_000_000L, 16_000_000_000L, 64_000_000_000L, 1_000_000_000_000L], budgets.Select(b => b.Bytes!.Value));
    }

    [Fact]
    public void MaxMemoryNamingADeviceTwiceIsRefused()
    {
        var e = Assert.Throws<DiffusionException>(() => DeviceBudgets.FromMaxMemory(new Hashtable { [0] = "1GB", ["cuda:0"] = "2GB" }));
        Assert.Equal("DuplicateDevice", e.ErrorId);
    }

    [Theory]
    [InlineData(512L, "512 B")]
    [InlineData(1536L, "1.50 KiB")]
    [InlineData(17_179_869_184L, "16.00 GiB")]
    public void FormatsForPeople(long bytes, string text) => Assert.Equal(text, MemorySize.Format(bytes));
}
