using Diffusion.Engine.IO;

namespace Diffusion.Engine.Models;

/// <summary>
/// SD 1.x's text encoder (<c>cond_stage_model.transformer.*</c>, a transformers CLIPTextModel state dict) → this module's
/// CLIPTextModel, as diffusers' <c>convert_ldm_clip_checkpoint</c> plus transformers' loading: the prefix goes, and so does
/// the <c>text_model.</c> level that transformers 5 no longer has; <c>embeddings.position_ids</c> (saved by old
/// transformers, a non-persistent buffer since 4.31: always 0..76) is not a weight and is left out.
/// </summary>
internal sealed class LdmClipKeyMap : KeyMap
{
    public override IEnumerable<KeyMapping> Map(IReadOnlyDictionary<string, SafeTensorInfo> stored, IModelConfig config, string prefix, string file)
    {
        var result = new List<KeyMapping>();
        var unknown = new List<string>();
        foreach (var (key, info) in stored)
        {
            var moduleKey = key.StartsWith("text_model.", StringComparison.Ordinal) ? key["text_model.".Length..] : key;
            if (moduleKey == "embeddings.position_ids") continue;
            if (moduleKey.StartsWith("embeddings.", StringComparison.Ordinal) || moduleKey.StartsWith("encoder.layers.", StringComparison.Ordinal)
                || moduleKey.StartsWith("final_layer_norm.", StringComparison.Ordinal))
                result.Add(Same(moduleKey, prefix + key, info));
            else
                unknown.Add(key);
        }
        if (unknown.Count > 0) throw Unknown(file, prefix, unknown.Order(StringComparer.Ordinal), "CLIPTextModel");
        return result;
    }
}
