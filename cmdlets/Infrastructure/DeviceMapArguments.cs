using System.Collections;
using System.Collections.Specialized;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>
/// -DeviceMap and -MaxMemory as the engine takes them: PowerShell wraps values in PSObject (variables, pipeline
/// results); the engine sees plain strings, numbers and dictionaries, in the order the user wrote them.
/// </summary>
internal static class DeviceMapArguments
{
    public static object? Unwrap(object? value) => value switch
    {
        null => null,
        PSObject ps => Unwrap(ps.BaseObject),
        IDictionary d => Dictionary(d),
        _ => value,
    };

    public static IDictionary? Dictionary(IDictionary? d)
    {
        if (d is null) return null;
        var copy = new OrderedDictionary();
        foreach (DictionaryEntry e in d) copy[Unwrap(e.Key)!] = Unwrap(e.Value);
        return copy;
    }
}

/// <summary>Tab completion for -DeviceMap: the strategies.</summary>
public sealed class DeviceMapCompleter : IArgumentCompleter
{
    private static readonly string[] Strategies = ["auto", "balanced", "balanced_low_0", "sequential"];

    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = wordToComplete.Trim('\'', '"');
        return Strategies.Where(n => n.StartsWith(word, StringComparison.OrdinalIgnoreCase))
            .Select(n => new CompletionResult(n, n, CompletionResultType.ParameterValue, n));
    }
}
