"""Raw LiDAR scan readers/writers (KITTI ``.bin``, nuScenes ``.pcd.bin``) as plain float32 arrays.

Frame: the sensor's, in metres, x forward, y left, z up (KITTI Velodyne HDL-64E, nuScenes
LIDAR_TOP). This domain keeps its own 3-line readers so it never imports ``points``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_MAX_POINTS = 2_000_000


class LidarDataError(ValueError):
    """A LiDAR/label/calibration file cannot be used; the message names the file, the problem and a fix."""

    def __init__(self, source: object, problem: str, fix: str = "") -> None:
        self.source = str(source)
        super().__init__(f"{source}: {problem}" + (f". Fix: {fix}" if fix else ""))


def _read_records(path: str | Path, ncols: int, layout: str, drop_nan: bool, max_points: int | None) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise LidarDataError(path, "no such file", "check the path")
    size = path.stat().st_size
    if size == 0 or size % (4 * ncols):
        raise LidarDataError(path, f"{size:,} bytes is not a positive multiple of {4 * ncols} ({layout})",
                             "the file is truncated or is another format (KITTI has 4 floats, nuScenes 5)")
    if max_points is not None and size // (4 * ncols) > max_points:
        raise LidarDataError(path, f"{size // (4 * ncols):,} points exceed the cap of {max_points:,}",
                             "pass max_points=None or crop the scan")
    pts = np.fromfile(path, dtype="<f4").reshape(-1, ncols)
    bad = ~np.isfinite(pts[:, :3]).all(axis=1)
    if bad.any():
        if not drop_nan:
            raise LidarDataError(path, f"{int(bad.sum())} points have NaN/inf coordinates", "pass drop_nan=True")
        pts = pts[~bad]
        if len(pts) == 0:
            raise LidarDataError(path, "no finite points left", "check the file")
    return pts


def read_kitti_bin(path: str | Path, *, drop_nan: bool = False,
                   max_points: int | None = DEFAULT_MAX_POINTS) -> np.ndarray:
    """KITTI Velodyne scan -> float32 [N, 4] (x, y, z, reflectance in [0, 1])."""
    return _read_records(path, 4, "x, y, z, reflectance float32", drop_nan, max_points)


def read_nuscenes_bin(path: str | Path, *, drop_nan: bool = False,
                      max_points: int | None = DEFAULT_MAX_POINTS) -> np.ndarray:
    """nuScenes LIDAR_TOP sweep -> float32 [N, 5] (x, y, z, intensity 0-255, ring index)."""
    return _read_records(path, 5, "x, y, z, intensity, ring float32", drop_nan, max_points)


def write_kitti_bin(path: str | Path, points: np.ndarray) -> Path:
    """Write [N, 4] (x, y, z, reflectance) as a KITTI ``.bin`` (little-endian float32)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 4:
        raise LidarDataError(path, f"points must be [N, 4], got {list(points.shape)}",
                             "append a reflectance column (zeros if unknown)")
    path = Path(path)
    points.astype("<f4").tofile(path)
    return path
