using Diffusion.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using GeluApproximate = TorchSharp.Modules.GELU.Approximate;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>The activation_fn of diffusers' FeedForward that the supported models use.</summary>
public enum FeedForwardActivation
{
    /// <summary>"geglu" (SD 1.x transformer blocks).</summary>
    Geglu,
    /// <summary>"gelu-approximate" (FLUX): GELU with the tanh approximation.</summary>
    GeluTanh,
}

/// <summary>diffusers' <c>GEGLU</c>: one projection to twice the width, then value * gelu(gate) (exact erf GELU).</summary>
public sealed class GEGLU : nn.Module<Tensor, Tensor>
{
    public readonly Linear proj;

    public GEGLU(long dimIn, long dimOut) : base(nameof(GEGLU))
    {
        proj = nn.Linear(dimIn, dimOut * 2, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    /// <param name="hidden">[B, S, dimIn]</param>
    /// <returns>[B, S, dimOut]</returns>
    public override Tensor forward(Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        var halves = proj.call(hidden).chunk(2, dim: -1);
        return scope.MoveToOuter(halves[0] * F.gelu(halves[1]));
    }
}

/// <summary>diffusers' <c>GELU</c>: a Linear projection followed by GELU (tanh approximation).</summary>
public sealed class GELU : nn.Module<Tensor, Tensor>
{
    public readonly Linear proj;

    public GELU(long dimIn, long dimOut) : base(nameof(GELU))
    {
        proj = nn.Linear(dimIn, dimOut, hasBias: true, device: Construction.Device, dtype: Construction.DType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return scope.MoveToOuter(F.gelu(proj.call(x), GeluApproximate.tanh));
    }
}

/// <summary>
/// diffusers' <c>FeedForward</c>: net.0 = the activation projection (GEGLU or GELU to mult*dim), net.1 = dropout,
/// net.2 = Linear(mult*dim, dimOut).
/// </summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    public readonly ModuleList<nn.Module<Tensor, Tensor>> net;

    public FeedForward(long dim, long? dimOut = null, long mult = 4, FeedForwardActivation activation = FeedForwardActivation.Geglu)
        : base(nameof(FeedForward))
    {
        long inner = dim * mult;
        nn.Module<Tensor, Tensor> act = activation == FeedForwardActivation.Geglu ? new GEGLU(dim, inner) : new GELU(dim, inner);
        net = nn.ModuleList<nn.Module<Tensor, Tensor>>(act, nn.Dropout(0.0), nn.Linear(inner, dimOut ?? dim, hasBias: true, device: Construction.Device, dtype: Construction.DType));
        RegisterComponents();
    }

    /// <param name="hidden">[B, S, dim]</param>
    public override Tensor forward(Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        foreach (var layer in net) hidden = layer.call(hidden);
        return scope.MoveToOuter(hidden);
    }
}
