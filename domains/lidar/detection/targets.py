"""Training targets and loss: Gaussian class heatmaps (CenterNet radius) with focal loss; offset, z, log size
and (sin, cos) yaw at object centres with L1."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..voxel import VoxelGrid
from .model import CLASSES, MAX_OBJECTS, regression_map


def gaussian_radius(h: float, w: float, min_overlap: float = 0.1) -> float:
    """CenterNet's radius (in cells) such that a shifted box still has IoU >= ``min_overlap``."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + np.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


def build_targets(boxes: np.ndarray, labels: np.ndarray, grid: VoxelGrid, stride: int = 2,
                  num_classes: int = len(CLASSES), min_radius: int = 2) -> dict[str, np.ndarray]:
    """CenterPoint targets for one scan: heatmap ``[C, H, W]``, ``ind`` / ``mask`` ``[K]``, ``reg`` ``[K, 8]``
    (dx, dy, z, log l, log w, log h, sin yaw, cos yaw); boxes whose centre is off the grid are skipped."""
    _, ny, nx = grid.shape
    H, W, cell = ny // stride, nx // stride, grid.voxel_size * stride
    heat = np.zeros((num_classes, H, W), np.float32)
    ind = np.zeros(MAX_OBJECTS, np.int64)
    mask = np.zeros(MAX_OBJECTS, np.float32)
    reg = np.zeros((MAX_OBJECTS, 8), np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    k = 0
    for b, c in zip(boxes, labels):
        if c < 0 or k >= MAX_OBJECTS:
            continue
        fx, fy = (b[0] - grid.x_range[0]) / cell, (b[1] - grid.y_range[0]) / cell
        ix, iy = int(np.floor(fx)), int(np.floor(fy))
        if not (0 <= ix < W and 0 <= iy < H):
            continue
        r = max(min_radius, int(gaussian_radius(b[3] / cell, b[4] / cell)))
        sigma = (2 * r + 1) / 6
        g = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma ** 2))
        g[(np.abs(xx - ix) > r) | (np.abs(yy - iy) > r)] = 0
        heat[c] = np.maximum(heat[c], g)
        ind[k], mask[k] = iy * W + ix, 1.0
        reg[k] = [fx - ix, fy - iy, b[2], np.log(b[3]), np.log(b[4]), np.log(b[5]), np.sin(b[6]), np.cos(b[6])]
        k += 1
    return {"heatmap": heat, "ind": ind, "mask": mask, "reg": reg}


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of peaks."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = (torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * neg).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp_min(1)


def detection_loss(out: dict[str, Tensor], tgt: dict[str, Tensor], reg_weight: float = 1.0) -> dict[str, Tensor]:
    hm = focal_loss(out["heatmap"], tgt["heatmap"])
    reg = regression_map(out)
    b, c, h, w = reg.shape
    pred = reg.reshape(b, c, h * w).gather(2, tgt["ind"][:, None, :].expand(b, c, -1)).permute(0, 2, 1)  # [B, K, 8]
    m = tgt["mask"][..., None]
    l1 = (F.l1_loss(pred, tgt["reg"], reduction="none") * m).sum() / m.sum().clamp_min(1)
    return {"loss": hm + reg_weight * l1, "heatmap": hm.detach(), "reg": l1.detach()}


