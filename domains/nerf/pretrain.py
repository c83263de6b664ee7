"""NeRF-MAE pre-training (``maskworks train nerf/nerf-mae``): grids of every shipped mesh and scene,
augmented per step (rotation about the up axis, scale, crop), masked and reconstructed.

Grids are kept at twice the model's side (``2S``); each step draws per-sample augmentation from the
step's seed (``ctx.rand``, so a resumed run is the uninterrupted one), resamples at ``2S`` and
area-averages to ``S`` (colour weighted by alpha), so thin shells survive the rotation.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from maskworks.core.io import InputError, resolve_shipped
from maskworks.core.masking.registry import build_masking
from maskworks.core.training import StepContext, Task

from .grid import ALPHA_THRESHOLD, RadianceGrid, pad_to_cube, read_grid, resample
from .nerf_mae import build_model

GRID_SUFFIXES = (".npz",)


def model_shape(grid: RadianceGrid, size: int) -> tuple[int, int, int]:
    """The grid's shape once resampled to ``size`` voxels along its longest side."""
    return tuple(max(1, int(round(size * r / max(grid.resolution)))) for r in grid.resolution)  # type: ignore[return-value]


def cube_box(grid: RadianceGrid, size: int) -> tuple[np.ndarray, np.ndarray]:
    """World box of :func:`model_input`'s padded cube (the grid centred as :func:`pad_to_cube` puts it)."""
    shape = np.array(model_shape(grid, size))
    vox = (grid.bbox_max - grid.bbox_min) / shape
    lo = grid.bbox_min - (size - shape) // 2 * vox
    return lo, lo + size * vox


def model_input(grid: RadianceGrid, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A grid as the model sees it: resampled to ``size`` voxels along its longest side, RGB zeroed where
    alpha <= 0.01 (empty space has no colour), zero-padded to ``[4, size, size, size]`` with its validity
    mask ``[size, size, size]``."""
    g = resample(grid, model_shape(grid, size))
    rgba = g.rgba()
    rgba[:3] *= rgba[3:] > ALPHA_THRESHOLD
    return pad_to_cube(rgba, size)


def _axes_matrix(theta: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``[B, 3, 4]`` maps output to input coordinates in our (x, y, z) order: rotation about z, 1/scale, shift."""
    c, s = torch.cos(theta), torch.sin(theta)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    rot = torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)
    return torch.cat([rot / scale[:, None, None], shift[:, :, None]], -1)


def augment(x: Tensor, valid: Tensor, u: Tensor, out_size: int, scale: tuple[float, float] = (0.8, 1.2),
            crop: float = 0.15, rotate: bool = True) -> tuple[Tensor, Tensor]:
    """Rotate about z (any angle), scale and shift (a crop when zoomed in) grids ``[B, 4, 2S, 2S, 2S]``
    with validity ``[B, 1, 2S, ...]`` by ``u`` ``[B, 5]`` uniform numbers; then area-average to ``S``."""
    b = x.shape[0]
    theta = 2 * math.pi * u[:, 0] if rotate else torch.zeros(b)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    shift = crop * (2 * u[:, 2:5] - 1)
    a = _axes_matrix(theta, s, shift).to(x.dtype)
    # grid_sample's coordinates run (W, H, D) = our (z, y, x): reverse rows and columns
    perm = torch.tensor([2, 1, 0])
    a_gs = torch.cat([a[:, perm][:, :, perm], a[:, perm][:, :, 3:]], -1)
    grid = F.affine_grid(a_gs, list(x.shape), align_corners=False)
    xa = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    va = F.grid_sample(valid.to(x.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return downsample(xa, va, out_size)


def downsample(x: Tensor, valid: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Area-average ``[B, 4, N, N, N]`` to ``size``: alpha averaged, RGB weighted by alpha; a voxel is
    valid when most of it was."""
    if x.shape[-1] == size:
        return x, valid > 0.5
    alpha = F.adaptive_avg_pool3d(x[:, 3:], size)
    rgb = F.adaptive_avg_pool3d(x[:, :3] * x[:, 3:], size) / alpha.clamp_min(1e-6)
    rgb = rgb * (alpha > ALPHA_THRESHOLD)
    return torch.cat([rgb.clamp(0, 1), alpha], 1), F.adaptive_avg_pool3d(valid, size) > 0.5


def grid_files(root: str | Path) -> list[Path]:
    root = resolve_shipped(root)
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in GRID_SUFFIXES) if Path(root).is_dir() \
        else [Path(root)]
    if not files:
        raise InputError(root, "no .npz grids here", "give a folder of NeRF-MAE .npz grids (maskworks predict nerf/grid makes them)")
    return files


class GridSet(Dataset):
    """Grids as ``{"x": [4, 2S, 2S, 2S], "valid": [1, 2S, 2S, 2S]}``, each listed ``repeat`` times."""

    def __init__(self, files: list[Path], size: int, repeat: int = 1) -> None:
        self.names = [f.stem for f in files]
        self.items = []
        for f in files:
            rgba, valid = model_input(read_grid(f), 2 * size)
            self.items.append({"x": torch.from_numpy(rgba), "valid": torch.from_numpy(valid)[None]})
        self.repeat = repeat

    def __len__(self) -> int:
        return len(self.items) * self.repeat

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.items[i % len(self.items)]


def _raw(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


class NeRFMAETask(Task):
    """``data``: ``grids`` (folder of .npz or ``shipped:``), ``size`` (model side), ``repeat``;
    ``augment``: ``scale`` range, ``crop`` shift, ``rotate``; ``masking``; ``model`` (``arch: swin|vit``)."""

    def build_model(self) -> nn.Module:
        m = dict(self.cfg.get("model") or {})
        m.setdefault("input_size", int(self.cfg["data"]["size"]))
        return build_model(m, build_masking(self.cfg.get("masking")))

    def build_dataset(self, split: str = "train") -> Dataset:
        d = self.cfg["data"]
        return GridSet(grid_files(d["grids"]), int(d["size"]), int(d.get("repeat", 1)))

    def training_step(self, model, batch, ctx: StepContext):
        d, aug = self.cfg["data"], self.cfg.get("augment") or {}
        size = int(d["size"])
        x, valid = augment(batch["x"], batch["valid"], ctx.rand(5).to(batch["x"].device), size,
                           tuple(aug.get("scale", (0.8, 1.2))), float(aug.get("crop", 0.15)), bool(aug.get("rotate", True)))
        mask = ctx.mask(_raw(model).masking, (size // 4,) * 3)
        out = model(x, valid, mask)
        return {"loss": out.loss, "rgb": out.rgb_loss.detach(), "alpha": out.alpha_loss.detach()}
