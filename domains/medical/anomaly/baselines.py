"""Baselines for the anomaly evaluation, on backbones we train ourselves (no downloads).

* :class:`PatchCore` (Roth et al., CVPR 2022), simplified: a memory bank of locally aggregated
  patch features of *normal* training images; a patch's anomaly is its distance to the nearest
  bank entry, an image's the largest patch anomaly. The original uses an ImageNet WideResNet; we
  cannot download one, so the features come from the encoder of a plain MAE trained on the same
  normal images (levels ``levels``, concatenated, 3x3 average pooled as PatchCore does).
  The bank is subsampled at random (``bank_size``) instead of by greedy coreset, which only costs
  speed, not accuracy, at these bank sizes.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from maskworks.domains.medical.anomaly.scoring import (
    ScoreResult,
    encoder_features,
    gaussian_blur,
)
from torch import Tensor, nn


class PatchCore:
    """Nearest-neighbour patch-feature distances to a bank of normal patches."""

    def __init__(self, model: nn.Module, levels: Sequence[int] = (1, 3), bank_size: int = 16384, sigma: float = 1.0,
                 seed: int = 0, batch_size: int = 128) -> None:
        self.model = model.eval()
        self.levels, self.bank_size, self.sigma = list(levels), int(bank_size), float(sigma)
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.bank: Tensor | None = None

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """``[B, h, w, D]`` locally aggregated patch features."""
        feats = encoder_features(self.model, x)
        f = torch.cat([feats[i] for i in self.levels], -1)
        gh, gw = self.model.grid
        f = f.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)
        f = F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False)
        return f.permute(0, 2, 3, 1)

    @torch.no_grad()
    def fit(self, normals: Tensor) -> "PatchCore":
        parts = [self.features(normals[i:i + self.batch_size]).reshape(-1, self._dim(normals))
                 for i in range(0, len(normals), self.batch_size)]
        bank = torch.cat(parts)
        if len(bank) > self.bank_size:
            g = torch.Generator().manual_seed(self.seed)
            bank = bank[torch.randperm(len(bank), generator=g)[:self.bank_size]]
        self.bank = bank
        return self

    def _dim(self, x: Tensor) -> int:
        return self.features(x[:1]).shape[-1]

    @torch.no_grad()
    def score(self, images: Tensor, progress: bool = False, desc: str = "PatchCore") -> ScoreResult:
        from tqdm.auto import tqdm

        if self.bank is None:
            raise RuntimeError("call fit(normal_images) first")
        scores, heats = [], []
        for i in tqdm(range(0, len(images), self.batch_size), desc=desc, disable=not progress, leave=False):
            x = images[i:i + self.batch_size]
            f = self.features(x)
            b, gh, gw, d = f.shape
            dist = torch.cdist(f.reshape(-1, d), self.bank).amin(1).reshape(b, 1, gh, gw)
            heat = F.interpolate(dist, size=x.shape[-2:], mode="bilinear", align_corners=False)
            heats.append(gaussian_blur(heat, self.sigma)[:, 0])
            scores.append(dist.flatten(1).amax(1))
        return ScoreResult(torch.cat(scores), torch.cat(heats), images)
