"""Point-space augmentation for training on real scans, as OpenPCDet does for KITTI:

- :func:`build_gt_database` + :func:`sample_objects`: ground-truth database sampling (OpenPCDet's ``gt_sampling``,
  from SECOND): the points of every labelled object of the training scans are kept, and each training scan gets
  objects of other scans pasted in up to a number per class, where they collide with no labelled box, standing
  on the ground the target scan shows there (OpenPCDet uses road planes for this), the target's points in their
  footprint removed. KITTI objects keep their place (all KITTI frames share one camera view); objects from
  360-degree scans are turned about the sensor, into the camera's view when the target is a camera-view crop,
  so their range and visible side stay physical.
- :func:`noise_objects`: each object moved (N(0, ``loc_std``) in x, y) and turned about its centre, with its
  points, when it then collides with nothing (SECOND's per-object noise).
- :func:`global_transform`: mirror y, turn about the sensor, scale, shift z (OpenPCDet's ``random_world_*``).

Every draw comes from a ``numpy`` generator seeded by the caller (the item index), so a resumed run is identical.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..boxes import PointIndex
from ..ground import ground_under_boxes

CAMERA_HALF_FOV = np.deg2rad(38.0)  # KITTI camera 2: +-40.6 deg horizontally; objects are pasted a little inside


@dataclass
class GTObject:
    """One labelled object's points ``[n, 4]`` (scan coordinates) and box ``[7]``."""

    points: np.ndarray
    box: np.ndarray
    cls: str
    scan: str
    from_fov_scan: bool


def points_in_box_mask(points: np.ndarray, box: np.ndarray, grow: float = 0.0, z_lo: float | None = None,
                       z_hi: float | None = None) -> np.ndarray:
    """Bool ``[N]``: points inside ``box`` (its footprint grown by ``grow`` m on every side; heights from the box
    unless ``z_lo`` / ``z_hi`` are given). A square pre-filter keeps it cheap on 100k-point scans."""
    x, y, zc, l, w, h, yaw = (float(v) for v in box[:7])
    r = 0.5 * np.hypot(l, w) + grow
    near = (np.abs(points[:, 0] - x) <= r) & (np.abs(points[:, 1] - y) <= r)
    idx = np.nonzero(near)[0]
    p = points[idx]
    dx, dy = p[:, 0] - x, p[:, 1] - y
    c, s = np.cos(yaw), np.sin(yaw)
    lx, ly = dx * c + dy * s, -dx * s + dy * c
    lo = zc - h / 2 if z_lo is None else z_lo
    hi = zc + h / 2 if z_hi is None else z_hi
    ok = (np.abs(lx) <= l / 2 + grow) & (np.abs(ly) <= w / 2 + grow) & (p[:, 2] >= lo) & (p[:, 2] <= hi)
    out = np.zeros(len(points), bool)
    out[idx[ok]] = True
    return out


def count_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return np.array([int(points_in_box_mask(points, b).sum()) for b in np.asarray(boxes).reshape(-1, 7)], np.int64)


