"""Every masking strategy drawn over one image (``maskworks masks``, and the demo's first tab)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from maskworks.core.masking import (
    BlockMasking,
    BodyPartMasking,
    ColorNoiseMasking,
    GridBlockMasking,
    HardPatchMasking,
    PointBlockMasking,
    RadialSectorMasking,
    RandomMasking,
    RunningCellMasking,
    TubeMasking,
)
from maskworks.core.masking.viz import draw_mask

# name -> (description, default ratio)
STRATEGY_CHOICES: dict[str, tuple[str, float]] = {
    "random (MAE)": ("uniform noise per patch", 0.75),
    "block-wise (BEiT)": ("random rectangles", 0.4),
    "coarse grid (SimMIM 32 px)": ("32 px blocks upsampled to 16 px patches", 0.6),
    "SparK stride-32 grid": ("masks on the stride-32 feature grid of a CNN", 0.6),
    "ColorMAE low-pass (red)": ("low-pass filtered noise: clustered", 0.75),
    "ColorMAE high-pass (blue)": ("high-pass filtered noise: dispersed", 0.75),
    "ColorMAE band-pass (green)": ("band-pass filtered noise", 0.75),
    "ColorMAE band-stop (purple)": ("band-stop filtered noise", 0.75),
    "video tube, frame 1": ("one spatial mask for every frame", 0.9),
    "running cell, frame 1": ("VideoMAE V2 decoder mask, 2x2 cells", 0.5),
    "running cell, frame 2": ("the pattern moves by one place per frame", 0.5),
    "3-D blocks, one slice": ("2x2x2-patch cubes of a volume, slice 0", 0.75),
    "point block (Point-BERT)": ("patch centres nearest a random seed", 0.4),
    "radial sectors (R-MAE)": ("10-degree sectors around the image centre", 0.8),
    "hard patches (HPM)": ("predicted-hard (edgy) patches first, late in training", 0.75),
    "body parts (SkeletonMAE)": ("whole parts hidden (head, torso, arms, legs); image regions stand in for joints", 0.4),
}


def _patch_centres(h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.stack([xx - w / 2, h / 2 - yy, torch.zeros_like(xx)], -1).reshape(1, h * w, 3)


def _edge_energy(image: np.ndarray, h: int, w: int) -> torch.Tensor:
    """A stand-in for HPM's predicted loss: per-patch gradient energy (edges reconstruct worst)."""
    a = image.astype(np.float32)
    if a.ndim == 3:
        a = a.mean(-1)
    gy, gx = np.gradient(a)
    e = torch.from_numpy(np.hypot(gx, gy))
    ph, pw = a.shape[0] // h, a.shape[1] // w
    return e[: h * ph, : w * pw].reshape(h, ph, w, pw).mean((1, 3)).reshape(1, h * w)


def _body_regions(h: int, w: int) -> dict[str, list[int]]:
    """Six body parts as regions of an ``h`` x ``w`` patch grid (each patch plays a joint)."""
    cols = range(w)
    top, mid = max(1, h * 3 // 14), max(2, h * 9 // 14)
    c1, c2, c3 = w * 4 // 14, w // 2, w * 10 // 14
    region = lambda rs, cs: [r * w + c for r in rs for c in cs]  # noqa: E731
    return {"head": region(range(0, top), cols), "torso": region(range(top, mid), range(c1, c3)),
            "left arm": region(range(top, mid), range(0, c1)), "right arm": region(range(top, mid), range(c3, w)),
            "left leg": region(range(mid, h), range(0, c2)), "right leg": region(range(mid, h), range(c2, w))}


def mask_for(name: str, ratio: float, grid: tuple[int, int], seed: int = 0, image: np.ndarray | None = None) -> torch.Tensor:
    """The ``[h, w]`` boolean mask (True = hidden) that strategy ``name`` draws on a 2-D patch grid."""
    h, w = grid
    g = torch.Generator().manual_seed(seed)
    if name == "random (MAE)":
        return RandomMasking(ratio)(1, grid, generator=g).mask[0]
    if name == "block-wise (BEiT)":
        return BlockMasking(ratio)(1, grid, generator=g).mask[0]
    if name == "coarse grid (SimMIM 32 px)":
        return GridBlockMasking(ratio, 2)(1, grid, generator=g).mask[0]
    if name == "SparK stride-32 grid":
        coarse = GridBlockMasking(ratio, 1)(1, (h // 2, w // 2), generator=g).mask[0]
        return coarse.repeat_interleave(2, 0).repeat_interleave(2, 1)
    if name.startswith("ColorMAE"):
        kind = name.split("(")[1].rstrip(")")
        return ColorNoiseMasking(ratio, kind)(1, grid, generator=g).mask[0]
    if name.startswith("video tube"):
        return TubeMasking(ratio)(1, (8, h, w), generator=g).mask[0, 0]
    if name.startswith("running cell"):
        frame = int(name[-1]) - 1
        return RunningCellMasking(ratio)(1, (8, h, w), generator=g).mask[0, frame]
    if name.startswith("3-D blocks"):
        d = 2 * math.ceil(h / 2)
        return GridBlockMasking(ratio, 2)(1, (d, h, w), generator=g).mask[0, 0]
    if name.startswith("point block"):
        return PointBlockMasking(ratio)(1, (h * w,), generator=g, centers=_patch_centres(h, w)).mask[0].reshape(h, w)
    if name.startswith("radial sectors"):
        s = RadialSectorMasking(ratio, sector_deg=10.0)
        return s(1, (h * w,), generator=g, points=_patch_centres(h, w)).mask[0].reshape(h, w)
    if name.startswith("hard patches"):
        loss = _edge_energy(image, h, w) if image is not None else torch.rand(1, h * w, generator=g)
        return HardPatchMasking(ratio)(1, (h * w,), generator=g, loss_pred=loss, progress=1.0).mask[0].reshape(h, w)
    if name.startswith("body parts"):
        return BodyPartMasking(ratio, _body_regions(h, w))(1, (h * w,), generator=g).mask[0].reshape(h, w)
    raise ValueError(f"unknown strategy {name!r}; choose one of {list(STRATEGY_CHOICES)}")


def default_image() -> Path:
    from maskworks.data import data_path

    return data_path("examples", "chest_xray_224.png")


def load_gray(path: str | Path, size: int = 224) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size)), dtype=np.float32) / 255.0


def draw_all(image: str | Path | None, out: Path, seed: int = 0, patch: int = 16) -> list[Path]:
    """One gallery PNG of every strategy over the image, plus one PNG per strategy."""
    from maskworks.core.masking.viz import mask_gallery
    from PIL import Image

    img = load_gray(image or default_image())
    grid = (img.shape[0] // patch, img.shape[1] // patch)
    out.mkdir(parents=True, exist_ok=True)
    masks = {n: mask_for(n, r, grid, seed, img) for n, (_, r) in STRATEGY_CHOICES.items()}
    paths = []
    for n, m in masks.items():
        slug = "".join(c if c.isalnum() else "_" for c in n.lower()).strip("_")
        p = out / f"{slug}.png"
        Image.fromarray(draw_mask(img, m)).save(p)
        paths.append(p)
    fig = mask_gallery(img, masks, cols=5)
    gallery = out / "all_strategies.png"
    fig.savefig(gallery, dpi=80)
    return [gallery] + paths
