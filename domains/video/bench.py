"""``maskworks bench videomae-step``: our dual-masked VideoMAE V2 training step against Hugging Face
``VideoMAEForPreTraining``, alternating in one process.

Both get the same encoder and decoder configuration and weights, the same clips, the same tube mask,
AdamW with the same settings and the same precision. Ours also masks the decoder (running cells, 50 %),
which Hugging Face's VideoMAE does not do: the ratio measures what dual masking saves, with both
models' FLOPs per step beside it (the counter of ``maskworks bench mae-step``).
"""
from __future__ import annotations

import argparse
import json

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="maskworks bench videomae-step", description=
                                "Our VideoMAE V2 training step (dual masking: tube 90 %% for the encoder, running cells "
                                "50 %% for the decoder; forward, backward, AdamW) against Hugging Face "
                                "VideoMAEForPreTraining (tube mask only; its decoder reconstructs every hidden token) with "
                                "the same weights, clips, tube mask, batch and precision, alternating in one process; "
                                "median of --steps timed steps after --warmup. Prints clips/s of each, their ratio "
                                "(ours / theirs) and both models' FLOPs per step.")
    p.add_argument("--configs", default="a", help="comma-separated configurations: a (ViT-S/16, decoder 192x4, 16x112, "
                   "batch 4; CPU), b (ViT-B/16, decoder 384x4, 16x224, batch 2; meant for a GPU), tiny (tests). "
                   "Default a")
    p.add_argument("--steps", type=int, default=10, help="timed steps of each model, alternating; the median is reported "
                   "(default 10; 20 or more for figures you quote)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each model first (default 3)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--dtype", choices=(*DTYPE_CHOICES, "both"),
                   help="fp32, bf16 (autocast) or both; default: both on a GPU, fp32 on a CPU")
    p.add_argument("--decoder-mask-ratio", type=float, default=0.5,
                   help="our decoder's running-cell mask ratio (default 0.5, VideoMAE V2's; 0 = plain VideoMAE, "
                   "which should then run at about Hugging Face's speed)")
    p.add_argument("--json", help="also write the results to this JSON file")
    a = p.parse_args(argv)
    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to torch")
    chosen = a.dtype or ("both" if dev.startswith("cuda") else "fp32")
    dtypes = DTYPE_CHOICES if chosen == "both" else (chosen,)
    results = []
    for name in a.configs.split(","):
        name = name.strip()
        if name not in CONFIGS:
            p.error(f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")
        for dtype in dtypes:
            r = bench_config(name, a.steps, a.warmup, dtype, dev, decoder_mask_ratio=a.decoder_mask_ratio)
            results.append(r)
            t = r["tokens"]
            print(f"[{r['config']}] {r['label']} | {r['device']} {r['dtype']} | maskworks {r['maskworks_clips_s']:.2f} clips/s, "
                  f"Hugging Face {r['huggingface_clips_s']:.2f} clips/s, ratio {r['ratio']:.2f}x | FLOPs per step "
                  f"(forward+backward): maskworks {r['maskworks_gflop_step']:.1f} G, Hugging Face "
                  f"{r['huggingface_gflop_step']:.1f} G, ratio {r['flop_ratio']:.2f}x | decoder tokens per clip "
                  f"{t['maskworks_decoder']} vs {t['huggingface_decoder']} (encoder {t['encoder']})", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0
