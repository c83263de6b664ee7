"""``maskworks bench spark-step``: what SparK's sparsity costs per training step.

A SparK pre-training step (masked input, sparse encoder, mask tokens, U-Net decoder, loss on
masked patches; forward, backward, AdamW) against the same CNN's plain dense step on the same batch:

* ``dense-recon`` (default): the same encoder, densify layers and decoder run densely on the
  unmasked image with a full-image MSE, i.e. the identical network minus the masking machinery;
* ``classify``: the dense backbone + global pool + linear head with cross-entropy (what a
  supervised step on the same input costs).

Both run alternately in one process so machine noise hits both; the median of ``--steps`` timed
steps after ``--warmup`` is reported as images/s, and the ratio SparK / dense (< 1 = SparK slower).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from maskworks.core.timing import time_alternating
from maskworks.domains.medical.spark.spark import SparK2d
from maskworks.domains.medical.spark.sparse import feature_extractor
from torch import Tensor, nn


class DenseReconstruction(nn.Module):
    """A SparK model's encoder + densify + decoder, run densely without a mask (the peer)."""

    def __init__(self, spark: SparK2d) -> None:
        super().__init__()
        from maskworks.domains.medical.spark.spark import timm_backbone

        backbone = timm_backbone(spark.backbone_name, spark.in_chans)
        backbone.load_state_dict(spark.backbone_state_dict())
        self.encoder = feature_extractor(backbone, spark.encoder.feature_modules)
        self.densify_norms = copy.deepcopy(spark.densify_norms)
        self.densify_projs = copy.deepcopy(spark.densify_projs)
        self.decoder = copy.deepcopy(spark.decoder)

    def forward(self, x: Tensor) -> Tensor:
        feats = list(self.encoder(x).values())
        to_dec = [p(n(f)) for f, n, p in zip(reversed(feats), self.densify_norms, self.densify_projs)]
        return F.mse_loss(self.decoder(to_dec), x)


class DenseClassifier(nn.Module):
    """Dense backbone + global average pool + linear head, cross-entropy on given labels."""

    def __init__(self, spark: SparK2d, classes: int = 2) -> None:
        super().__init__()
        from maskworks.domains.medical.spark.spark import timm_backbone

        self.backbone = timm_backbone(spark.backbone_name, spark.in_chans)
        self.backbone.load_state_dict(spark.backbone_state_dict())
        self.head = nn.Linear(spark.feature_channels[-1], classes)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self.head(self.backbone(x).mean(dim=(2, 3))), y)


def bench(backbone: str = "resnet18", size: int = 64, batch: int = 16, steps: int = 10, warmup: int = 3,
          peer: str = "dense-recon", device: str | None = None, decoder_width: int = 256, seed: int = 0) -> dict:
    """Median step times of SparK and the dense peer, alternating; returns images/s and the ratio."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    spark = SparK2d(backbone, 1, size, decoder_width=decoder_width).to(dev)
    if peer == "dense-recon":
        dense: nn.Module = DenseReconstruction(spark).to(dev)
    elif peer == "classify":
        dense = DenseClassifier(spark).to(dev)
    else:
        raise ValueError(f"unknown peer {peer!r}; choose dense-recon or classify")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, size, size, generator=g).to(dev)
    y = torch.randint(0, 2, (batch,), generator=g).to(dev)
    opt_kw = dict(lr=2e-4, betas=(0.9, 0.95), weight_decay=0.04)
    opts = {"spark": torch.optim.AdamW(spark.parameters(), **opt_kw),
            "dense": torch.optim.AdamW(dense.parameters(), **opt_kw)}
    masks = [spark.make_mask(batch, g).to(dev) for _ in range(4)]

    def step(which: str, i: int) -> None:
        if which == "spark":
            loss = spark(x, masks[i % len(masks)])[0]
        else:
            loss = dense(x, y) if peer == "classify" else dense(x)
        opts[which].zero_grad(set_to_none=True)
        loss.backward()
        opts[which].step()

    med = time_alternating({k: (lambda i, k=k: step(k, i)) for k in ("spark", "dense")}, steps, warmup, dev)
    ips = {k: batch / v for k, v in med.items()}
    return {"backbone": backbone, "size": size, "batch": batch, "peer": peer, "device": str(dev),
            "threads": torch.get_num_threads(), "steps": steps, "warmup": warmup,
            "mask_grid": list(spark.grid), "mask_ratio": spark.mask_ratio,
            "spark_step_ms": round(med["spark"] * 1e3, 2), "dense_step_ms": round(med["dense"] * 1e3, 2),
            "spark_img_s": round(ips["spark"], 2), "dense_img_s": round(ips["dense"], 2),
            "ratio": round(ips["spark"] / ips["dense"], 3)}
