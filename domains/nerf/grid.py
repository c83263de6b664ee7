"""Radiance-and-density grids: RGB + density on a regular grid with its bounding box, stored as NeRF-MAE's
``.npz`` (``rgbsigma`` ``[X, Y, Z, 4]``, ``resolution``, ``bbox_min``, ``bbox_max``).

Density convention: ``sigma`` is a non-negative density per unit length of the grid's *normalised* box
(longest side 1), so one grid renders the same whatever its world scale. NeRF-MAE turns density into a
per-voxel opacity with a fixed step of 1/100 of that box: ``alpha = 1 - exp(-act(raw) / 100)`` with
``act = exp`` for instant-ngp's truncated-exp densities (NeRF-MAE's default) and ``act = relu`` for
densities trained with a ReLU. Files we write store ``raw = log(sigma)`` (so NeRF-MAE's own loader reads
the same alpha) and say so in ``density_activation``.
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from maskworks.core.io import InputError

Activation = Literal["trunc_exp", "relu"]
ALPHA_STEP = 0.01  # NeRF-MAE's step: alpha = 1 - exp(-sigma * 0.01)
ALPHA_THRESHOLD = 0.01  # NeRF-MAE's "occupied" (RGB loss, point sampling)
MAX_GRID_VOXELS = 256 ** 3  # refuse larger grids before decoding them
MAX_GRID_SIDE = 512
LOG_SIGMA_FLOOR = -20.0  # log(0) written as this (exp(-20) / 100 is an alpha of 2e-11)


def density_to_alpha(raw: np.ndarray, activation: Activation = "trunc_exp", step: float = ALPHA_STEP) -> np.ndarray:
    """NeRF-MAE's opacity of a raw density: ``1 - exp(-exp(raw) * step)`` (trunc-exp) or
    ``1 - exp(-relu(raw) * step)`` (ReLU), clipped to [0, 1]."""
    sigma = activate_density(raw, activation).astype(np.float64)
    return np.clip(1.0 - np.exp(-sigma * step), 0.0, 1.0).astype(np.float32)


def activate_density(raw: np.ndarray, activation: Activation = "trunc_exp") -> np.ndarray:
    """Raw density -> sigma: ``exp`` (trunc-exp, clamped) or ``relu``."""
    raw = np.asarray(raw, dtype=np.float64)
    if activation == "trunc_exp":
        return np.exp(np.minimum(raw, 30.0)).astype(np.float32)
    if activation == "relu":
        return np.maximum(raw, 0.0).astype(np.float32)
    raise ValueError(f"unknown density activation {activation!r}; use 'trunc_exp' or 'relu'")


def alpha_to_density(alpha: np.ndarray, step: float = ALPHA_STEP) -> np.ndarray:
    """The inverse of :func:`density_to_alpha` on activated densities: ``sigma = -log(1 - alpha) / step``."""
    a = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, 1.0 - 1e-7)
    return (-np.log1p(-a) / step).astype(np.float32)


@dataclass
class RadianceGrid:
    """``rgb`` ``[X, Y, Z, 3]`` in [0, 1], ``sigma`` ``[X, Y, Z]`` >= 0 (per unit of the normalised box),
    over the axis-aligned box ``bbox_min``..``bbox_max`` (world units; voxel centres at cell centres).
    Axes are x, y, z with z up (NeRF-MAE's ``W, L, H``)."""

    rgb: np.ndarray
    sigma: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    source: str = ""
    notes: list[str] = field(default_factory=list)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # per-voxel side data (not written to .npz)

    def __post_init__(self) -> None:
        self.rgb = np.asarray(self.rgb, dtype=np.float32)
        self.sigma = np.asarray(self.sigma, dtype=np.float32)
        self.bbox_min = np.asarray(self.bbox_min, dtype=np.float64).reshape(3)
        self.bbox_max = np.asarray(self.bbox_max, dtype=np.float64).reshape(3)
        if self.rgb.shape != (*self.sigma.shape, 3):
            raise ValueError(f"rgb {self.rgb.shape} does not match sigma {self.sigma.shape} + (3,)")
        if not np.all(self.bbox_max > self.bbox_min):
            raise ValueError(f"empty box {self.bbox_min}..{self.bbox_max}")

    @property
    def resolution(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.sigma.shape)  # type: ignore[return-value]

    @property
    def alpha(self) -> np.ndarray:
        return (1.0 - np.exp(-self.sigma.astype(np.float64) * ALPHA_STEP)).astype(np.float32)

    @property
    def scale(self) -> float:
        """World length of the normalised box's unit (its longest side)."""
        return float((self.bbox_max - self.bbox_min).max())

    @classmethod
    def from_alpha(cls, rgb: np.ndarray, alpha: np.ndarray, bbox_min, bbox_max, source: str = "") -> "RadianceGrid":
        return cls(rgb, alpha_to_density(alpha), bbox_min, bbox_max, source)

    def rgba(self) -> np.ndarray:
        """``[4, X, Y, Z]`` float32: RGB and alpha, channels first (the model's input layout)."""
        return np.concatenate([np.moveaxis(self.rgb, -1, 0), self.alpha[None]], 0).astype(np.float32)


def pad_to_cube(rgba: np.ndarray, side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``[C, X, Y, Z]`` to ``[C, S, S, S]`` (``S`` = longest side, or ``side``), the grid centred,
    as NeRF-MAE pads its scenes; returns the padded grid and the validity mask ``[S, S, S]`` (True where
    the grid has data, so the loss ignores padding)."""
    shape = np.array(rgba.shape[1:])
    s = int(shape.max() if side is None else side)
    if np.any(shape > s):
        raise ValueError(f"grid {tuple(shape)} does not fit in a cube of side {s}")
    lo = (s - shape) // 2
    out = np.zeros((rgba.shape[0], s, s, s), dtype=rgba.dtype)
    valid = np.zeros((s, s, s), dtype=bool)
    sl = tuple(slice(a, a + n) for a, n in zip(lo, shape))
    out[(slice(None), *sl)] = rgba
    valid[sl] = True
    return out, valid


def resample(grid: RadianceGrid, resolution: int | tuple[int, int, int]) -> RadianceGrid:
    """The grid at another resolution over the same box: trilinear for upsampling, area-average (of
    alpha-weighted colour and of alpha) for downsampling, so thin shells are not lost."""
    import torch
    import torch.nn.functional as F

    res = (int(resolution),) * 3 if np.isscalar(resolution) else tuple(int(r) for r in resolution)
    if res == grid.resolution:
        return grid
    a = torch.from_numpy(grid.alpha)[None, None]
    rgb = torch.from_numpy(np.moveaxis(grid.rgb, -1, 0))[None]
    down = all(r <= s for r, s in zip(res, grid.resolution))
    if down:
        a2 = F.adaptive_avg_pool3d(a, res)
        rgb2 = F.adaptive_avg_pool3d(rgb * a, res) / a2.clamp_min(1e-6)
        # where nothing is occupied keep the plain average colour
        rgb2 = torch.where(a2 > 1e-6, rgb2, F.adaptive_avg_pool3d(rgb, res))
    else:
        a2 = F.interpolate(a, size=res, mode="trilinear", align_corners=False)
        rgb2 = F.interpolate(rgb, size=res, mode="trilinear", align_corners=False)
    alpha = a2[0, 0].numpy()
    return RadianceGrid.from_alpha(np.moveaxis(rgb2[0].clamp(0, 1).numpy(), 0, -1), alpha, grid.bbox_min,
                                   grid.bbox_max, grid.source)


# -- the .npz format ---------------------------------------------------------------------------------

def write_grid(path: str | Path, grid: RadianceGrid, dtype: Literal["float32", "float16"] = "float32") -> Path:
    """Write NeRF-MAE's layout: ``rgbsigma`` ``[X, Y, Z, 4]`` (RGB, raw log-density), ``resolution``,
    ``bbox_min``, ``bbox_max``, ``scale`` and ``density_activation = 'trunc_exp'`` (compressed)."""
    path = Path(path)
    raw = np.log(np.maximum(grid.sigma.astype(np.float64), np.exp(LOG_SIGMA_FLOOR)))
    rgbsigma = np.concatenate([grid.rgb, raw[..., None]], -1).astype(dtype)
    np.savez_compressed(path, rgbsigma=rgbsigma, resolution=np.array(grid.resolution, dtype=np.int64),
                        bbox_min=grid.bbox_min.astype(np.float32), bbox_max=grid.bbox_max.astype(np.float32),
                        scale=np.float32(grid.scale), density_activation=np.array("trunc_exp"))
    return path


def _member_shape(zf: zipfile.ZipFile, name: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an array inside an ``.npz`` from its header only (nothing decoded)."""
    from numpy.lib import format as npformat

    with zf.open(name) as f:
        try:
            version = npformat.read_magic(f)
            reader = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, _, dtype = reader(f)
        except ValueError as e:
            raise InputError(path, f"member {name!r} is not a NumPy array ({e})",
                             "write the grid with numpy.savez / maskworks' write_grid") from None
    return tuple(int(s) for s in shape), dtype


def read_grid(path: str | Path, activation: Activation | None = None, max_voxels: int = MAX_GRID_VOXELS) -> RadianceGrid:
    """Read a NeRF-MAE / NeRF-RPN ``.npz`` grid. ``activation`` overrides the file's
    ``density_activation`` (NeRF-MAE's files have none and use trunc-exp). uint8 grids are scaled to
    [0, 1] as NeRF-MAE does (their last channel is then taken as alpha). Sizes are checked from the
    array header before anything is decoded; NaN/inf are refused."""
    path = Path(path)
    fix = "give a NeRF-MAE grid: an .npz with rgbsigma [X, Y, Z, 4] (and resolution, bbox_min, bbox_max)"
    if not path.is_file():
        raise InputError(path, "no such file", "check the path")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(path, f"not an .npz archive ({e})", fix) from None
    try:
        with zf:
            names = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
            if "rgbsigma" not in names:
                raise InputError(path, f"no 'rgbsigma' array (has {sorted(names)})", fix)
            shape, dtype = _member_shape(zf, names["rgbsigma"], path)
            if len(shape) != 4 or shape[-1] != 4:
                raise InputError(path, f"rgbsigma has shape {list(shape)}, expected [X, Y, Z, 4]", fix)
            if int(np.prod(shape[:3])) > max_voxels or max(shape[:3]) > MAX_GRID_SIDE:
                raise InputError(path, f"grid {shape[0]}x{shape[1]}x{shape[2]} is larger than the cap of "
                                 f"{max_voxels:,} voxels ({MAX_GRID_SIDE} a side)", "downsample the grid first")
            if dtype.kind not in "fu":
                raise InputError(path, f"rgbsigma has dtype {dtype}", "store float32/float16 or uint8")
            small = {}
            for key in ("bbox_min", "bbox_max", "density_activation", "resolution"):
                if key in names:
                    s, _ = _member_shape(zf, names[key], path)
                    if int(np.prod(s)) > 16:
                        raise InputError(path, f"{key} has shape {list(s)}", "store 3 numbers")
                    with zf.open(names[key]) as f:
                        small[key] = np.lib.format.read_array(f, allow_pickle=False)
            with zf.open(names["rgbsigma"]) as f:
                rgbsigma = np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:  # damaged members
        if isinstance(e, InputError):
            raise
        raise InputError(path, f"the archive is damaged ({type(e).__name__}: {e})", "write the grid again") from None
    if not np.isfinite(rgbsigma).all():
        raise InputError(path, "rgbsigma holds NaN or infinite values", "replace them (e.g. numpy.nan_to_num) and save again")
    if rgbsigma.dtype == np.uint8:
        rgba = rgbsigma.astype(np.float32) / 255.0
        rgb, alpha = rgba[..., :3], rgba[..., 3]
        sigma = alpha_to_density(alpha)
    else:
        act = activation or str(small.get("density_activation", "trunc_exp"))
        if act not in ("trunc_exp", "relu"):
            raise InputError(path, f"unknown density_activation {act!r}", "use 'trunc_exp' or 'relu'")
        rgb = np.clip(rgbsigma[..., :3].astype(np.float32), 0.0, 1.0)
        sigma = activate_density(rgbsigma[..., 3], act)
    res = np.array(shape[:3], dtype=np.float64)
    lo = np.asarray(small.get("bbox_min", np.zeros(3)), dtype=np.float64).reshape(-1)
    hi = np.asarray(small.get("bbox_max", res / res.max()), dtype=np.float64).reshape(-1)
    if lo.size != 3 or hi.size != 3 or not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or not np.all(hi > lo):
        raise InputError(path, f"bad bounding box {lo.tolist()}..{hi.tolist()}", "bbox_max must exceed bbox_min on every axis")
    return RadianceGrid(rgb, sigma, lo, hi, source=str(path))


def prune(grid: RadianceGrid, min_alpha: float = 1e-3) -> RadianceGrid:
    """Empty space made exactly empty (density 0, colour 0 where alpha < ``min_alpha``): renders the same
    to within ``min_alpha`` per voxel, and compresses to a fraction of the size."""
    keep = grid.alpha >= min_alpha
    return RadianceGrid(grid.rgb * keep[..., None], grid.sigma * keep, grid.bbox_min, grid.bbox_max, grid.source,
                        list(grid.notes))