def mean_sizes(scans, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Mean (l, w, h) of each class's boxes over ``scans``."""
    out = {}
    for c in classes:
        b = np.array([bx[3:6] for s in scans for bx, cc in zip(s.boxes, s.classes) if cc == c]).reshape(-1, 3)
        if len(b):
            out[c] = b.mean(0)
    return out


def normalise_sizes(points: np.ndarray, boxes: np.ndarray, classes: list[str], delta: dict[str, np.ndarray],
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Statistical normalisation (Wang et al., "Train in Germany, Test in the USA", CVPR 2020): every box of a
    class in ``delta`` grows by its (l, w, h) difference, and the returns inside it are stretched with it (about
    its centre in x, y; from its bottom up in z, so it stays on the road). Argoverse 2 and PandaSet annotate cars
    0.5-0.6 m longer and 0.3 m wider than KITTI does; a detector trained on them as they are draws KITTI cars too
    long (measured: +0.5 m, docs/3d/detection.md)."""
    pts, out = points.copy(), np.asarray(boxes, float).reshape(-1, 7).copy()
    for i, c in enumerate(classes):
        if c not in delta:
            continue
        b = out[i]
        new = np.maximum(b[3:6] + delta[c], 0.2)
        m = points_in_box_mask(points, b)
        q = pts[m]
        cy, sy = np.cos(b[6]), np.sin(b[6])
        dx, dy = q[:, 0] - b[0], q[:, 1] - b[1]
        lx, ly = (dx * cy + dy * sy) * new[0] / b[3], (-dx * sy + dy * cy) * new[1] / b[4]
        bottom = b[2] - b[5] / 2
        q[:, 0], q[:, 1] = b[0] + lx * cy - ly * sy, b[1] + lx * sy + ly * cy
        q[:, 2] = bottom + (q[:, 2] - bottom) * new[2] / b[5]
        pts[m] = q
        out[i, 3:6] = new
        out[i, 2] = bottom + new[2] / 2
    return pts, out


def build_gt_database(scans, classes: tuple[str, ...], min_points: int = 5) -> list[GTObject]:
    """Objects of ``classes`` with at least ``min_points`` returns in the ``scans`` (:class:`~..real_data.RealScan`)."""
    db = []
    for s in scans:
        for box, cls in zip(s.boxes, s.classes):
            if cls not in classes:
                continue
            m = points_in_box_mask(s.points, box)
            if m.sum() >= min_points:
                db.append(GTObject(s.points[m].copy(), np.asarray(box, float).copy(), cls, s.name, s.fov_only))
    return db


def rotate_about_sensor(points: np.ndarray, boxes: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[N, >=3]`` and boxes ``[M, 7]`` turned by ``theta`` about the sensor's z axis (copies)."""
    c, s = np.cos(theta), np.sin(theta)
    p, b = points.copy(), np.asarray(boxes, float).reshape(-1, 7).copy()
    p[:, 0], p[:, 1] = c * points[:, 0] - s * points[:, 1], s * points[:, 0] + c * points[:, 1]
    b[:, 0], b[:, 1] = c * boxes[:, 0] - s * boxes[:, 1], s * boxes[:, 0] + c * boxes[:, 1]
    b[:, 6] = b[:, 6] + theta
    return p, b


def _collides(box: np.ndarray, boxes: np.ndarray, margin: float = 0.2) -> bool:
    """Conservative BEV test by circumscribed circles (no overlap of the circles grown by ``margin``)."""
    if len(boxes) == 0:
        return False
    r = 0.5 * np.hypot(box[3], box[4])
    rr = 0.5 * np.hypot(boxes[:, 3], boxes[:, 4])
    return bool((np.hypot(boxes[:, 0] - box[0], boxes[:, 1] - box[1]) < r + rr + margin).any())


def sample_objects(points: np.ndarray, boxes: np.ndarray, classes: list[str], db: list[GTObject],
                   per_class: dict[str, int], rng: np.random.Generator, scan_name: str = "", fov_only: bool = True,
                   grid_xy: tuple[float, float, float, float] = (0.0, 70.4, -40.0, 40.0)
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Paste database objects into a scan until each class of ``per_class`` has that many labelled objects
    (OpenPCDet's ``SAMPLE_GROUPS``); returns new (points, boxes, classes). Objects from the same scan are not
    drawn; ``grid_xy`` (x0, x1, y0, y1) bounds where pasted centres may land."""
    boxes = np.asarray(boxes, float).reshape(-1, 7)
    classes = list(classes)
    by_class: dict[str, list[int]] = {}
    for k, o in enumerate(db):
        if o.scan != scan_name:
            by_class.setdefault(o.cls, []).append(k)
    index = None
    new_pts, new_boxes, new_cls = [], [], []
    for cls, target in per_class.items():
        need = target - sum(c == cls for c in classes)
        pool = by_class.get(cls, [])
        if need <= 0 or not pool:
            continue
        for k in rng.choice(pool, size=min(len(pool), 2 * need), replace=False):
            if need <= 0:
                break
            o = db[int(k)]
            p, b = o.points, o.box[None]
            if not (o.from_fov_scan and fov_only):
                r, az = np.hypot(*o.box[:2]), np.arctan2(o.box[1], o.box[0])
                new_az = rng.uniform(-CAMERA_HALF_FOV, CAMERA_HALF_FOV) if fov_only else rng.uniform(-np.pi, np.pi)
                if fov_only and r < 3.0:
                    continue
                p, b = rotate_about_sensor(p, b, float(new_az - az))
            b = b[0].copy()
            if not (grid_xy[0] < b[0] < grid_xy[1] and grid_xy[2] < b[1] < grid_xy[3]):
                continue
            if _collides(b, boxes) or _collides(b, np.array(new_boxes).reshape(-1, 7)):
                continue
            if index is None:
                index = PointIndex(points)
            ground = ground_under_boxes(index, b[None])[0]
            p = p.copy()
            if np.isfinite(ground):
                dz = ground - (b[2] - b[5] / 2)
                if abs(dz) > 1.0:  # the ring holds a wall or a slope the object would float over: skip it
                    continue
                p[:, 2] += dz
                b[2] += dz
            new_pts.append(p)
            new_boxes.append(b)
            new_cls.append(cls)
            need -= 1
    if not new_boxes:
        return points, boxes, classes
    keep = np.ones(len(points), bool)
    for b in new_boxes:  # clear the footprint above the road (the road itself stays under the object)
        keep &= ~points_in_box_mask(points, b, grow=0.1, z_lo=b[2] - b[5] / 2 + 0.15, z_hi=np.inf)
    pts = np.concatenate([points[keep]] + [q[:, :points.shape[1]] for q in new_pts]).astype(points.dtype)
    return pts, np.concatenate([boxes, np.array(new_boxes)]), classes + new_cls


def noise_objects(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, loc_std: float = 0.25,
                  max_turn: float = np.pi / 12, movable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move each ``movable`` box (default all) by N(0, ``loc_std``) in x and y and turn it by U(-max_turn,
    max_turn) about its centre, with the points inside, unless the moved box would meet another (copies)."""
    pts, out = points.copy(), np.asarray(boxes, float).reshape(-1, 7).copy()
    for i in range(len(out)):
        d = rng.normal(0, loc_std, 2)
        t = float(rng.uniform(-max_turn, max_turn))
        if movable is not None and not movable[i]:
            continue
        b = out[i].copy()
        b[:2] += d
        b[6] += t
        others = np.delete(out, i, 0)
        if _collides(b, others, margin=0.1):
            continue
        m = points_in_box_mask(pts, out[i])
        q = pts[m]
        c, s = np.cos(t), np.sin(t)
        x, y = q[:, 0] - out[i, 0], q[:, 1] - out[i, 1]
        q[:, 0], q[:, 1] = c * x - s * y + b[0], s * x + c * y + b[1]
        pts[m] = q
        out[i] = b
    return pts, out


def global_transform(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, flip: bool = True,
                     max_turn: float = np.pi / 4, scale: tuple[float, float] = (0.95, 1.05),
                     z_shift: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Mirror y (p = 0.5), turn by U(-max_turn, max_turn) about the sensor, scale by U(scale), shift z by
    U(-z_shift, z_shift) (the road's height under the sensor differs between cars and sensors)."""
    p, b = points.copy(), np.asarray(boxes, float).reshape(-1, 7).copy()
    if flip and rng.random() < 0.5:
        p[:, 1] *= -1
        b[:, 1] *= -1
        b[:, 6] *= -1
    p, b = rotate_about_sensor(p, b, float(rng.uniform(-max_turn, max_turn)))
    f = float(rng.uniform(*scale))
    p[:, :3] *= f
    b[:, :6] *= f
    dz = float(rng.uniform(-z_shift, z_shift))
    p[:, 2] += dz
    b[:, 2] += dz
    return p, b
