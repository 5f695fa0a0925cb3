using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Diffusion.Engine.Models.Blocks;

/// <summary>
/// A lookup table of rows (torch.nn.Embedding without its options): <c>weight</c> [count, dim], indexed by token ids.
/// Our own rather than TorchSharp's nn.Embedding because that one first allocates and initializes its weight on the
/// CPU and only then moves it to the requested device: on the meta device (<see cref="Construction"/>) that cost
/// T5-XXL's 0.5 GB table in host memory before loading; this one creates the weight where it is asked to.
/// </summary>
public sealed class EmbeddingTable : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;

    public EmbeddingTable(long count, long dim) : base(nameof(EmbeddingTable))
    {
        var device = Construction.Device;
        var table = torch.empty([count, dim], dtype: Construction.DType, device: device);
        if (device is null || device.type != DeviceType.META)
            using (torch.no_grad()) nn.init.normal_(table); // torch.nn.Embedding's initialization, for models built outside a load
        weight = new Parameter(table, requires_grad: false);
        RegisterComponents();
    }

    /// <param name="ids">[...] int64 ids below count.</param>
    /// <returns>[..., dim]</returns>
    public override Tensor forward(Tensor ids)
    {
        using var flat = ids.flatten(); // [N]
        return weight.index_select(0, flat).view([.. ids.shape, weight.shape[1]]); // [N, dim] -> [..., dim], as torch.embedding
    }
}
