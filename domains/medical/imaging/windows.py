"""Intensity windows and normalisation, and cutting volumes into slices or 3-D patches.

Plain functions on numpy arrays or torch tensors (channel-first, as the readers return them);
the MONAI wrappers live in :mod:`maskworks.domains.medical.imaging.transforms`.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: (center, width) in HU. Radiology defaults; ``soft_tissue`` and ``mediastinum`` differ slightly
#: (C40/W400 abdomen vs C50/W350 chest), ``brain`` is the narrow C40/W80 parenchyma window.
HU_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


def window_bounds(window: str | tuple[float, float]) -> tuple[float, float]:
    """``(low, high) = (center - width / 2, center + width / 2)`` for a preset name or (center, width)."""
    if isinstance(window, str):
        key = window.lower().replace("-", "_").replace(" ", "_")
        if key not in HU_WINDOWS:
            raise ValueError(f"unknown HU window {window!r}; presets: {sorted(HU_WINDOWS)} "
                             "or pass (center, width)")
        center, width = HU_WINDOWS[key]
    else:
        center, width = (float(v) for v in window)
    if width <= 0:
        raise ValueError(f"window width must be > 0, got {width}")
    return center - width / 2.0, center + width / 2.0


def apply_window(x: Array, window: str | tuple[float, float]) -> Array:
    """Map HU to [0, 1]: ``low -> 0``, ``high -> 1``, linear between, clipped outside."""
    low, high = window_bounds(window)
    y = (x - low) / (high - low)
    return y.clip(0.0, 1.0) if isinstance(y, np.ndarray) else y.clamp(0.0, 1.0)


def per_slice_minmax(x: Array, spatial_dims: int = 2, eps: float = 1e-8) -> Array:
    """Min-max each 2-D slice to [0, 1] independently (the last ``spatial_dims`` axes are one slice).

    For ``[C, D, H, W]`` and ``spatial_dims=2`` every ``(c, d)`` slice is scaled on its own, which
    removes scanner- and slice-dependent offsets (MR). Constant slices become 0, not NaN.
    """
    if x.ndim < spatial_dims:
        raise ValueError(f"input has {x.ndim} dims, fewer than spatial_dims={spatial_dims}")
    axes = tuple(range(x.ndim - spatial_dims, x.ndim))
    if isinstance(x, np.ndarray):
        lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
        return ((x - lo) / np.maximum(hi - lo, eps)).astype(x.dtype)
    lo, hi = x.amin(dim=axes, keepdim=True), x.amax(dim=axes, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(eps)


def volume_to_slices(volume: Array) -> Array:
    """``[C, D, H, W]`` -> ``[D, C, H, W]``: a batch of 2-D slices for a 2-D network."""
    if volume.ndim != 4:
        raise ValueError(f"expected a volume [C, D, H, W], got shape {tuple(volume.shape)}")
    return volume.transpose(1, 0, 2, 3) if isinstance(volume, np.ndarray) else volume.permute(1, 0, 2, 3)


def volume_to_patches(volume: Array, size: Sequence[int], stride: Sequence[int] | None = None) -> Array:
    """``[C, D, H, W]`` -> ``[N, C, d, h, w]``: 3-D patches on a regular grid (row-major order).

    ``stride`` defaults to ``size`` (non-overlapping); the remainder at the far edges is dropped.
    """
    if volume.ndim != 4:
        raise ValueError(f"expected a volume [C, D, H, W], got shape {tuple(volume.shape)}")
    size = tuple(int(s) for s in size)
    stride = size if stride is None else tuple(int(s) for s in stride)
    if len(size) != 3 or len(stride) != 3:
        raise ValueError(f"size and stride need 3 values (d, h, w), got {size} and {stride}")
    spatial = tuple(volume.shape[1:])
    if any(s > v for s, v in zip(size, spatial)):
        raise ValueError(f"patch size {size} is larger than the volume {spatial}; pad the volume first")
    t = torch.as_tensor(volume)
    for axis, (s, st) in enumerate(zip(size, stride)):
        t = t.unfold(axis + 1, s, st)  # [C, nd, nh, nw, d, h, w] after the three unfolds
    c = t.shape[0]
    t = t.permute(1, 2, 3, 0, 4, 5, 6).reshape(-1, c, *size)
    return t.numpy() if isinstance(volume, np.ndarray) else t
