"""Fit detected cars to their own returns: heading from the L-shape of the points, position from the
faces the sensor sees.

Why: the detector reads a car from 0.8 m cells of simulated occupancy, so on a real car its heading can
be 20° off (KITTI 000002's held-out car) and its centre tenths of a metre off, which is what keeps BEV IoU
below KITTI's 0.7. A car's returns trace the faces turned to the sensor: their L (or I) shape gives the
heading up to quarter turns (Zhang et al., "Efficient L-Shape Fitting for Vehicle Detection Using Laser
Scanners", 2017, closeness criterion), and the outermost returns towards the sensor are where the box's
near faces are. The detector's size is kept (the far faces are not seen). A car is left as detected
where it has too few returns, or where the fit would turn it by more than ``MAX_TURN`` or move it by more
than ``MAX_MOVE`` (a neighbour or a wall in the search window, not the car's outline).
Settings were chosen on held-out simulated scenes (docs/3d/detection.md, round 5), not on real labels.
"""
from __future__ import annotations

import numpy as np

from .boxes import PointIndex, points_in_rotated_box

SEARCH_MARGIN = 1.0  # metres added to the length and width when gathering the returns for the heading
FACE_MARGIN = 0.2  # metres added when gathering the returns that place the near faces
GROUND_CLEARANCE = 0.3  # metres above the box bottom: lower returns may be road
MIN_POINTS = 20
MAX_TURN = np.radians(30.0)
MAX_MOVE = 1.0  # metres


def closeness_heading(xy: np.ndarray, step_deg: float = 1.0, d0: float = 0.01) -> float:
    """Heading in ``[0, pi/2)`` of the rectangle that best hugs the points ``[N, 2]``: for each candidate
    angle, every point scores ``1 / max(distance to the nearest edge of the bounding rectangle, d0)``."""
    xy = np.asarray(xy, dtype=np.float64)
    th = np.radians(np.arange(0.0, 90.0, step_deg))
    c1 = xy @ np.stack([np.cos(th), np.sin(th)])  # [N, A]
    c2 = xy @ np.stack([-np.sin(th), np.cos(th)])
    d1 = np.minimum(c1.max(0) - c1, c1 - c1.min(0))
    d2 = np.minimum(c2.max(0) - c2, c2 - c2.min(0))
    score = (1.0 / np.maximum(np.minimum(d1, d2), d0)).sum(0)
    return float(th[int(np.argmax(score))])


def _column(box: np.ndarray, margin: float, yaw: float | None = None) -> np.ndarray:
    col = box.copy()
    col[3:5] += margin
    col[5] = np.inf
    if yaw is not None:
        col[6] = yaw
    return col


def fit_car(points: np.ndarray, box: np.ndarray, search_margin: float = SEARCH_MARGIN, face_margin: float = FACE_MARGIN,
            min_points: int = MIN_POINTS, max_turn: float = MAX_TURN, max_move: float = MAX_MOVE) -> np.ndarray:
    """One car box ``[7]`` (LiDAR ``x, y, z_center, l, w, h, yaw``) fitted to the returns ``[N, >=3]``."""
    box = np.asarray(box, dtype=np.float64).copy()
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    pts = pts[pts[:, 2] > box[2] - box[5] / 2 + GROUND_CLEARANCE]
    near = pts[points_in_rotated_box(pts, _column(box, search_margin)[None])[0]] if len(pts) else pts
    if len(near) < min_points:
        return box
    cands = closeness_heading(near[:, :2]) + np.arange(4) * np.pi / 2
    turn = np.angle(np.exp(1j * (cands - box[6])))
    k = int(np.argmin(np.abs(turn)))
    if abs(turn[k]) > max_turn:
        return box
    yaw = box[6] + turn[k]
    own = near[points_in_rotated_box(near, _column(box, face_margin, yaw)[None])[0]]
    box[6] = yaw
    if len(own) < min_points:
        return box
    centre = box[:2].copy()
    for axis, half in ((np.array([np.cos(yaw), np.sin(yaw)]), box[3] / 2), (np.array([-np.sin(yaw), np.cos(yaw)]), box[4] / 2)):
        towards = -np.sign(centre @ axis) or 1.0  # along this axis, the sensor's side of the box
        reach = float(((own[:, :2] - box[:2]) @ axis * towards).max())  # the outermost return on that side
        centre += towards * (reach - half) * axis
    if np.hypot(*(centre - box[:2])) < max_move:
        box[:2] = centre
    return box


def fit_cars(points: np.ndarray | PointIndex, boxes: np.ndarray, classes: list[str], **kw) -> np.ndarray:
    """Copy of ``boxes`` with every ``Car`` fitted to its returns (:func:`fit_car`); other classes unchanged."""
    out = np.array(boxes, dtype=np.float64).reshape(-1, 7)
    if "Car" not in classes:
        return out
    index = PointIndex.of(points)
    reach = kw.get("search_margin", SEARCH_MARGIN) + kw.get("max_move", MAX_MOVE)
    for i, c in enumerate(classes):
        if c == "Car":
            r = 0.5 * float(np.hypot(out[i, 3], out[i, 4])) + reach
            out[i] = fit_car(index.around(out[i, 0], out[i, 1], r), out[i], **kw)
    return out
