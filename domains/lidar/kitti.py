"""KITTI 3-D object labels (``label_2``) and calibration (``calib``): read, write, convert, project.

Frames: LiDAR (Velodyne: x forward, y left, z up, metres) and rectified camera 2 (x right,
y down, z forward). A KITTI label gives the camera box bottom-centre ``(x, y, z)``, size
``h, w, l`` and yaw ``ry`` about camera y. The LiDAR box follows OpenPCDet:
``[x, y, z_center, l, w, h, heading]`` with heading = -ry - pi/2. The centre is, by default,
the exact geometric centre (bottom centre raised by h/2 along the *camera* -y axis, then mapped
to LiDAR), which is what the shipped ``boxes_lidar.json`` holds; ``lift="lidar_z"`` gives
OpenPCDet's approximation (bottom centre mapped to LiDAR, then z += h/2). The two differ by
up to ~1.5 cm in x/y on KITTI because R0_rect and Tr_velo_to_cam tilt camera y by ~0.01 rad.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from maskworks.core.io import InputError

from .boxes import boxes_to_corners

Lift = Literal["camera", "lidar_z"]
_CALIB_ALIASES = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam", "Tr_imu_velo": "Tr_imu_to_velo"}


@dataclass
class KittiObject:
    """One ``label_2`` line. Sizes in metres, angles in radians, bbox in pixels (x1, y1, x2, y2)."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]
    dimensions: tuple[float, float, float]  # h, w, l
    location: tuple[float, float, float]  # bottom centre in rectified camera frame
    rotation_y: float
    score: float | None = None

    @property
    def camera_box(self) -> np.ndarray:
        """OpenPCDet camera box ``[x, y, z, l, h, w, ry]``."""
        h, w, l = self.dimensions
        return np.array([*self.location, l, h, w, self.rotation_y], dtype=np.float64)


def read_label(path: str | Path) -> list[KittiObject]:
    """Parse a KITTI ``label_2`` file (15 values per line, 16 with a detection score)."""
    path = Path(path)
    objects = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        tok = line.split()
        if not tok:
            continue
        if len(tok) not in (15, 16):
            raise InputError(path, f"line {ln} has {len(tok)} fields, a KITTI label needs 15 (16 with score)",
                                 "check the file is a KITTI label_2 file")
        try:
            v = [float(t) for t in tok[1:]]
        except ValueError as e:
            raise InputError(path, f"line {ln}: {e}", "label values after the class must be numbers") from None
        if not all(math.isfinite(x) for x in v):
            raise InputError(path, f"line {ln} holds a NaN or infinite value", "KITTI marks unknown values with "
                             "-1 / -10 / -1000, never NaN or inf: fix or drop the line")
        objects.append(KittiObject(tok[0], v[0], int(v[1]), v[2], tuple(v[3:7]), tuple(v[7:10]),
                                   tuple(v[10:13]), v[13], v[14] if len(v) == 15 else None))
    return objects


def write_label(path: str | Path, objects: list[KittiObject], *, precision: int = 2) -> Path:
    """Write objects in KITTI ``label_2`` layout (``precision`` decimals, as the dataset uses)."""
    path = Path(path)
    f = f"{{:.{precision}f}}"
    lines = []
    for o in objects:
        vals = [o.type, f.format(o.truncated), str(int(o.occluded)), f.format(o.alpha),
                *(f.format(x) for x in (*o.bbox, *o.dimensions, *o.location, o.rotation_y))]
        if o.score is not None:
            vals.append(f"{o.score:.4f}")
        lines.append(" ".join(vals))
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


