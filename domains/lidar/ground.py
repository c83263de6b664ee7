"""Settle detected boxes on the ground the scan shows around them.

Why: the detector learns each box's height above the sensor from simulated scenes whose road is a flat
plane, so on a real road that rises or falls (KITTI 000002: the ground is 0.35 m lower at the labelled
car, 34 m out, than beside the sensor) its boxes float or sink by tenths of a metre, which is most of
what separates BEV IoU from 3-D IoU. Cars, pedestrians and cyclists stand on the ground, so their box
bottom can be read from the returns around them: a low percentile of the heights of the points in a
ring around the footprint (the box itself excluded) is the road there. Walls, hedges and other objects
in the ring are higher than the road and sit above the percentile; where the ring holds too few points,
or its estimate would move the box further than ``max_shift``, the box keeps the detector's height.
"""
from __future__ import annotations

import numpy as np

from .boxes import PointIndex, points_in_rotated_box

RING = 3.0  # metres beyond the footprint's half-diagonal
MARGIN = 0.3  # metres added around the footprint before excluding the box's own points
PERCENTILE = 10.0
MIN_POINTS = 8
MAX_SHIFT = 0.6  # metres


def ground_under_boxes(points: np.ndarray | PointIndex, boxes: np.ndarray, ring: float = RING, margin: float = MARGIN,
                       percentile: float = PERCENTILE, min_points: int = MIN_POINTS) -> np.ndarray:
    """``[K]`` ground height (LiDAR z) under each box ``[K, 7]`` (``x, y, z_center, l, w, h, yaw``), NaN
    where fewer than ``min_points`` returns lie in the ring around it."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    ground = np.full(len(boxes), np.nan)
    if len(boxes) == 0 or len(points) == 0:
        return ground
    index = PointIndex.of(points)
    for i, b in enumerate(boxes):
        radius = ring + 0.5 * float(np.hypot(b[3], b[4]))
        near = index.around(b[0], b[1], radius)
        near = near[np.hypot(near[:, 0] - b[0], near[:, 1] - b[1]) < radius]
        if len(near) < min_points:
            continue
        footprint = b.copy()
        footprint[3:5] += 2 * margin
        footprint[5] = np.inf  # a column: every height over the footprint belongs to the object
        ring_pts = near[~points_in_rotated_box(near, footprint[None])[0]]
        if len(ring_pts) >= min_points:
            ground[i] = np.percentile(ring_pts[:, 2], percentile)
    return ground


def settle_on_ground(points: np.ndarray | PointIndex, boxes: np.ndarray, max_shift: float = MAX_SHIFT, **ring_kw) -> np.ndarray:
    """Copy of ``boxes`` with each box's centre height set to ground + h / 2 where the ground under it
    is known and within ``max_shift`` of where the box already stands (:func:`ground_under_boxes`)."""
    out = np.array(boxes, dtype=np.float64).reshape(-1, 7)
    if len(out) == 0:
        return out
    z = ground_under_boxes(points, out, **ring_kw) + out[:, 5] / 2
    ok = np.isfinite(z) & (np.abs(z - out[:, 2]) <= max_shift)
    out[ok, 2] = z[ok]
    return out
