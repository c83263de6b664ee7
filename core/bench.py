"""``maskworks bench mae-step``: our MAE training step against Hugging Face ViTMAE, same process.

Both models get the same configuration and weights, the same batch, AdamW with the same settings,
and run alternately so that machine noise hits both; we report the median of the timed steps.
"""
from __future__ import annotations

import argparse
import json
from contextlib import nullcontext

import torch

from maskworks.core.timing import time_alternating

CONFIGS = {
    "a": dict(embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
              image=224, batch=16, label="dim 192, 12 layers, 3 heads, decoder 128x4, 224 px, batch 16"),
    "b": dict(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
              image=224, batch=8, label="ViT-B/16, decoder 512x8, 224 px, batch 8"),
    "tiny": dict(embed_dim=64, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                 image=64, batch=4, label="tiny (for tests)"),
}


def bench_config(name: str, steps: int = 10, warmup: int = 3, dtype: str = "fp32",
                 device: str | None = None, seed: int = 0, compile: bool = False) -> dict:
    """One configuration; ``compile`` runs both models' forward passes through ``torch.compile``
    (inductor), so the ratio compares compiled with compiled."""
    from maskworks.core.mae import MaskedAutoencoder
    from maskworks.core.masking import RandomMasking
    from maskworks.core.peers import hf_vitmae

    c = CONFIGS[name]
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    ours = MaskedAutoencoder((c["image"], c["image"]), 16, 3, c["embed_dim"], c["depth"], c["num_heads"],
                             c["decoder_embed_dim"], c["decoder_depth"], c["decoder_num_heads"],
                             masking=RandomMasking(0.75)).to(dev)
    hf = hf_vitmae(ours, c["image"], 16).to(dev)
    x = torch.randn(c["batch"], 3, c["image"], c["image"], device=dev)
    opt_kw = dict(lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    opts = {"maskworks": torch.optim.AdamW(ours.parameters(), **opt_kw),
            "huggingface": torch.optim.AdamW(hf.parameters(), **opt_kw)}
    amp = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if dtype == "bf16" else nullcontext
    gen = torch.Generator(device=dev).manual_seed(seed)

    forward = {"maskworks": lambda: ours(x, generator=gen).loss, "huggingface": lambda: hf(pixel_values=x).loss}
    if compile:
        forward = {k: torch.compile(f) for k, f in forward.items()}

    def step(which: str) -> None:
        with amp():
            loss = forward[which]()
        opts[which].zero_grad(set_to_none=True)
        loss.backward()
        opts[which].step()

    med = time_alternating({k: (lambda i, k=k: step(k)) for k in opts}, steps, warmup, dev)
    ips = {k: c["batch"] / v for k, v in med.items()}
    return {"config": name, "label": c["label"], "device": str(dev), "dtype": dtype, "threads": torch.get_num_threads(),
            "steps": steps, "compiled": compile, "maskworks_img_s": round(ips["maskworks"], 2), "huggingface_img_s": round(ips["huggingface"], 2),
            "ratio": round(ips["maskworks"] / ips["huggingface"], 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="maskworks bench mae-step", description=
                                "Our MAE training step (forward, backward, AdamW) vs Hugging Face ViTMAEForPreTraining "
                                "with the same configuration, alternating in one process; median of --steps timed steps "
                                "after --warmup. Prints images/s of each and the ratio (ours / theirs).")
    p.add_argument("--configs", default="a,b", help="which configurations: a (ViT-tiny-like, batch 16), b (ViT-B, batch 8)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--compile", action="store_true", help="torch.compile both models' forward passes (inductor; the "
                   "first steps compile, about a minute at (a) on CPU, and are not timed)")
    p.add_argument("--json", help="also write the results to this JSON file")
    a = p.parse_args(argv)
    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for name in a.configs.split(","):
        for dtype in (["fp32", "bf16"] if dev.startswith("cuda") else ["fp32"]):
            r = bench_config(name.strip(), a.steps, a.warmup, dtype, dev, compile=a.compile)
            results.append(r)
            print(f"[{r['config']}] {r['label']} | {r['device']} {r['dtype']}{' compiled' if r['compiled'] else ''} | maskworks {r['maskworks_img_s']:.1f} img/s, "
                  f"Hugging Face {r['huggingface_img_s']:.1f} img/s, ratio {r['ratio']:.2f}x", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0
