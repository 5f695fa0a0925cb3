using System.Diagnostics;
using System.Text.Json.Nodes;
using Diffusion.Engine.IO;
using Diffusion.Engine.Pipelines;
using Xunit;

namespace Diffusion.Engine.Tests;

/// <summary>
/// Loading a model reads only regular files inside the model folder: links are followed (the Hugging Face cache),
/// a dangling link, FIFO or device is refused with a clear error instead of "truncated" or a hang, and a component
/// name in model_index.json cannot lead outside the folder.
/// </summary>
public class ModelFolderSafetyTests
{
    private static readonly TimeSpan LoadTimeout = TimeSpan.FromSeconds(20);

    /// <summary>A writable copy of sd-tiny.</summary>
    private static string CopySdTiny(TempDirectory dir, string name = "sd-tiny")
    {
        var source = Fixtures.PathOf("sd-tiny");
        var target = dir.File(name);
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var copy = Path.Combine(target, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
            File.Copy(file, copy);
        }
        return target;
    }

    private static void MakeFifo(string path)
    {
        if (File.Exists(path)) File.Delete(path);
        using var p = Process.Start(new ProcessStartInfo("mkfifo", [path]) { RedirectStandardError = true })!;
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"mkfifo '{path}' failed: {p.StandardError.ReadToEnd()}");
    }

    /// <summary>Runs <paramref name="load"/> with a timeout, so that a regression fails instead of hanging; a reader stuck on the FIFO is released.</summary>
    private static DiffusionException LoadFails(Action load, string fifo)
    {
        var task = Task.Run(load);
        bool done;
        try { done = task.Wait(LoadTimeout); } catch (AggregateException) { done = true; }
        if (!done)
        {
            try { using var release = new FileStream(fifo, FileMode.Open, FileAccess.Write); } catch (IOException) { }
            Assert.Fail($"Loading hung for {LoadTimeout.TotalSeconds} s on the FIFO '{fifo}'.");
        }
        var e = Assert.IsType<DiffusionException>(Assert.IsType<AggregateException>(task.Exception).InnerException);
        return e;
    }

    private static void Load(string folder)
    {
        using var pipeline = DiffusionPipeline.Load(folder, new PipelineLoadOptions());
    }

    [Theory]
    [InlineData("model_index.json")]
    [InlineData("unet/config.json")]
    [InlineData("tokenizer/vocab.json")]
    [InlineData("scheduler/scheduler_config.json")]
    [InlineData("text_encoder/model.safetensors.index.json")]
    [InlineData("vae/diffusion_pytorch_model.safetensors")]
    public void FifoAsModelFile_IsRefused_WithoutHanging(string file)
    {
        using var dir = new TempDirectory();
        var folder = CopySdTiny(dir);
        var fifo = Path.Combine(folder, file);
        MakeFifo(fifo);
        var e = LoadFails(() => Load(folder), fifo);
        Assert.Equal("ModelFileNotRegular", e.ErrorId);
        Assert.Contains(fifo, e.Message);
        Assert.Contains("FIFO", e.Message);
    }

    [Fact]
    public void DeviceAsConfig_IsRefused()
    {
        using var dir = new TempDirectory();
        var folder = CopySdTiny(dir);
        var config = Path.Combine(folder, "vae", "config.json");
        File.Delete(config);
        File.CreateSymbolicLink(config, "/dev/null"); // a device: empty here, endless for /dev/zero
        var e = LoadFails(() => Load(folder), config);
        Assert.Equal("ModelFileNotRegular", e.ErrorId);
        Assert.Contains("character device", e.Message);
    }

    [Fact]
    public void WeightsThatAreSymlinks_AreReadThroughTheLink()
    {
        using var dir = new TempDirectory();
        var target = Fixtures.PathOf("sd-tiny", "vae", "diffusion_pytorch_model.safetensors");
        var link = dir.File("linked.safetensors");
        File.CreateSymbolicLink(link, target);
        using var viaLink = SafeTensorsFile.Open(link);
        using var direct = SafeTensorsFile.Open(target);
        Assert.Equal(direct.Tensors.Keys.Order(), viaLink.Tensors.Keys.Order());
        var name = direct.Tensors.Keys.First();
        using var a = direct.Load(name);
        using var b = viaLink.Load(name);
        Assert.True(a.equal(b).all().item<bool>(), $"tensor {name} differs when read through the link");
    }

    [Fact]
    public void DanglingWeightsLink_NamesTheLinkAndItsTarget()
    {
        using var dir = new TempDirectory();
        var link = dir.File("x.safetensors");
        var missing = dir.File("blobs", "0123abcd");
        File.CreateSymbolicLink(link, missing);
        var e = Assert.Throws<DiffusionException>(() => SafeTensorsFile.Open(link));
        Assert.Equal("ModelFileLinkDangling", e.ErrorId);
        Assert.Contains(link, e.Message);
        Assert.Contains(missing, e.Message);
    }

    [Theory]
    [InlineData("../other-model/vae")]
    [InlineData("../../other-model/vae")]
    [InlineData("/tmp/other-model/vae")]
    [InlineData("sub/vae")]
    [InlineData("..")]
    [InlineData("sub\\vae")]
    public void ComponentNameThatIsNotAPlainFolderName_IsRefused(string name)
    {
        using var dir = new TempDirectory();
        var folder = CopySdTiny(dir, "model");
        CopySdTiny(dir, "other-model"); // what the name would reach
        var index = Path.Combine(folder, "model_index.json");
        var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        json.Remove("vae");
        json[name] = new JsonArray("diffusers", "AutoencoderKL");
        File.WriteAllText(index, json.ToJsonString());
        var e = Assert.Throws<DiffusionException>(() => DiffusersFolder.Open(folder));
        Assert.Equal("ModelIndexComponentNameInvalid", e.ErrorId);
        Assert.Contains($"'{name}'", e.Message);
        Assert.Contains(index, e.Message);
    }
}
