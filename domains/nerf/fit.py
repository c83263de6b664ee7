"""Fit a radiance field to posed images as an explicit voxel grid (DVGO / Plenoxels style), on a CPU.

Two grids are optimised directly by differentiable volume rendering (:mod:`.render`): density
(``sigma = 100 * softplus(raw)`` per unit of the normalised box, interpolated before activation as DVGO
does) and colour (sigmoid of logits; view-independent, as NeRF-MAE's grids store one RGB per voxel).
Coarse to fine: a coarse grid over a box around what the cameras look at finds the object; the box is
shrunk to the occupied voxels and the grid grows (Plenoxels' / DVGO's progressive scaling) to the final
resolution. A small total-variation term on density quiets floaters. Views ``i % 10 == 5`` are held
out and their PSNR reported.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .grid import RadianceGrid
from .render import camera_rays, psnr, render_rays
from .scenes import PosedImages

DENSITY_SCALE = 100.0  # sigma = DENSITY_SCALE * softplus(raw): one Adam step moves opacity visibly


@dataclass
class FitConfig:
    resolution: int = 96          # final grid side (longest axis)
    coarse_resolution: int = 32
    coarse_steps: int = 300
    steps: int = 1200             # fine steps
    growth: tuple[float, ...] = (0.5, 0.75, 1.0)  # fine resolution schedule (fractions of ``resolution``)
    rays: int = 4096
    samples: int = 128
    lr: float = 0.1
    tv_weight: float = 1e-5
    box_margin: float = 0.08      # fraction of the tight box added on every side
    box_threshold: float = 0.1    # alpha over a coarse voxel that counts as occupied
    holdout_every: int = 10
    seed: int = 0
    use_holdout: bool = True


@dataclass
class FitResult:
    grid: RadianceGrid
    heldout_psnr: float | None
    train_psnr: float
    views_train: int
    views_test: int
    image_size: tuple[int, int]
    seconds: float
    history: list[dict] = field(default_factory=list)
    renders: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (truth, render) per held-out view

    def to_json(self) -> dict:
        return {"heldout_psnr_db": self.heldout_psnr, "train_psnr_db": self.train_psnr, "views_train": self.views_train,
                "views_test": self.views_test, "image_size_wh": list(self.image_size),
                "resolution": list(self.grid.resolution), "bbox_min": self.grid.bbox_min.tolist(),
                "bbox_max": self.grid.bbox_max.tolist(), "seconds": round(self.seconds, 1)}


class VoxelField(torch.nn.Module):
    """Raw density and colour logits on a grid over a box: ``[4, X, Y, Z]``."""

    def __init__(self, resolution: tuple[int, int, int], bbox_min, bbox_max, init_raw: float = -8.0) -> None:
        super().__init__()
        self.bbox_min = np.asarray(bbox_min, dtype=np.float64)
        self.bbox_max = np.asarray(bbox_max, dtype=np.float64)
        self.raw = torch.nn.Parameter(torch.full((1, *resolution), init_raw))
        self.logits = torch.nn.Parameter(torch.zeros((3, *resolution)))

    def volume(self) -> Tensor:
        return torch.cat([self.logits, self.raw], 0)

    @staticmethod
    def activation(x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(x[..., :3]), DENSITY_SCALE * F.softplus(x[..., 3])

    def resized(self, resolution: tuple[int, int, int], bbox_min=None, bbox_max=None) -> "VoxelField":
        """The field sampled onto a new grid (optionally over a new box), as a fresh module."""
        lo = self.bbox_min if bbox_min is None else np.asarray(bbox_min, dtype=np.float64)
        hi = self.bbox_max if bbox_max is None else np.asarray(bbox_max, dtype=np.float64)
        new = VoxelField(resolution, lo, hi)
        with torch.no_grad():
            axes = [torch.linspace(lo[k], hi[k], resolution[k] * 2 + 1)[1::2] for k in range(3)]
            pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).float()  # [X, Y, Z, 3] world
            g = 2 * (pts - torch.tensor(self.bbox_min).float()) / torch.tensor(self.bbox_max - self.bbox_min).float() - 1
            v = F.grid_sample(self.volume()[None], g.flip(-1)[None], mode="bilinear", padding_mode="border",
                              align_corners=False)[0]
            new.logits.copy_(v[:3])
            # the same world density: sigma is per unit of the box's longest side, which may have changed
            ratio = float((hi - lo).max() / (self.bbox_max - self.bbox_min).max())
            sp = F.softplus(v[3:]) * ratio
            new.raw.copy_(torch.where(sp > 20, sp, torch.log(torch.expm1(sp.clamp_min(1e-12)))))
        return new

    def to_grid(self, source: str = "") -> RadianceGrid:
        with torch.no_grad():
            rgb, sigma = self.activation(self.volume().permute(1, 2, 3, 0))
        return RadianceGrid(rgb.numpy(), sigma.numpy(), self.bbox_min, self.bbox_max, source)


def _shape_for(extent: np.ndarray, side: int) -> tuple[int, int, int]:
    """Voxels per axis for a box: ``side`` along the longest axis, cubic voxels."""
    return tuple(max(4, int(round(side * e / extent.max()))) for e in extent)  # type: ignore[return-value]


def _tv(raw: Tensor) -> Tensor:
    return ((raw[:, 1:] - raw[:, :-1]) ** 2).mean() + ((raw[:, :, 1:] - raw[:, :, :-1]) ** 2).mean() + \
        ((raw[:, :, :, 1:] - raw[:, :, :, :-1]) ** 2).mean()


def initial_box(scene: PosedImages) -> tuple[np.ndarray, np.ndarray]:
    """A cube around the cameras' focus, reaching 60 % of the way to the nearest camera."""
    c = scene.focus()
    r = 0.6 * min(np.linalg.norm(cam.c2w[:3, 3] - c) for cam in scene.cameras)
    return c - r, c + r


