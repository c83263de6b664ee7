"""Turning a masked autoencoder trained on normal images into anomaly heatmaps and scores.

1. :func:`complementary_masks`: K masks whose *target* patch sets partition the grid, so every
   patch is predicted (and scored) exactly once per round, always while hidden. Each pass still
   hides ``ratio`` of the patches (the training ratio by default): the extra hidden patches keep
   the reconstruction task as hard as in training, so a lesion cannot simply be copied from its
   visible neighbours.
2. An error map between the image and its reconstruction (``pixel`` squared error, ``ssim``
   = 1 - local SSIM, ``feature`` = cosine distance between encoder features of the image and of
   its reconstruction, or ``mix``), smoothed with a Gaussian.
3. Per-pixel standardisation against normal images (``standardise``): every pixel's error is
   turned into a z-score with the mean and standard deviation of that pixel's error over normal
   training images (:meth:`AnomalyScorer.fit_normal`), because the error of normal anatomy is
   not uniform (rib and heart edges always reconstruct worse). ``abs`` (default) counts a
   deviation either way: on PneumoniaMNIST, pneumonia images reconstruct *too well* (their
   opacities remove fine structure), so raw error alone scores below chance (measured 0.49
   AUROC with pixel error, 0.68 with SSIM error; 0.93 with SSIM error and ``abs``).
4. An image score: ``mean`` or ``topk`` (mean of the top ``topk`` fraction of heatmap pixels).
5. :class:`Calibration`: z-scores against held-out *normal* images (never per-image min-max, which
   would make every image look equally anomalous), and thresholds at a chosen specificity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from maskworks.core.masking import Mask, mask_from_scores
from torch import Tensor, nn

ERRORS = ("pixel", "ssim", "feature", "mix")
REDUCTIONS = ("mean", "topk", "max")


# ----------------------------------------------------------------------------- masks

def complementary_masks(batch_size: int, grid: Sequence[int], k: int, ratio: float | None = None,
                        seed: int = 0, device: torch.device | str | None = None) -> list[tuple[Mask, Tensor]]:
    """``k`` passes ``(mask, target)``; the boolean ``target`` ``[B, N]`` sets partition the grid.

    Every target patch is hidden in its pass; when ``ratio`` exceeds the target share, further
    non-target patches (seeded) are hidden too, so each pass hides ``max(ratio * N, |target|)``
    patches. All images of the batch get the same masks, so a score does not depend on batching.
    """
    grid = tuple(int(g) for g in grid)
    n = math.prod(grid)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] for a grid of {n} patches, got {k}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    groups = torch.tensor_split(perm, k)
    passes = []
    for grp in groups:
        target = torch.zeros(n, dtype=torch.bool)
        target[grp] = True
        n_mask = len(grp)
        if ratio is not None:
            n_mask = max(n_mask, min(n - 1, int(round(ratio * n))))
        if n_mask >= n:
            raise ValueError(f"pass would hide all {n} patches: use k >= 2")
        # keep-priority: targets lowest, extras random in between, so exactly n_mask are hidden
        noise = torch.rand(n, generator=g)
        scores = torch.where(target, noise - 2.0, noise)
        mask = mask_from_scores(scores.reshape(1, *grid).expand(batch_size, *grid).contiguous(), num_keep=n - n_mask)
        passes.append((mask.to(device) if device is not None else mask, target.expand(batch_size, n).to(device)))
    return passes


# ----------------------------------------------------------------------------- error maps

def gaussian_kernel(sigma: float, radius: int | None = None) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma))) if radius is None else radius
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with reflect padding (sigma 0: unchanged)."""
    if sigma <= 0:
        return x
    k = gaussian_kernel(sigma).to(x)
    r = (len(k) - 1) // 2
    c = x.shape[1]
    r_eff = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    if r_eff < r:  # kernel wider than the image: crop it
        k = k[r - r_eff:r + r_eff + 1]
        k = k / k.sum()
        r = r_eff
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_map(x: Tensor, y: Tensor, sigma: float = 1.5, c1: float = 0.01 ** 2, c2: float = 0.03 ** 2) -> Tensor:
    """Local SSIM ``[B, C, H, W]`` of images in [0, 1] (Wang et al. 2004, Gaussian window)."""
    mx, my = gaussian_blur(x, sigma), gaussian_blur(y, sigma)
    vx = gaussian_blur(x * x, sigma) - mx * mx
    vy = gaussian_blur(y * y, sigma) - my * my
    cxy = gaussian_blur(x * y, sigma) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def encoder_features(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Every encoder block's output for the unmasked image, patch tokens only ``[B, N, D]``."""
    c = int(getattr(model, "has_cls", False))
    return [lv[:, c:] for lv in model.forward_intermediates(x)[1]]


# ----------------------------------------------------------------------------- scorer

@dataclass
class ScoreResult:
    scores: Tensor        # [B] raw image scores
    heatmaps: Tensor      # [B, H, W] smoothed error maps
    recon: Tensor         # [B, C, H, W] reconstructions (every patch predicted while hidden)


class AnomalyScorer:
    """Reconstruct with complementary masks, compare, smooth, reduce. Settings are a plain dict
    (:meth:`config`) stored beside the weights so the app scores exactly as the evaluation did."""

    def __init__(self, model: nn.Module, k: int = 4, ratio: float | None = None, rounds: int = 1,
                 error: str = "pixel", sigma: float = 1.0, reduce: str = "topk", topk: float = 0.1,
                 feature_levels: Sequence[int] | None = None, seed: int = 0, batch_size: int = 64,
                 standardise: str = "none", pixel_mean: Tensor | None = None, pixel_std: Tensor | None = None) -> None:
        if error not in ERRORS:
            raise ValueError(f"unknown error {error!r}; choose one of {ERRORS}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduce!r}; choose one of {REDUCTIONS}")
        self.model = model.eval()
        self.k, self.rounds, self.error, self.sigma = int(k), int(rounds), error, float(sigma)
        self.ratio = float(model.masking.ratio) if ratio is None else float(ratio)
        self.reduce, self.topk, self.seed, self.batch_size = reduce, float(topk), int(seed), int(batch_size)
        self.feature_levels = list(feature_levels) if feature_levels is not None else None
        if standardise not in ("none", "signed", "abs"):
            raise ValueError(f"standardise must be none, signed or abs, got {standardise!r}")
        self.standardise = standardise
        self.pixel_mean = None if pixel_mean is None else torch.as_tensor(pixel_mean, dtype=torch.float32)
        self.pixel_std = None if pixel_std is None else torch.as_tensor(pixel_std, dtype=torch.float32)

    @classmethod
    def from_config(cls, model: nn.Module, cfg: dict, pixel_stats: dict | None = None) -> "AnomalyScorer":
        """Settings from a recipe's ``scoring:`` section (+ stored per-pixel normal statistics)."""
        keys = ("k", "ratio", "rounds", "error", "sigma", "reduce", "topk", "feature_levels", "seed", "batch_size",
                "standardise")
        stats = {} if not pixel_stats else {"pixel_mean": torch.tensor(pixel_stats["mean"]),
                                            "pixel_std": torch.tensor(pixel_stats["std"])}
        return cls(model, **{k: cfg[k] for k in keys if k in cfg}, **stats)

    def config(self) -> dict:
        return {"k": self.k, "ratio": self.ratio, "rounds": self.rounds, "error": self.error, "sigma": self.sigma,
                "reduce": self.reduce, "topk": self.topk, "feature_levels": self.feature_levels, "seed": self.seed,
                "standardise": self.standardise}

    def pixel_stats(self) -> dict | None:
        """The per-pixel normal statistics as JSON-able lists (stored in the model's record)."""
        if self.pixel_mean is None:
            return None
        return {"mean": self.pixel_mean.tolist(), "std": self.pixel_std.tolist()}

    @torch.no_grad()
    def fit_normal(self, normals: Tensor, progress: bool = False) -> "AnomalyScorer":
        """Per-pixel mean and spread of the smoothed error over normal images. The spread is
        regularised by 10 % of the global spread so that pixels that never err do not explode."""
        from tqdm.auto import tqdm

        maps = []
        for i in tqdm(range(0, len(normals), self.batch_size), desc="normal statistics", disable=not progress,
                      leave=False):
            maps.append(self._raw_heat(normals[i:i + self.batch_size].to(self.device))[0].cpu())
        m = torch.cat(maps)
        if len(m) < 2:
            raise ValueError("fit_normal needs at least 2 normal images")
        self.pixel_mean = m.mean(0)
        self.pixel_std = m.std(0) + 0.1 * m.std()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def reconstruct(self, x: Tensor, round_index: int = 0) -> Tensor:
        """Every patch predicted exactly once, while hidden, from the ``k`` complementary passes."""
        m = self.model
        patches = m.patchify(x)
        out = torch.zeros_like(patches)
        covered = torch.zeros(patches.shape[:2], dtype=torch.int32, device=x.device)
        for mask, target in complementary_masks(x.shape[0], m.grid, self.k, self.ratio,
                                                self.seed * 7919 + round_index, x.device):
            pred = m(x, mask).pred.to(patches.dtype)
            full = patches.clone()
            full.scatter_(1, mask.ids_mask.unsqueeze(-1).expand_as(pred), pred)
            out = torch.where(target.unsqueeze(-1), full, out)
            covered += target.int()
        if not bool((covered == 1).all()):
            raise AssertionError("complementary masks did not cover every patch exactly once")
        return m.unpatchify(out)

    @torch.no_grad()
    def error_map(self, x: Tensor, recon: Tensor) -> Tensor:
        """Unsmoothed error ``[B, H, W]`` between image and reconstruction."""
        if self.error in ("pixel", "mix"):
            pix = (x - recon).pow(2).mean(1)
        if self.error in ("ssim", "mix"):
            ss = (1 - ssim_map(x, recon.clamp(0, 1))).mean(1) / 2
        if self.error in ("feature", "mix"):
            fa, fb = encoder_features(self.model, x), encoder_features(self.model, recon)
            idx = self.feature_levels or list(range(len(fa)))
            d = torch.stack([1 - F.cosine_similarity(fa[i], fb[i], dim=-1) for i in idx]).mean(0)  # [B, N]
            gh, gw = self.model.grid
            feat = F.interpolate(d.view(-1, 1, gh, gw), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        if self.error == "pixel":
            return pix
        if self.error == "ssim":
            return ss
        if self.error == "feature":
            return feat
        return pix / 0.01 + ss / 0.1 + feat / 0.1  # rough scales of each on normal images

    def reduce_map(self, heat: Tensor) -> Tensor:
        flat = heat.flatten(1)
        if self.reduce == "mean":
            return flat.mean(1)
        if self.reduce == "max":
            return flat.amax(1)
        n = max(1, int(round(self.topk * flat.shape[1])))
        return flat.topk(n, dim=1).values.mean(1)

    @torch.no_grad()
    def _raw_heat(self, x: Tensor) -> tuple[Tensor, Tensor]:
        heat, recon = 0.0, 0.0
        for r in range(self.rounds):
            rec = self.reconstruct(x, r)
            heat = heat + self.error_map(x, rec) / self.rounds
            recon = recon + rec / self.rounds
        return gaussian_blur(heat.unsqueeze(1), self.sigma)[:, 0], recon

    @torch.no_grad()
    def score_batch(self, x: Tensor) -> ScoreResult:
        x = x.to(self.device)
        heat, recon = self._raw_heat(x)
        if self.standardise != "none":
            if self.pixel_mean is None:
                raise RuntimeError("standardised scoring needs normal statistics: call fit_normal(normal_images)")
            heat = (heat - self.pixel_mean.to(heat)) / self.pixel_std.to(heat)
            if self.standardise == "abs":
                heat = heat.abs()
        return ScoreResult(self.reduce_map(heat).cpu(), heat.cpu(), recon.cpu())

    @torch.no_grad()
    def score(self, images: Tensor, progress: bool = True, desc: str = "scoring") -> ScoreResult:
        """Score ``[B, C, H, W]`` images in batches (with a progress bar for long runs)."""
        from tqdm.auto import tqdm

        parts = [self.score_batch(images[i:i + self.batch_size])
                 for i in tqdm(range(0, len(images), self.batch_size), desc=desc, disable=not progress,
                               leave=False)]
        return ScoreResult(torch.cat([p.scores for p in parts]), torch.cat([p.heatmaps for p in parts]),
                           torch.cat([p.recon for p in parts]))


# ----------------------------------------------------------------------------- calibration

QUANTILES = np.linspace(0.0, 1.0, 201)


@dataclass
class Calibration:
    """Statistics of held-out normal images' scores: z-scores, percentiles and thresholds.

    ``threshold`` is a z-score: the ``specificity`` quantile of the normal images' z-scores (at
    0.95, about 5 % of normal images are flagged). ``pixel_quantiles`` are quantiles of normal
    heatmap pixels, for the contour of "abnormal" regions at the same specificity.
    """

    mean: float
    std: float
    specificity: float
    threshold: float
    quantiles: list[float] = field(default_factory=list)        # z-scores of normals at QUANTILES
    pixel_quantiles: list[float] = field(default_factory=list)  # raw heatmap values at QUANTILES
    n: int = 0

    @classmethod
    def fit(cls, scores: Tensor, heatmaps: Tensor | None = None, specificity: float = 0.95) -> "Calibration":
        s = np.asarray(scores, dtype=np.float64)
        if len(s) < 2:
            raise ValueError("calibration needs at least 2 normal images")
        mean, std = float(s.mean()), float(s.std(ddof=1)) or 1e-12
        z = (s - mean) / std
        q = np.quantile(z, QUANTILES).tolist()
        pq = []
        if heatmaps is not None:
            hp = np.asarray(heatmaps, dtype=np.float64).ravel()
            pq = np.quantile(hp, QUANTILES).tolist()
        cal = cls(mean, std, float(specificity), 0.0, q, pq, len(s))
        cal.threshold = cal.threshold_at(specificity)
        return cal

    def normalise(self, score: float | Tensor | np.ndarray):
        """Raw score -> z-score against the normal images (global, not per image)."""
        return (score - self.mean) / self.std

    def threshold_at(self, specificity: float) -> float:
        """z-score threshold flagging ``1 - specificity`` of the calibration normals."""
        if not 0.0 < specificity <= 1.0:
            raise ValueError(f"specificity must be in (0, 1], got {specificity}")
        return float(np.interp(specificity, QUANTILES, self.quantiles))

    def pixel_threshold_at(self, specificity: float) -> float:
        if not self.pixel_quantiles:
            raise ValueError("this calibration has no pixel statistics")
        return float(np.interp(specificity, QUANTILES, self.pixel_quantiles))

    def percentile(self, z: float) -> float:
        """Fraction of calibration normals scoring below ``z`` (0..1)."""
        return float(np.interp(z, self.quantiles, QUANTILES, left=0.0, right=1.0))

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "specificity": self.specificity, "threshold": self.threshold,
                "n": self.n, "quantile_levels": "linspace(0, 1, 201)", "quantiles": self.quantiles,
                "pixel_quantiles": self.pixel_quantiles}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(float(d["mean"]), float(d["std"]), float(d["specificity"]), float(d["threshold"]),
                   list(d.get("quantiles", [])), list(d.get("pixel_quantiles", [])), int(d.get("n", 0)))
