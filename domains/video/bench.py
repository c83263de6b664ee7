"""``maskworks bench videomae-step``: our dual-masked VideoMAE V2 training step against Hugging Face
``VideoMAEForPreTraining``, alternating in one process.

Both get the same encoder and decoder configuration and weights, the same clips, the same tube mask,
AdamW with the same settings and the same precision. Ours also masks the decoder (running cells, 50 %),
which Hugging Face's VideoMAE does not do: the ratio measures what dual masking saves, with both
models' FLOPs per step beside it (the counter of ``maskworks bench mae-step``).
"""
from __future__ import annotations

import torch
from maskworks.core.bench import DTYPE_CHOICES, precision, step_flops
from maskworks.core.timing import time_alternating

CONFIGS = {
    "a": dict(embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=192, decoder_depth=4, decoder_num_heads=3,
              frames=16, image=112, batch=4, label="ViT-S/16 (384, 12 layers, 6 heads), decoder 192x4, 16x112 px, batch 4"),
    "b": dict(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=384, decoder_depth=4, decoder_num_heads=6,
              frames=16, image=224, batch=2, label="ViT-B/16 (768, 12 layers, 12 heads), decoder 384x4, 16x224 px, batch 2"),
    "tiny": dict(embed_dim=48, depth=2, num_heads=2, decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=2,
                 frames=4, image=64, batch=2, label="tiny (for tests)"),
}


def build_pair(name: str, device: torch.device | str = "cpu", seed: int = 0, decoder_mask_ratio: float = 0.5):
    """Our VideoMAE V2 at configuration ``name``, Hugging Face's VideoMAE with the same weights, a
    batch of clips and their [0, 1] targets: ``(ours, hf, x, target)``."""
    from maskworks.domains.video.peers import hf_videomae, zero_unshared_biases
    from maskworks.domains.video.videomae import VideoMAE, normalize_clip

    c = CONFIGS[name]
    torch.manual_seed(seed)
    ours = VideoMAE(c["frames"], c["image"], 2, 16, c["embed_dim"], c["depth"], c["num_heads"], c["decoder_embed_dim"],
                    c["decoder_depth"], c["decoder_num_heads"], mask_ratio=0.9, decoder_mask_ratio=decoder_mask_ratio)
    zero_unshared_biases(ours)
    hf = hf_videomae(ours)
    ours, hf = ours.to(device), hf.to(device)
    target = torch.rand(c["batch"], 3, c["frames"], c["image"], c["image"], device=device)
    return ours, hf, normalize_clip(target), target


def bench_config(name: str, steps: int = 10, warmup: int = 3, dtype: str = "fp32", device: str | None = None,
                 seed: int = 0, decoder_mask_ratio: float = 0.5) -> dict:
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {DTYPE_CHOICES}, got {dtype!r}")
    c = CONFIGS[name]
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ours, hf, x, target = build_pair(name, dev, seed, decoder_mask_ratio)
    ours.train()
    hf.train()
    opt_kw = dict(lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    opts = {"maskworks": torch.optim.AdamW(ours.parameters(), **opt_kw),
            "huggingface": torch.optim.AdamW(hf.parameters(), **opt_kw)}
    gen = torch.Generator(device=dev).manual_seed(seed)
    masks = {}

    def draw(i: int):  # one dual mask per round; Hugging Face gets its tube (encoder) mask
        if i not in masks:
            masks.clear()
            masks[i] = ours.make_mask(c["batch"], gen, dev)
        return masks[i]

    hf_x = x.permute(0, 2, 1, 3, 4).contiguous()  # Hugging Face takes [B, T, C, H, W]
    hf_target_note = "Hugging Face un-normalises its input with ImageNet statistics to get the same [0, 1] targets"
    forward = {"maskworks": lambda i: ours(x, draw(i), target=target).loss,
               "huggingface": lambda i: hf(pixel_values=hf_x, bool_masked_pos=draw(i).encoder.flat).loss}
    flops = {k: step_flops(lambda f=f: f(-1)) for k, f in forward.items()}
    for o in opts.values():
        o.zero_grad(set_to_none=True)

    def step(which: str, i: int) -> None:
        with precision(dev, dtype):
            loss = forward[which](i)
        opts[which].zero_grad(set_to_none=True)
        loss.backward()
        opts[which].step()

    med = time_alternating({k: (lambda i, k=k: step(k, i)) for k in opts}, steps, warmup, dev)
    cps = {k: c["batch"] / v for k, v in med.items()}
    m = draw(-2)
    return {"config": name, "label": c["label"], "device": str(dev), "dtype": dtype, "threads": torch.get_num_threads(),
            "steps": steps, "decoder_mask_ratio": decoder_mask_ratio,
            "tokens": {"grid": m.encoder.num_tokens, "encoder": m.encoder.num_keep,
                       "maskworks_decoder": m.encoder.num_keep + m.num_decoded, "huggingface_decoder": m.encoder.num_tokens},
            "maskworks_clips_s": round(cps["maskworks"], 3), "huggingface_clips_s": round(cps["huggingface"], 3),
            "ratio": round(cps["maskworks"] / cps["huggingface"], 3),
            "maskworks_gflop_step": round(flops["maskworks"] / 1e9, 3),
            "huggingface_gflop_step": round(flops["huggingface"] / 1e9, 3),
            "flop_ratio": round(flops["huggingface"] / flops["maskworks"], 3), "note": hf_target_note}
