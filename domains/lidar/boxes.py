"""3-D box geometry in the LiDAR frame (OpenPCDet convention), shared by KITTI and nuScenes.

A box is ``[x, y, z, dx, dy, dz, heading]``: centre (z is the box *centre*, not the bottom),
size along its own x (length), y (width), z (height) in metres, and heading = rotation about
+z, counter-clockwise from the LiDAR +x (forward) axis, in radians.
"""
from __future__ import annotations

import numpy as np

_TEMPLATE = np.array([[1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, 1, -1],
                      [1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1]], dtype=np.float64) / 2


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] < 7:
        raise ValueError(f"boxes must be [M, 7] (x, y, z, dx, dy, dz, heading), got {list(boxes.shape)}")
    return boxes


def boxes_to_corners(boxes: np.ndarray) -> np.ndarray:
    """Corners [M, 8, 3]: 0-3 bottom face, 4-7 top face (same order as OpenPCDet)."""
    boxes = _check_boxes(boxes)
    corners = boxes[:, None, 3:6] * _TEMPLATE[None]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    x = corners[..., 0] * c[:, None] - corners[..., 1] * s[:, None]
    y = corners[..., 0] * s[:, None] + corners[..., 1] * c[:, None]
    return np.stack([x, y, corners[..., 2]], axis=-1) + boxes[:, None, :3]


def points_in_rotated_box(points: np.ndarray, boxes: np.ndarray, *, chunk: int = 16) -> np.ndarray:
    """Boolean mask [M, N]: point n lies inside box m (boundaries inclusive).

    Points are rotated into each box's frame (by -heading about the box centre) and tested
    against half-sizes; only the first three point columns are used.
    """
    pts = np.asarray(points)[:, :3].astype(np.float64)
    boxes = _check_boxes(boxes)
    out = np.zeros((len(boxes), len(pts)), dtype=bool)
    for s in range(0, len(boxes), chunk):
        b = boxes[s:s + chunk]
        d = pts[None, :, :] - b[:, None, :3]  # [m, N, 3]
        c, sn = np.cos(b[:, 6])[:, None], np.sin(b[:, 6])[:, None]
        lx = d[..., 0] * c + d[..., 1] * sn
        ly = -d[..., 0] * sn + d[..., 1] * c
        half = b[:, None, 3:6] / 2
        out[s:s + chunk] = ((np.abs(lx) <= half[..., 0]) & (np.abs(ly) <= half[..., 1])
                            & (np.abs(d[..., 2]) <= half[..., 2]))
    return out


class PointIndex:
    """A scan's points (x, y, z as float64) sorted by x once, for repeated "returns around (x, y)" queries
    (one per detected box): each query reads a slice instead of scanning the whole scan."""

    def __init__(self, points: np.ndarray) -> None:
        pts = np.asarray(points, dtype=np.float64)[:, :3]
        self.points = pts[np.argsort(pts[:, 0], kind="stable")]

    @classmethod
    def of(cls, points: "np.ndarray | PointIndex") -> "PointIndex":
        return points if isinstance(points, PointIndex) else cls(points)

    def __len__(self) -> int:
        return len(self.points)

    def around(self, x: float, y: float, half: float) -> np.ndarray:
        """Points with ``|px - x| < half`` (to float precision of the slice) and ``|py - y| < half``."""
        lo, hi = np.searchsorted(self.points[:, 0], [x - half, x + half])
        near = self.points[lo:hi]
        return near[np.abs(near[:, 1] - y) < half]


def count_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Number of points inside each box, int64 [M]."""
    return points_in_rotated_box(points, boxes).sum(axis=1)