@dataclass
class KittiCalib:
    """Calibration of one frame: projections ``P0..P3`` [3, 4], ``R0_rect`` [3, 3], ``Tr_velo_to_cam`` [3, 4]."""

    P: dict[int, np.ndarray]
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray
    Tr_imu_to_velo: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def P2(self) -> np.ndarray:
        return self.P[2]

    def _velo_to_rect(self) -> np.ndarray:
        """4x4 homogeneous LiDAR -> rectified camera transform (R0_rect @ Tr_velo_to_cam)."""
        r0 = np.eye(4)
        r0[:3, :3] = self.R0_rect
        v2c = np.eye(4)
        v2c[:3, :] = self.Tr_velo_to_cam
        return r0 @ v2c

    def lidar_to_rect(self, pts: np.ndarray) -> np.ndarray:
        """LiDAR points [N, 3] -> rectified camera frame [N, 3]."""
        pts = np.asarray(pts, dtype=np.float64)[:, :3]
        t = self._velo_to_rect()
        return pts @ t[:3, :3].T + t[:3, 3]

    def rect_to_lidar(self, pts: np.ndarray) -> np.ndarray:
        """Rectified camera points [N, 3] -> LiDAR frame [N, 3] (exact inverse of lidar_to_rect)."""
        pts = np.asarray(pts, dtype=np.float64)[:, :3]
        inv = np.linalg.inv(self._velo_to_rect())
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def rect_to_image(self, pts: np.ndarray, cam: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Project rectified camera points with ``P{cam}``: (pixels [N, 2], depth [N])."""
        pts = np.asarray(pts, dtype=np.float64)[:, :3]
        hom = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ self.P[cam].T
        depth = hom[:, 2]
        return hom[:, :2] / depth[:, None], depth - self.P[cam][2, 3]


def read_calib(path: str | Path) -> KittiCalib:
    """Parse a KITTI ``calib`` file (``key: 12 or 9 numbers`` per line)."""
    path = Path(path)
    mats: dict[str, np.ndarray] = {}
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        if ":" not in line:
            continue
        key, vals = line.split(":", 1)
        key = _CALIB_ALIASES.get(key.strip(), key.strip())
        try:
            arr = np.array([float(v) for v in vals.split()], dtype=np.float64)
        except ValueError as e:
            raise InputError(path, f"line {ln} ({key}): {e}", "calibration values must be numbers") from None
        if not np.isfinite(arr).all():
            raise InputError(path, f"line {ln} ({key}) holds a NaN or infinite value", "calibration values must be finite")
        if arr.size == 12:
            mats[key] = arr.reshape(3, 4)
        elif arr.size == 9:
            mats[key] = arr.reshape(3, 3)
        else:
            raise InputError(path, f"line {ln} ({key}) has {arr.size} numbers, expected 12 (3x4) or 9 (3x3)",
                                 "check the file is a KITTI object calib file")
    missing = [k for k in ("P2", "R0_rect", "Tr_velo_to_cam") if k not in mats]
    if missing:
        raise InputError(path, f"missing calibration entries {missing}",
                             "a KITTI calib file needs P0-P3, R0_rect and Tr_velo_to_cam")
    for key in ("R0_rect", "Tr_velo_to_cam"):  # both are rotations (and are inverted to put labels into the scan)
        det = float(np.linalg.det(mats[key][:, :3]))
        if not abs(det - 1.0) < 0.1:
            raise InputError(path, f"{key} is not a rotation (its 3x3 part has determinant {det:.3g}, not 1)",
                             "check the file is the scan's KITTI calib file")
    P = {int(k[1]): mats.pop(k) for k in list(mats) if len(k) == 2 and k[0] == "P" and k[1].isdigit()}
    return KittiCalib(P, mats.pop("R0_rect"), mats.pop("Tr_velo_to_cam"), mats.pop("Tr_imu_to_velo", None), mats)


def write_calib(path: str | Path, calib: KittiCalib) -> Path:
    """Write a calib file in KITTI's layout (``%.12e``), readable by :func:`read_calib` and devkits."""
    path = Path(path)
    entries = [(f"P{i}", m) for i, m in sorted(calib.P.items())]
    entries += [("R0_rect", calib.R0_rect), ("Tr_velo_to_cam", calib.Tr_velo_to_cam)]
    if calib.Tr_imu_to_velo is not None:
        entries.append(("Tr_imu_to_velo", calib.Tr_imu_to_velo))
    entries += list(calib.extra.items())
    path.write_text("".join(f"{k}: " + " ".join(f"{v:.12e}" for v in np.ravel(m)) + "\n" for k, m in entries))
    return path


def boxes_camera_to_lidar(boxes_cam: np.ndarray, calib: KittiCalib, *, lift: Lift = "camera") -> np.ndarray:
    """Camera boxes [N, 7] ``(x, y, z, l, h, w, ry)`` -> LiDAR boxes [N, 7] ``(x, y, z_c, l, w, h, heading)``.

    ``lift``: raise the bottom centre by h/2 along camera -y before the transform (``"camera"``,
    exact centre, default) or along LiDAR +z after it (``"lidar_z"``, OpenPCDet).
    """
    b = np.asarray(boxes_cam, dtype=np.float64).reshape(-1, 7)
    l, h, w, ry = b[:, 3:4], b[:, 4:5], b[:, 5:6], b[:, 6:7]
    if lift == "camera":
        centre = b[:, :3].copy()
        centre[:, 1] -= b[:, 4] / 2  # camera y points down
        xyz = calib.rect_to_lidar(centre)
    elif lift == "lidar_z":
        xyz = calib.rect_to_lidar(b[:, :3])
        xyz[:, 2] += b[:, 4] / 2
    else:
        raise ValueError(f"lift must be 'camera' or 'lidar_z', got {lift!r}")
    return np.concatenate([xyz, l, w, h, -(ry + np.pi / 2)], axis=1)


def boxes_lidar_to_camera(boxes_lidar: np.ndarray, calib: KittiCalib, *, lift: Lift = "camera") -> np.ndarray:
    """Inverse of :func:`boxes_camera_to_lidar` with the same ``lift`` (ry wrapped to [-pi, pi))."""
    b = np.asarray(boxes_lidar, dtype=np.float64).reshape(-1, 7)
    l, w, h = b[:, 3:4], b[:, 4:5], b[:, 5:6]
    if lift == "camera":
        xyz = calib.lidar_to_rect(b[:, :3])
        xyz[:, 1] += b[:, 5] / 2
    elif lift == "lidar_z":
        bottom = b[:, :3].copy()
        bottom[:, 2] -= b[:, 5] / 2
        xyz = calib.lidar_to_rect(bottom)
    else:
        raise ValueError(f"lift must be 'camera' or 'lidar_z', got {lift!r}")
    ry = -b[:, 6:7] - np.pi / 2
    ry = (ry + np.pi) % (2 * np.pi) - np.pi
    return np.concatenate([xyz, l, h, w, ry], axis=1)


def labels_to_lidar_boxes(objects: list[KittiObject], calib: KittiCalib, *, skip: tuple[str, ...] = ("DontCare",),
                          lift: Lift = "camera") -> tuple[np.ndarray, list[str]]:
    """LiDAR boxes [N, 7] and class names for every label whose class is not in ``skip``."""
    kept = [o for o in objects if o.type not in skip]
    if not kept:
        return np.zeros((0, 7)), []
    return boxes_camera_to_lidar(np.stack([o.camera_box for o in kept]), calib, lift=lift), [o.type for o in kept]


_BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])