def fit_radiance_grid(scene: PosedImages, cfg: FitConfig | None = None,
                      progress: Callable[[int, int, dict], None] | None = None) -> FitResult:
    """Optimise a voxel grid to ``scene``'s training views; report PSNR on the held-out ones."""
    cfg = cfg or FitConfig()
    t0 = time.time()
    g = torch.Generator().manual_seed(cfg.seed)
    train, test = scene.split(cfg.holdout_every) if cfg.use_holdout and len(scene) >= cfg.holdout_every else \
        (list(range(len(scene))), [])
    rays_o, rays_d, target = [], [], []
    for i in train:
        o, d = camera_rays(scene.cameras[i])
        rays_o.append(o)
        rays_d.append(d)
        target.append(torch.from_numpy(scene.images[i].reshape(-1, 3)))
    rays_o, rays_d, target = torch.cat(rays_o), torch.cat(rays_d), torch.cat(target)
    white = scene.white_background
    bg_param = torch.nn.Parameter(torch.full((3,), 0.5))  # learned background for photos
    background = (lambda: torch.ones(3)) if white else (lambda: bg_param)

    lo, hi = initial_box(scene)
    field = VoxelField(_shape_for(hi - lo, cfg.coarse_resolution), lo, hi)
    total = cfg.coarse_steps + cfg.steps
    stages = [("coarse", cfg.coarse_steps, None)]
    per = cfg.steps // len(cfg.growth)
    for k, frac in enumerate(cfg.growth):
        stages.append((f"fine{k}", per if k < len(cfg.growth) - 1 else cfg.steps - per * (len(cfg.growth) - 1), frac))
    history: list[dict] = []
    step = 0
    for name, n_steps, frac in stages:
        if frac is not None:
            if name == "fine0":  # shrink the box to what the coarse grid found
                alpha = 1 - torch.exp(-field.activation(field.volume().permute(1, 2, 3, 0))[1].detach() *
                                      (1.0 / max(field.raw.shape[1:])))
                occ = (alpha > cfg.box_threshold).nonzero()
                if len(occ) > 8:
                    vox = (field.bbox_max - field.bbox_min) / np.array(field.raw.shape[1:])
                    tlo = field.bbox_min + occ.min(0).values.numpy() * vox
                    thi = field.bbox_min + (occ.max(0).values.numpy() + 1) * vox
                    m = cfg.box_margin * (thi - tlo).max()
                    lo, hi = np.maximum(tlo - m, field.bbox_min), np.minimum(thi + m, field.bbox_max)
            field = field.resized(_shape_for(hi - lo, max(cfg.coarse_resolution, int(round(cfg.resolution * frac)))), lo, hi)
        opt = torch.optim.Adam([{"params": field.parameters(), "lr": cfg.lr}, {"params": [bg_param], "lr": 0.01}],
                               betas=(0.9, 0.99))
        for s in range(n_steps):
            idx = torch.randint(0, len(target), (cfg.rays,), generator=g)
            jitter = torch.rand(cfg.rays, 1, generator=g)
            out = render_rays(field.volume(), field.bbox_min, field.bbox_max, rays_o[idx], rays_d[idx], cfg.samples,
                              background(), VoxelField.activation, jitter)
            mse = F.mse_loss(out["rgb"], target[idx])
            loss = mse + (cfg.tv_weight * _tv(field.raw) if cfg.tv_weight else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0 or step == total:
                rec = {"step": step, "stage": name, "psnr": -10 * math.log10(max(float(mse.detach()), 1e-10)),
                       "resolution": list(field.raw.shape[1:]), "seconds": round(time.time() - t0, 1)}
                history.append(rec)
                if progress is not None:
                    progress(step, total, rec)
    grid = field.to_grid(scene.source)
    bg = float(background().detach().mean()) if not white else 1.0
    renders, scores = [], []
    for i in test:
        cam = scene.cameras[i]
        o, d = camera_rays(cam)
        with torch.no_grad():
            img = torch.cat([render_rays(field.volume(), field.bbox_min, field.bbox_max, o[j:j + 16384],
                                         d[j:j + 16384], cfg.samples * 2, background().detach(),
                                         VoxelField.activation)["rgb"] for j in range(0, len(o), 16384)])
        img = img.clamp(0, 1).reshape(cam.height, cam.width, 3).numpy()
        renders.append((scene.images[i], img))
        scores.append(psnr(scene.images[i], img))
    grid.notes.append(f"background {'white' if white else f'learned ({bg:.2f})'}")
    train_psnr = history[-1]["psnr"] if history else float("nan")
    cam0 = scene.cameras[0]
    return FitResult(grid, float(np.mean(scores)) if scores else None, train_psnr, len(train), len(test),
                     (cam0.width, cam0.height), time.time() - t0, history, renders)
