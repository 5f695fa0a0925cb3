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

/// <summary>Tab completion for -Scheduler: the scheduler names and aliases.</summary>
public sealed class SchedulerCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = wordToComplete.Trim('\'', '"');
        return Diffusion.Engine.Schedulers.SchedulerFactory.Names
            .Where(n => n.StartsWith(word, StringComparison.OrdinalIgnoreCase))
            .Select(n => new CompletionResult(n, n, CompletionResultType.ParameterValue, n));
    }
}

/// <summary>Tab completion for -Component: the components in the -Path folder's model_index.json.</summary>
public sealed class ComponentCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = wordToComplete.Trim('\'', '"');
        IEnumerable<string> names = ["tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "unet", "transformer", "vae", "scheduler"];
        if (fakeBoundParameters["Path"] is string path)
        {
            try { names = Diffusion.Engine.Pipelines.DiffusersFolder.Open(path).Components.Keys; }
            catch (Diffusion.Engine.DiffusionException) { }
        }
        return names.Where(n => n.StartsWith(word, StringComparison.OrdinalIgnoreCase))
            .Select(n => new CompletionResult(n, n, CompletionResultType.ParameterValue, n));
    }
}
