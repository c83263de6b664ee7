"""``maskworks bench mae-step``: our MAE training step against Hugging Face ViTMAE, same process.

Both models get the same configuration and weights, the same batch, AdamW with the same settings,
and run alternately so that machine noise hits both; we report the median of the timed steps, and
each model's FLOPs per step: on a machine where dense GEMMs dominate, the speed ratio cannot move
far from the FLOP ratio unless one side's kernels are faster.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

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


COMPILE_CHOICES = ("none", "both", "maskworks")
DTYPE_CHOICES = ("fp32", "bf16")


def precision(device: torch.device, dtype: str):
    """The context a step runs in: nothing for fp32, bf16 autocast for bf16 (on a GPU, or on a CPU
    with bf16 instructions, where it may or may not pay: the bench says)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def step_flops(loss: Callable[[], torch.Tensor]) -> int:
    """FLOPs of one forward and backward pass of ``loss()`` (2 per multiply-add), by torch's FLOP
    counter. Its table lacks the CPU flash-attention kernels that ``scaled_dot_product_attention``
    picks on CPU, so they are counted here with torch's own attention formulas. Elementwise work
    (norms, GELU, softmax, the optimizer) is not counted: it is memory-bound, not FLOP-bound."""
    from torch.utils.flop_counter import (
        FlopCounterMode,
        sdpa_backward_flop_count,
        sdpa_flop_count,
    )

    aten = torch.ops.aten
    cpu_attention = {
        aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *_, out_shape=None, **__: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad_out, q, k, v, *_, out_shape=None, **__: sdpa_backward_flop_count(grad_out, q, k, v),
    }
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        loss().backward()
    return counter.get_total_flops()


def build_pair(name: str, device: torch.device | str = "cpu", seed: int = 0):
    """Our MAE at configuration ``name``, Hugging Face's ``ViTMAEForPreTraining`` with the same
    weights, and a batch of noise images: ``(ours, hf, x)``."""
    from maskworks.core.mae import MaskedAutoencoder
    from maskworks.core.masking import RandomMasking
    from maskworks.core.peers import hf_vitmae

    c = CONFIGS[name]
    torch.manual_seed(seed)
    ours = MaskedAutoencoder((c["image"], c["image"]), 16, 3, c["embed_dim"], c["depth"], c["num_heads"],
                             c["decoder_embed_dim"], c["decoder_depth"], c["decoder_num_heads"],
                             masking=RandomMasking(0.75)).to(device)
    hf = hf_vitmae(ours, c["image"], 16).to(device)
    return ours, hf, torch.randn(c["batch"], 3, c["image"], c["image"], device=device)


def bench_config(name: str, steps: int = 10, warmup: int = 3, dtype: str = "fp32",
                 device: str | None = None, seed: int = 0, compile: bool | str = False) -> dict:
    """One configuration. ``compile="both"`` (or ``True``) runs both models' forward passes through
    ``torch.compile`` (inductor), so the ratio compares compiled with compiled; ``"maskworks"``
    compiles ours only (how our trainer could run against Hugging Face as shipped: not like for like)."""
    compile = {True: "both", False: "none"}.get(compile, compile)
    if compile not in COMPILE_CHOICES:
        raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {compile!r}")
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {DTYPE_CHOICES}, got {dtype!r}")
    c = CONFIGS[name]
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ours, hf, x = build_pair(name, dev, seed)
    opt_kw = dict(lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    opts = {"maskworks": torch.optim.AdamW(ours.parameters(), **opt_kw),
            "huggingface": torch.optim.AdamW(hf.parameters(), **opt_kw)}
    gen = torch.Generator(device=dev).manual_seed(seed)

    forward = {"maskworks": lambda: ours(x, generator=gen).loss, "huggingface": lambda: hf(pixel_values=x).loss}
    flops = {k: step_flops(f) for k, f in forward.items()}  # shapes only: the same in fp32 and bf16
    forward = {k: torch.compile(f) if compile in ("both", k) else f for k, f in forward.items()}

    def step(which: str) -> None:
        with precision(dev, dtype):
            loss = forward[which]()
        opts[which].zero_grad(set_to_none=True)
        loss.backward()
        opts[which].step()

    med = time_alternating({k: (lambda i, k=k: step(k)) for k in opts}, steps, warmup, dev)
    ips = {k: c["batch"] / v for k, v in med.items()}
    return {"config": name, "label": c["label"], "device": str(dev), "dtype": dtype, "threads": torch.get_num_threads(),
            "steps": steps, "compiled": compile, "maskworks_img_s": round(ips["maskworks"], 2), "huggingface_img_s": round(ips["huggingface"], 2),
            "ratio": round(ips["maskworks"] / ips["huggingface"], 3),
            "maskworks_gflop_step": round(flops["maskworks"] / 1e9, 3), "huggingface_gflop_step": round(flops["huggingface"] / 1e9, 3),
            "flop_ratio": round(flops["huggingface"] / flops["maskworks"], 3)}
