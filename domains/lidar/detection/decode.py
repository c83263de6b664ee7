"""Head maps -> boxes: 3x3 max-pool peaks, top-k, per-class rotated BEV NMS; flip test-time augmentation."""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..iou import nms_bev
from ..voxel import VoxelGrid
from .model import CLASSES, regression_map


def unflip(out: dict[str, Tensor], axis: str) -> dict[str, Tensor]:
    """Head maps computed on a grid flipped along ``axis`` (``"y"``: y -> -y, ``"x"``: x -> -x) expressed
    in the original grid: maps flipped back, the sub-cell offset mirrored (``d -> 1 - d``) and the yaw
    mirrored (y-flip: yaw -> -yaw; x-flip: yaw -> pi - yaw). Exact on a grid symmetric about the sensor."""
    dim, k = (-2, 1) if axis == "y" else (-1, 0)
    o = {name: t.flip(dim) for name, t in out.items()}
    off = o["offset"].clone()
    off[:, k] = 1 - off[:, k]
    rot = o["rot"].clone()
    rot[:, 0 if axis == "y" else 1] *= -1  # y: sin -> -sin; x: cos -> -cos
    return {**o, "offset": off, "rot": rot}


def flip_tta(model: nn.Module, occ: Tensor) -> dict[str, Tensor]:
    """Test-time augmentation: the model on the scan and on its y-mirror, maps averaged (heatmap as
    probabilities, returned as logits): each box's position, size and heading become the mean of the two
    passes' estimates, which evens out left-right biases of the learned filters."""
    a, b = model(occ), unflip(model(occ.flip(-2)), "y")
    p = (a["heatmap"].sigmoid() + b["heatmap"].sigmoid()) / 2
    out = {k: (a[k] + b[k]) / 2 for k in a if k != "heatmap"}
    return {"heatmap": torch.logit(p.clamp(1e-6, 1 - 1e-6)), **out}


@dataclass
class Detections:
    """Boxes ``[K, 7]`` (LiDAR ``x, y, z_center, l, w, h, yaw``), class names and scores, best first."""

    boxes: np.ndarray
    classes: list[str]
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def filter(self, score_threshold: float) -> "Detections":
        k = self.scores >= score_threshold
        return Detections(self.boxes[k], [c for c, kk in zip(self.classes, k) if kk], self.scores[k])

    def to_json(self) -> list[dict]:
        return [{"class": c, "score": round(float(s), 4),
                 "box_lidar": [round(float(v), 4) for v in b], "box_format": "x y z_center l w h yaw (LiDAR, m, rad)"}
                for b, c, s in zip(self.boxes, self.classes, self.scores)]


def decode(out: dict[str, Tensor], grid: VoxelGrid, stride: int = 2, top_k: int = 100, score_threshold: float = 0.05,
           nms_iou: float = 0.1) -> list[Detections]:
    """Max-pool peaks -> top-k -> boxes in metres -> per-class rotated BEV NMS, one result per scan."""
    heat = out["heatmap"].sigmoid()
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    b, c, h, w = heat.shape
    cell = grid.voxel_size * stride
    reg = regression_map(out).reshape(b, 8, h * w)
    results = []
    for i in range(b):
        s, idx = peaks[i].reshape(-1).topk(min(top_k, c * h * w))
        keep = s >= score_threshold
        s, idx = s[keep], idx[keep]
        cls, pix = idx // (h * w), idx % (h * w)
        r = reg[i][:, pix].T.double().numpy()  # [K, 8]
        iy, ix = (pix // w).double().numpy(), (pix % w).double().numpy()
        boxes = np.stack([grid.x_range[0] + (ix + r[:, 0]) * cell, grid.y_range[0] + (iy + r[:, 1]) * cell, r[:, 2],
                          *np.exp(np.clip(r[:, 3:6], -3, 3)).T, np.arctan2(r[:, 6], r[:, 7])], 1).reshape(-1, 7)
        s, cls = s.double().numpy(), cls.numpy()
        kept = []
        for k in range(c):
            sel = np.nonzero(cls == k)[0]
            kept.extend(sel[nms_bev(boxes[sel], s[sel], nms_iou)].tolist())
        kept = np.array(sorted(kept, key=lambda j: -s[j]), dtype=np.int64)
        results.append(Detections(boxes[kept], [CLASSES[j] for j in cls[kept]], s[kept]))
    return results
