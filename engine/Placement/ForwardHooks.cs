using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Engine.Placement;

/// <summary>What runs around one call of a module, whatever its forward's arguments are.</summary>
internal interface IForwardHooks
{
    /// <summary>Before the forward, ahead of <see cref="Input{T}"/>.</summary>
    void Enter(nn.Module module);
    /// <summary>Each argument, in order: what the forward gets instead.</summary>
    T Input<T>(T argument);
    /// <summary>After the forward (not reached when it throws): what the caller gets instead of <paramref name="result"/>.</summary>
    TResult Exit<TResult>(nn.Module module, TResult result);
}

/// <summary>
/// Registers <see cref="IForwardHooks"/> as TorchSharp forward pre-hooks and hooks on any module whose
/// <c>call</c> runs hooks (nn.Module&lt;T1, ..., TResult&gt;, one to six arguments), as PyTorch's
/// register_forward_pre_hook / register_forward_hook do for accelerate's AlignDevicesHook. The module's forward knows nothing of them.
/// </summary>
internal static class ForwardHooks
{
    private static readonly Dictionary<Type, MethodInfo> AttachByArity = new()
    {
        [typeof(nn.Module<,>)] = Method(nameof(Attach1)),
        [typeof(nn.Module<,,>)] = Method(nameof(Attach2)),
        [typeof(nn.Module<,,,>)] = Method(nameof(Attach3)),
        [typeof(nn.Module<,,,,>)] = Method(nameof(Attach4)),
        [typeof(nn.Module<,,,,,>)] = Method(nameof(Attach5)),
        [typeof(nn.Module<,,,,,,>)] = Method(nameof(Attach6)),
    };

    /// <summary>Whether <paramref name="module"/>'s call runs hooks.</summary>
    public static bool CanHook(nn.Module module) => HookableBase(module.GetType()) is not null;

    /// <summary>Registers the hooks; the action returned removes them. Null when the module's call runs no hooks.</summary>
    public static Action? TryAttach(nn.Module module, IForwardHooks hooks)
    {
        if (HookableBase(module.GetType()) is not { } generic) return null;
        var attach = AttachByArity[generic.GetGenericTypeDefinition()].MakeGenericMethod(generic.GetGenericArguments());
        return (Action)attach.Invoke(null, [module, hooks])!;
    }

    private static Type? HookableBase(Type? type)
    {
        for (; type is not null; type = type.BaseType)
            if (type.IsGenericType && AttachByArity.ContainsKey(type.GetGenericTypeDefinition())) return type;
        return null;
    }

    private static MethodInfo Method(string name) => typeof(ForwardHooks).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)!;

    private static Action Attach1<T1, TR>(nn.Module<T1, TR> m, IForwardHooks h)
    {
        var pre = m.register_forward_pre_hook((_, a) => { h.Enter(m); return h.Input(a); });
        var post = m.register_forward_hook((_, _, r) => h.Exit(m, r));
        return () => { pre.remove(); post.remove(); };
    }

    private static Action Attach2<T1, T2, TR>(nn.Module<T1, T2, TR> m, IForwardHooks h)
    {
        var pre = m.register_forward_pre_hook((_, a, b) => { h.Enter(m); return (h.Input(a), h.Input(b)); });
        var post = m.register_forward_hook((_, _, _, r) => h.Exit(m, r));
        return () => { pre.remove(); post.remove(); };
    }

    private static Action Attach3<T1, T2, T3, TR>(nn.Module<T1, T2, T3, TR> m, IForwardHooks h)
    {
        var pre = m.register_forward_pre_hook((_, a, b, c) => { h.Enter(m); return (h.Input(a), h.Input(b), h.Input(c)); });
        var post = m.register_forward_hook((_, _, _, _, r) => h.Exit(m, r));
        return () => { pre.remove(); post.remove(); };
    }

    private static Action Attach4<T1, T2, T3, T4, TR>(nn.Module<T1, T2, T3, T4, TR> m, IForwardHooks h)
    {
        var pre = m.register_forward_pre_hook((_, a, b, c, d) => { h.Enter(m); return (h.Input(a), h.Input(b), h.Input(c), h.Input(d)); });
        var post = m.register_forward_hook((_, _, _, _, _, r) => h.Exit(m, r));
        return () => { pre.remove(); post.remove(); };
    }

    private static Action Attach5<T1, T2, T3, T4, T5, TR>(nn.Module<T1, T2, T3, T4, T5, TR> m, IForwardHooks h)
    {
        var pre = m.register_forward_pre_hook((_, a, b, c, d, e) => { h.Enter(m); return (h.Input(a), h.Input(b), h.Input(c), h.Input(d), h.Input(e)); });
        var post = m.register_forward_hook((_, _, _, _, _, _, r) => h.Exit(m, r));
        return () => { pre.remove(); post.remove(); };
    }

    private static Action Attach6<T1, T2, T3, T4, T5, T6, TR>(nn.Module<T1, T2, T3, T4, T5, T6, TR> m, IForwardHooks h)
    {
        var pre = m.register_forward_pre_hook((_, a, b, c, d, e, f) => { h.Enter(m); return (h.Input(a), h.Input(b), h.Input(c), h.Input(d), h.Input(e), h.Input(f)); });
        var post = m.register_forward_hook((_, _, _, _, _, _, _, r) => h.Exit(m, r));
        return () => { pre.remove(); post.remove(); };
    }
}
