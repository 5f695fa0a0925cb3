using static TorchSharp.torch;

namespace Diffusion.Engine.Schedulers;

/// <summary>diffusers' two forms of <c>add_noise</c>, shared by the schedulers that use each.</summary>
internal static class NoiseAddition
{
    /// <summary>DDPM-style schedules (PNDM, DDIM): sqrt(alpha_cumprod[t]) x + sqrt(1 - alpha_cumprod[t]) noise, in float32 like diffusers' tensors.</summary>
    public static Tensor WithAlphaCumprod(float alphaCumprod, Tensor original, Tensor noise)
    {
        using var scope = NewDisposeScope();
        var alphaProd = tensor(alphaCumprod).to(original.dtype, original.device);
        var sqrtAlphaProd = alphaProd.pow(0.5);
        var sqrtOneMinusAlphaProd = (1 - alphaProd).pow(0.5);
        return scope.MoveToOuter(sqrtAlphaProd * original + sqrtOneMinusAlphaProd * noise);
    }

    /// <summary>Sigma schedules (Euler, Euler ancestral): x + noise * sigma.</summary>
    public static Tensor WithSigma(float sigma, Tensor original, Tensor noise)
    {
        using var scope = NewDisposeScope();
        return scope.MoveToOuter(original + noise * tensor(sigma).to(original.dtype, original.device));
    }
}
