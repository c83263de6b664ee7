"""LiDAR scans as arrays: ``[N, 4]`` float32 (x, y, z in metres, intensity in [0, 1]), from any point file.

KITTI ``.bin`` reflectance is already in [0, 1]; nuScenes ``.pcd.bin`` intensity (0-255) is divided by 255; other
formats give their ``intensity`` field scaled the same way (or zeros without one). Points with NaN/inf
coordinates are dropped and counted in the notes, so the user hears of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from maskworks.core.io.errors import InputError
from maskworks.core.io.points.cloud import DEFAULT_MAX_POINTS, PointCloud
from maskworks.core.io.points.readers import Format, read_points

#: what a scan may be read from (``.pcd.bin`` ends with ``.bin``)
SCAN_SUFFIXES = (".bin", ".pcd", ".ply", ".npy", ".npz", ".xyz", ".txt")


@dataclass
class Scan:
    points: np.ndarray  # [N, 4] float32: x, y, z, intensity in [0, 1]
    source: str
    format: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(len(self.points))


def intensity_01(cloud: PointCloud, fmt: str = "") -> np.ndarray:
    """The cloud's intensity in [0, 1]: KITTI's as is, nuScenes' / 255; other formats as is when at most 1,
    else / 255 (8-bit sensors); zeros without an intensity field."""
    v = cloud.features.get("intensity")
    if v is None:
        return np.zeros(len(cloud), np.float32)
    v = np.asarray(v, np.float32).reshape(len(cloud), -1)[:, 0]
    if fmt == "kitti":
        return v
    if fmt == "nuscenes":
        return v / 255.0
    top = float(np.max(v)) if len(v) else 0.0
    return v / 255.0 if top > 1.0 else v


def read_scan(path: str | Path, *, fmt: Format | None = None, max_points: int | None = DEFAULT_MAX_POINTS) -> Scan:
    """A LiDAR scan from any point file; NaN/inf points dropped (and noted); :class:`InputError` when unusable."""
    from maskworks.core.io.points.readers import detect_format

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file", "check the path")
    fmt = fmt or detect_format(path)
    cloud = read_points(path, fmt=fmt, nan_policy="drop", max_points=max_points)
    notes = []
    if cloud.num_nan_dropped:
        notes.append(f"{cloud.num_nan_dropped:,} points with NaN/inf coordinates were dropped.")
    pts = np.concatenate([cloud.xyz, intensity_01(cloud, fmt)[:, None]], 1).astype(np.float32)
    return Scan(pts, str(path), fmt, notes)


def write_kitti_bin(path: str | Path, points: np.ndarray) -> Path:
    """Write ``[N, 4]`` (x, y, z, reflectance) as a KITTI ``.bin`` (little-endian float32)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 4:
        raise InputError(path, f"points must be [N, 4], got {list(points.shape)}",
                         "append a reflectance column (zeros if unknown)")
    path = Path(path)
    points.astype("<f4").tofile(path)
    return path
