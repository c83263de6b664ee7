"""Known-good peers to check maskworks against: Hugging Face's ViTMAE (a test/bench extra)."""
from __future__ import annotations

import torch
from maskworks.core.mae import MaskedAutoencoder


def hf_vitmae(model: MaskedAutoencoder, image_size: int, patch_size: int):
    """A ``transformers.ViTMAEForPreTraining`` with the same configuration as ``model``, its weights
    copied from ours (so both compute the same function). Needs ``transformers``."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    enc, dec = model.blocks, model.decoder_blocks
    d, dd = model.norm.normalized_shape[0], model.decoder_norm.normalized_shape[0]
    cfg = ViTMAEConfig(
        image_size=image_size, patch_size=patch_size, num_channels=model.in_chans,
        hidden_size=d, num_hidden_layers=len(enc), num_attention_heads=enc[0].attn.num_heads,
        intermediate_size=enc[0].mlp.fc1.out_features,
        decoder_hidden_size=dd, decoder_num_hidden_layers=len(dec),
        decoder_num_attention_heads=dec[0].attn.num_heads, decoder_intermediate_size=dec[0].mlp.fc1.out_features,
        mask_ratio=model.masking.ratio, norm_pix_loss=model.norm_pix_loss, layer_norm_eps=model.norm.eps,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, qkv_bias=True, hidden_act="gelu",
    )
    hf = ViTMAEForPreTraining(cfg)
    copy_weights_to_hf(model, hf)
    with torch.no_grad():  # HF's own sin-cos tables (its post_init may leave them unset)
        hf.vit.embeddings.position_embeddings.copy_(hf_sincos_table(hf.vit.embeddings.position_embeddings.shape[-1], model.grid))
        hf.decoder.decoder_pos_embed.copy_(hf_sincos_table(hf.decoder.decoder_pos_embed.shape[-1], model.grid))
    return hf


def hf_sincos_table(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Hugging Face's 2-D sin-cos table with a class token, in the original MAE layout."""
    from transformers.models.vit_mae.modeling_vit_mae import (
        build_2d_sinusoidal_position_embedding,
    )

    pe = build_2d_sinusoidal_position_embedding(height=grid[0], width=grid[1], embed_dim=dim, cls_token=True)
    half = dim // 2  # HF rotates halves to match the original layout (see its initialize_weights)
    return torch.cat([pe[..., half:], pe[..., :half]], dim=-1).reshape(1, -1, dim)


@torch.no_grad()
def copy_weights_to_hf(model: MaskedAutoencoder, hf) -> None:
    """Load our weights into a transformers>=5 ViTMAE by name (strict: any mismatch raises)."""
    ours = model.state_dict()
    p, c = model.patch_size, model.in_chans
    sd = {
        "vit.embeddings.cls_token": ours["cls_token"],
        "vit.embeddings.patch_embeddings.projection.weight":
            ours["patch_embed.weight"].reshape(-1, p[0], p[1], c).permute(0, 3, 1, 2),
        "vit.embeddings.patch_embeddings.projection.bias": ours["patch_embed.bias"],
        "vit.layernorm.weight": ours["norm.weight"], "vit.layernorm.bias": ours["norm.bias"],
        "decoder.mask_token": ours["mask_token"].reshape(1, 1, -1),
        "decoder.decoder_embed.weight": ours["decoder_embed.weight"],
        "decoder.decoder_embed.bias": ours["decoder_embed.bias"],
        "decoder.decoder_norm.weight": ours["decoder_norm.weight"],
        "decoder.decoder_norm.bias": ours["decoder_norm.bias"],
        "decoder.decoder_pred.weight": ours["decoder_pred.weight"],
        "decoder.decoder_pred.bias": ours["decoder_pred.bias"],
    }
    for src, dst, n in [("blocks", "vit.layers", len(model.blocks)),
                        ("decoder_blocks", "decoder.decoder_layers", len(model.decoder_blocks))]:
        for i in range(n):
            a, b = f"{src}.{i}.", f"{dst}.{i}."
            for kind in ("weight", "bias"):
                q, k, v = ours[a + f"attn.qkv.{kind}"].chunk(3, dim=0)
                sd |= {b + f"attention.q_proj.{kind}": q, b + f"attention.k_proj.{kind}": k,
                       b + f"attention.v_proj.{kind}": v, b + f"attention.o_proj.{kind}": ours[a + f"attn.proj.{kind}"],
                       b + f"layernorm_before.{kind}": ours[a + f"norm1.{kind}"],
                       b + f"layernorm_after.{kind}": ours[a + f"norm2.{kind}"],
                       b + f"mlp.fc1.{kind}": ours[a + f"mlp.fc1.{kind}"], b + f"mlp.fc2.{kind}": ours[a + f"mlp.fc2.{kind}"]}
    fixed = {k for k, _ in hf.named_buffers()} | {k for k, v in hf.named_parameters() if not v.requires_grad}
    theirs = {k for k in hf.state_dict() if k not in fixed}  # fixed sin-cos tables are compared in tests
    missing, extra = theirs - sd.keys(), sd.keys() - theirs
    if missing or extra:
        raise RuntimeError(f"ViTMAE weight names changed: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    hf.load_state_dict(sd, strict=False)
