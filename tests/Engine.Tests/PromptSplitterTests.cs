using Diffusion.Engine.Parallel;
using Xunit;

namespace Diffusion.Engine.Tests;

public class PromptSplitterTests
{
    /// <summary>
    /// Worked out by hand from accelerate's formulas (state.py, split_between_processes): q, r = divmod(N, P);
    /// start = p*q + min(p, r); the first r ranks take q+1; padding fills up to q + (r > 0) with inputs[-1].
    /// Ranks are separated by '|', padding items end in '*'.
    /// </summary>
    [Theory]
    [InlineData(10, 3, false, "0,1,2,3|4,5,6|7,8,9")]
    [InlineData(10, 3, true, "0,1,2,3|4,5,6,9*|7,8,9,9*")]
    [InlineData(9, 3, false, "0,1,2|3,4,5|6,7,8")]
    [InlineData(9, 3, true, "0,1,2|3,4,5|6,7,8")]
    [InlineData(7, 4, false, "0,1|2,3|4,5|6")]
    [InlineData(7, 4, true, "0,1|2,3|4,5|6,6*")]
    [InlineData(8, 4, true, "0,1|2,3|4,5|6,7")]
    [InlineData(3, 2, true, "0,1|2,2*")]
    [InlineData(2, 4, false, "0|1||")]
    [InlineData(2, 4, true, "0|1|1*|1*")]
    [InlineData(1, 2, true, "0|0*")]
    [InlineData(5, 1, true, "0,1,2,3,4")]
    [InlineData(0, 3, false, "||")]
    [InlineData(0, 3, true, "||")]
    public void MatchesAcceleratesSplit(int n, int p, bool padding, string expected)
    {
        var shares = PromptSplitter.AllShares(n, p, padding);
        var text = string.Join("|", shares.Select(s => string.Join(",", s.Items.Select(i => i.Index + (i.IsPadding ? "*" : "")))));
        Assert.Equal(expected, text);
        for (int rank = 0; rank < p; rank++) Assert.Equal(shares[rank], PromptSplitter.Share(n, rank, p, padding));
    }

    [Fact]
    public void EveryItemExactlyOnceAndSharesEven()
    {
        for (int n = 0; n <= 30; n++)
        for (int p = 1; p <= 9; p++)
        foreach (var padding in new[] { false, true })
        {
            var shares = PromptSplitter.AllShares(n, p, padding);
            var real = shares.SelectMany(s => s.Items).Where(i => !i.IsPadding).Select(i => i.Index).ToList();
            Assert.Equal(Enumerable.Range(0, n), real); // contiguous, in rank order, no duplicate, none missing
            var counts = shares.Select(s => s.Count).ToList();
            Assert.True(counts.Max() - counts.Min() <= 1, $"N={n} P={p}: uneven {string.Join(",", counts)}");
            Assert.All(shares.Take(n % p), s => Assert.Equal(n / p + 1, s.Count)); // the first N mod P take one more
            var lengths = shares.Select(s => s.Items.Count).Distinct().ToList();
            if (padding && n > 0)
            {
                Assert.Equal([(n + p - 1) / p], lengths);
                Assert.All(shares.SelectMany(s => s.Items).Where(i => i.IsPadding), i => Assert.Equal(n - 1, i.Index));
            }
            else Assert.DoesNotContain(shares.SelectMany(s => s.Items), i => i.IsPadding);
        }
    }

    [Theory]
    [InlineData(0, 0, "SplitProcessCountInvalid")]
    [InlineData(3, 3, "SplitProcessIndexInvalid")]
    [InlineData(-1, 3, "SplitProcessIndexInvalid")]
    public void RejectsBadProcessNumbers(int rank, int processes, string errorId)
    {
        var e = Assert.Throws<DiffusionException>(() => PromptSplitter.Share(4, rank, processes, false));
        Assert.Equal(errorId, e.ErrorId);
    }

    [Fact]
    public void DictionaryListsMustHaveOneLength()
    {
        Assert.Equal(3, PromptSplitter.CommonLength([new("prompt", 3), new("seed", 3)]));
        var e = Assert.Throws<DiffusionException>(() => PromptSplitter.CommonLength([new("prompt", 3), new("seed", 2)]));
        Assert.Equal("SplitLengthMismatch", e.ErrorId);
        Assert.Contains("'seed' has 2", e.Message);
    }
}
