"""Hugging Face ``VideoMAEForPreTraining`` with our weights: the known-good peer of the parity test
and of ``maskworks bench videomae-step`` (``transformers`` is a test extra; built from a config,
nothing downloaded)."""
from __future__ import annotations

import torch

from maskworks.domains.video.videomae import VideoMAE


def hf_videomae(model: VideoMAE):
    """A ``transformers.VideoMAEForPreTraining`` computing the same function as ``model`` with its
    decoder masking off: same configuration, weights copied, our 3-D sin-cos tables in place of its
    1-D ones. VideoMAE has no key bias and no bias from encoder to decoder, so ``model``'s must be
    zero (:func:`zero_unshared_biases`); its decoder's final LayerNorm has eps 1e-5, set to ours."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    enc, dec = model.blocks, model.decoder_blocks
    t, p, _ = model.patch_size
    cfg = VideoMAEConfig(
        image_size=model.input_size[1], patch_size=p, num_channels=model.in_chans, num_frames=model.input_size[0],
        tubelet_size=t, hidden_size=model.norm.normalized_shape[0], num_hidden_layers=len(enc),
        num_attention_heads=enc[0].attn.num_heads, intermediate_size=enc[0].mlp.fc1.out_features,
        decoder_hidden_size=model.decoder_norm.normalized_shape[0], decoder_num_hidden_layers=len(dec),
        decoder_num_attention_heads=dec[0].attn.num_heads, decoder_intermediate_size=dec[0].mlp.fc1.out_features,
        use_mean_pooling=False, norm_pix_loss=model.norm_pix_loss, qkv_bias=True, layer_norm_eps=model.norm.eps,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, hidden_act="gelu",
    )
    hf = VideoMAEForPreTraining(cfg)
    hf.decoder.norm.eps = model.decoder_norm.eps
    copy_weights_to_hf(model, hf)
    return hf


@torch.no_grad()
def zero_unshared_biases(model: VideoMAE) -> None:
    """Zero the key biases and the encoder-to-decoder bias, which VideoMAE does not have."""
    for blk in [*model.blocks, *model.decoder_blocks]:
        d = blk.attn.qkv.bias.shape[0] // 3
        blk.attn.qkv.bias[d:2 * d] = 0
    model.decoder_embed.bias.zero_()


@torch.no_grad()
def copy_weights_to_hf(model: VideoMAE, hf) -> None:
    """Load our weights into ``hf`` by name (strict: a renamed weight raises)."""
    ours = model.state_dict()
    for blk in [*model.blocks, *model.decoder_blocks]:
        d = blk.attn.qkv.bias.shape[0] // 3
        if blk.attn.qkv.bias[d:2 * d].abs().max() > 0:
            raise ValueError("VideoMAE has no key bias: call zero_unshared_biases(model) first")
    if model.decoder_embed.bias.abs().max() > 0:
        raise ValueError("VideoMAE's encoder-to-decoder projection has no bias: call zero_unshared_biases(model) first")
    t, p, q = model.patch_size
    c = model.in_chans
    sd = {
        "videomae.embeddings.patch_embeddings.projection.weight":
            ours["patch_embed.weight"].reshape(-1, t, p, q, c).permute(0, 4, 1, 2, 3),
        "videomae.embeddings.patch_embeddings.projection.bias": ours["patch_embed.bias"],
        "videomae.layernorm.weight": ours["norm.weight"], "videomae.layernorm.bias": ours["norm.bias"],
        "encoder_to_decoder.weight": ours["decoder_embed.weight"],
        "mask_token": ours["mask_token"].reshape(1, 1, -1),
        "decoder.norm.weight": ours["decoder_norm.weight"], "decoder.norm.bias": ours["decoder_norm.bias"],
        "decoder.head.weight": ours["decoder_pred.weight"], "decoder.head.bias": ours["decoder_pred.bias"],
    }
    for src, dst, n in [("blocks", "videomae.encoder.layer", len(model.blocks)),
                        ("decoder_blocks", "decoder.decoder_layers", len(model.decoder_blocks))]:
        for i in range(n):
            a, b = f"{src}.{i}.", f"{dst}.{i}."
            qw, kw, vw = ours[a + "attn.qkv.weight"].chunk(3, dim=0)
            qb, _, vb = ours[a + "attn.qkv.bias"].chunk(3, dim=0)
            sd |= {b + "attention.attention.query.weight": qw, b + "attention.attention.query.bias": qb,
                   b + "attention.attention.key.weight": kw,
                   b + "attention.attention.value.weight": vw, b + "attention.attention.value.bias": vb,
                   b + "attention.output.dense.weight": ours[a + "attn.proj.weight"],
                   b + "attention.output.dense.bias": ours[a + "attn.proj.bias"],
                   b + "intermediate.dense.weight": ours[a + "mlp.fc1.weight"],
                   b + "intermediate.dense.bias": ours[a + "mlp.fc1.bias"],
                   b + "output.dense.weight": ours[a + "mlp.fc2.weight"], b + "output.dense.bias": ours[a + "mlp.fc2.bias"],
                   b + "layernorm_before.weight": ours[a + "norm1.weight"], b + "layernorm_before.bias": ours[a + "norm1.bias"],
                   b + "layernorm_after.weight": ours[a + "norm2.weight"], b + "layernorm_after.bias": ours[a + "norm2.bias"]}
    theirs = set(hf.state_dict())
    missing, extra = theirs - sd.keys(), sd.keys() - theirs
    if missing or extra:
        raise RuntimeError(f"VideoMAE weight names changed: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    hf.load_state_dict(sd, strict=True)
    # its sin-cos tables are plain tensors, not weights: give it ours (3-D) for the same function
    hf.videomae.embeddings.position_embeddings = model.pos_embed[None].detach().clone().cpu()
    hf.position_embeddings = model.decoder_pos_embed[None].detach().clone().cpu()
