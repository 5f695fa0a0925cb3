using System.Management.Automation;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// The prompts a cmdlet received, in order, with each one's place in the input: a $null item is a non-terminating
/// error for that item and keeps its place, so the prompts after it are not renumbered (their Index, seed and file
/// names stay what they would have been).
/// </summary>
internal sealed class PromptInput
{
    private readonly List<string> _prompts = [];
    private readonly List<int> _positions = [];

    /// <summary>Items received so far, $null ones included.</summary>
    public int Received { get; private set; }
    public IReadOnlyList<string> Prompts => _prompts;
    /// <summary>The place of each of <see cref="Prompts"/> in the input (0-based, counting $null items).</summary>
    public IReadOnlyList<int> Positions => _positions;

    /// <summary>
    /// -NegativePrompt with one entry per item received ($null prompts included) narrowed to the prompts kept; one for
    /// all, none, or one per kept prompt as given.
    /// </summary>
    public string[]? Negatives(string[]? negatives) =>
        negatives is { Length: > 1 } && negatives.Length == Received && Received != _prompts.Count
            ? _positions.Select(p => negatives[p]).ToArray()
            : negatives;

    public void Add(PSCmdlet cmdlet, string?[]? items)
    {
        foreach (var item in items ?? [null])
        {
            int position = Received++;
            if (item is null)
            {
                var message = $"Prompt #{position} is $null, so no image is made for it; the prompts after it keep their numbers. Give an empty string for an unconditional image.";
                cmdlet.WriteError(new ErrorRecord(new ArgumentNullException("Prompt", message), "PromptNull", ErrorCategory.InvalidArgument, position)
                {
                    ErrorDetails = new ErrorDetails(message),
                });
                continue;
            }
            _prompts.Add(item);
            _positions.Add(position);
        }
    }
}