def project_boxes_to_image(boxes_lidar: np.ndarray, calib: KittiCalib, *,
                           image_shape: tuple[int, int] | None = None, cam: int = 2,
                           min_depth: float = 0.1) -> np.ndarray:
    """2-D boxes [N, 4] ``(x1, y1, x2, y2)`` enclosing the projected 3-D box.

    A box that crosses the plane ``min_depth`` metres in front of the camera (a car beside the sensor,
    half behind the camera) is cut there first: its 2-D box is that of the part in front, as KITTI's
    annotators drew it up to the image border. A box wholly behind that plane has no image: its row is NaN.
    Clipped to ``image_shape`` (height, width) when given.
    """
    corners = boxes_to_corners(boxes_lidar)  # [N, 8, 3]
    n = len(corners)
    rect = calib.lidar_to_rect(corners.reshape(-1, 3)).reshape(n, 8, 3)
    a, b = rect[:, _BOX_EDGES[:, 0]], rect[:, _BOX_EDGES[:, 1]]  # [N, 12, 3] edge ends
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - min_depth) * (zb - min_depth) < 0
    t = np.where(crosses, (min_depth - za) / np.where(crosses, zb - za, 1.0), 0.0)
    cut = a + t[..., None] * (b - a)  # where each crossing edge meets the plane
    pts = np.concatenate([rect, cut], 1)  # [N, 20, 3]
    valid = np.concatenate([rect[..., 2] >= min_depth, crosses], 1)
    uv, _ = calib.rect_to_image(np.where(valid[..., None], pts, [0.0, 0.0, 1.0]).reshape(-1, 3), cam=cam)
    uv = uv.reshape(n, 20, 2)
    lo = np.where(valid[..., None], uv, np.inf).min(1)
    hi = np.where(valid[..., None], uv, -np.inf).max(1)
    out = np.concatenate([lo, hi], axis=1)
    if image_shape is not None:
        h, w = image_shape
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, w - 1)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, h - 1)
    out[~valid.any(1)] = np.nan
    return out


IMAGE_SHAPE = (375, 1242)  # KITTI camera 2 (height, width); the images themselves are not shipped


def detections_to_objects(boxes: np.ndarray, classes: list[str], scores: np.ndarray,
                          calib: KittiCalib | None, image_shape: tuple[int, int] = IMAGE_SHAPE) -> list[KittiObject]:
    """LiDAR detections -> KITTI label objects (what ``label_2``-format result files hold).

    Without a calibration the 2-D box and alpha are unknown (written as -1 / -10, as KITTI does for
    unknown values) and the camera box uses an identity-free LiDAR->camera axis swap
    (x_cam = -y, y_cam = -z, z_cam = x), which is what KITTI's Velodyne->camera rotation is up to ~1 deg.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    if len(boxes) == 0:
        return []
    if calib is not None:
        cam = boxes_lidar_to_camera(boxes, calib)
        bb = project_boxes_to_image(boxes, calib, image_shape=image_shape)
    else:
        cam = np.stack([-boxes[:, 1], -(boxes[:, 2] - boxes[:, 5] / 2), boxes[:, 0], boxes[:, 3], boxes[:, 5],
                        boxes[:, 4], -boxes[:, 6] - np.pi / 2], 1)
        cam[:, 6] = (cam[:, 6] + np.pi) % (2 * np.pi) - np.pi
        bb = np.full((len(boxes), 4), np.nan)
    out = []
    for c, b, cls, s in zip(cam, bb, classes, scores):
        alpha = float(c[6] - np.arctan2(c[0], c[2])) if calib is not None else -10.0
        bbox = tuple(float(v) for v in b) if np.isfinite(b).all() else (-1.0, -1.0, -1.0, -1.0)
        out.append(KittiObject(cls, 0.0, 0, alpha, bbox, (float(c[4]), float(c[5]), float(c[3])),
                               (float(c[0]), float(c[1]), float(c[2])), float(c[6]), float(s)))
    return out
