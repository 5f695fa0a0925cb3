using System.Text;
using Diffusion.Engine.IO;
using Diffusion.Engine.Imaging;
using Xunit;

namespace Diffusion.Engine.Tests;

public class OutputPathTemplateTests
{
    [Fact]
    public void ExistingFolderGetsTheDefaultName()
    {
        using var dir = new TempDirectory();
        var template = new OutputPathTemplate(dir.Path);
        Assert.Equal(Path.Combine(dir.Path, OutputPathTemplate.DefaultFileName), template.Template);
        Assert.Equal(Path.Combine(dir.Path, "0003-42-a_cat_on_a_roof.png"), template.Expand(3, 42, "a cat on a roof"));
        Assert.Equal(Path.Combine(dir.Path, "12345-7-x.png"), template.Expand(12345, 7, "x"));
    }

    [Fact]
    public void TrailingSeparatorMeansFolderEvenIfMissing()
    {
        using var dir = new TempDirectory();
        var template = new OutputPathTemplate("new" + Path.DirectorySeparatorChar, dir.Path);
        Assert.Equal(Path.Combine(dir.Path, "new", "0000-1-p.png"), template.Expand(0, 1, "p"));
    }

    [Fact]
    public void PlainFileGetsPngUnlessAnImageFormatAndNoPlaceholders()
    {
        using var dir = new TempDirectory();
        var template = new OutputPathTemplate("out", dir.Path);
        Assert.False(template.HasPlaceholders);
        Assert.Equal(dir.File("out.png"), template.Expand(5, 9, "ignored"));
        Assert.Equal(dir.File("Picture.PNG"), new OutputPathTemplate("Picture.PNG", dir.Path).Expand(0, 0, ""));
        // Image formats keep their extension (JPEG, WebP); anything else gets ".png".
        Assert.Equal(dir.File("photo.jpg"), new OutputPathTemplate("photo.jpg", dir.Path).Expand(0, 0, ""));
        Assert.Equal(dir.File("photo.WEBP"), new OutputPathTemplate("photo.WEBP", dir.Path).Expand(0, 0, ""));
        Assert.Equal(dir.File("photo.gif.png"), new OutputPathTemplate("photo.gif", dir.Path).Expand(0, 0, ""));
    }

    [Fact]
    public void ExpandsEveryPlaceholderWithPadding()
    {
        using var dir = new TempDirectory();
        var template = new OutputPathTemplate("img-{index:000}-{seed}-{rank:00}-{prompt}", dir.Path);
        Assert.True(template.HasPlaceholders);
        Assert.Equal(dir.File("img-007-123456789012-01-red_fox.png"), template.Expand(7, 123456789012, "red fox", 1));
        Assert.Equal(dir.File("img-1234-5-00-untitled.png"), template.Expand(1234, 5, "   "));
        Assert.Equal(dir.File("s{5}.png"), new OutputPathTemplate("s{{{seed}}}", dir.Path).Expand(0, 5, ""));
        Assert.Equal(dir.File("run-3", "2.png"), new OutputPathTemplate("run-{seed}/{index}.png", dir.Path).Expand(2, 3, ""));
        Assert.Equal(dir.File("X-2.png"), new OutputPathTemplate("X-{Index}", dir.Path).Expand(2, 0, ""));
    }

    [Fact]
    public void RelativePathsUseTheBaseDirectory()
    {
        using var dir = new TempDirectory();
        Assert.Equal(dir.File("sub", "a.png"), new OutputPathTemplate(Path.Combine("sub", "..", "sub", "a.png"), dir.Path).Expand(0, 0, ""));
    }

    [Fact]
    public void PromptCannotLeaveTheFolder()
    {
        using var dir = new TempDirectory();
        var path = new OutputPathTemplate("{prompt}", dir.Path).Expand(0, 0, "../../etc/passwd");
        Assert.Equal(dir.Path, Path.GetDirectoryName(path));
        Assert.Equal("etcpasswd.png", Path.GetFileName(path));
    }

    [Fact]
    public void UnknownPlaceholderIsNamed()
    {
        var e = Assert.Throws<DiffusionException>(() => new OutputPathTemplate("img-{width}.png"));
        Assert.Equal("OutputPathPlaceholderUnknown", e.ErrorId);
        Assert.Contains("{width}", e.Message);
        Assert.Contains("{index}", e.Message);
    }

    [Theory]
    [InlineData("img-{index.png", "not closed")]
    [InlineData("img-}.png", "closes no placeholder")]
    [InlineData("img-{prompt:000}.png", "invalid format")]
    [InlineData("img-{index:abc}.png", "invalid format")]
    [InlineData("img-{index:}.png", "invalid format")]
    [InlineData("  ", "empty")]
    public void MalformedTemplatesAreRefused(string path, string because)
    {
        var e = Assert.Throws<DiffusionException>(() => new OutputPathTemplate(path));
        Assert.Equal("OutputPathTemplateInvalid", e.ErrorId);
        Assert.Contains(because, e.Message);
    }

    [Theory]
    [InlineData("a <b>:\"c\"/d\\e|f?g*h", "a_bcdefgh")]
    [InlineData("  multiple   spaces\tand\nnew\r\nlines  ", "multiple_spaces_and_new_lines")]
    [InlineData("...dots and spaces... ", "dots_and_spaces")]
    [InlineData("\u0001x\u007fy\u0000", "xy")]
    [InlineData("CON", "CON_")]
    [InlineData("nul.txt", "nul_.txt")]
    [InlineData("com1", "com1_")]
    [InlineData("Lpt9 .", "Lpt9_")]
    [InlineData("console", "console")]
    [InlineData("", "untitled")]
    [InlineData("???", "untitled")]
    [InlineData("caf\u00e9 \u732B", "caf\u00e9_\u732B")]
    public void MakesPromptsSafe(string prompt, string expected) => Assert.Equal(expected, OutputPathTemplate.SafeFileNamePart(prompt));

    [Fact]
    public void LimitsLengthWithoutSplittingCharacters()
    {
        Assert.Equal(new string('a', 80), OutputPathTemplate.SafeFileNamePart(new string('a', 200)));
        Assert.Equal(new string('a', 78), OutputPathTemplate.SafeFileNamePart(new string('a', 78) + " ." + new string('b', 10)));

        var emoji = OutputPathTemplate.SafeFileNamePart(new string('a', 79) + "\U0001F600 tail");
        Assert.Equal(new string('a', 79), emoji); // the pair would make 81 characters: cut before it, not inside it

        var cjk = OutputPathTemplate.SafeFileNamePart(new string('\u732B', 100));
        Assert.True(Encoding.UTF8.GetByteCount(cjk) <= 200, $"{Encoding.UTF8.GetByteCount(cjk)} bytes");
        Assert.Equal(66, cjk.Length);
    }
}
