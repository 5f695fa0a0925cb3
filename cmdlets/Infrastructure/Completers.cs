using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using Diffusion.Engine.Devices;

namespace Diffusion.Cmdlets.Infrastructure;

/// <summary>Tab completion for -Device: cpu, cuda, cuda:N.</summary>
public sealed class DeviceCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = wordToComplete.Trim('\'', '"');
        return DeviceCatalog.CompletionNames()
            .Where(n => n.StartsWith(word, StringComparison.OrdinalIgnoreCase))
            .Select(n => new CompletionResult(n, n, CompletionResultType.ParameterValue, n));
    }
}
