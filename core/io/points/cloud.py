"""The in-memory point cloud every reader returns, and the error every reader raises."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from maskworks.core.io.errors import InputError

NanPolicy = Literal["drop", "raise", "keep"]
DEFAULT_MAX_POINTS = 2_000_000


@dataclass(eq=False)
class PointCloud:
    """Points plus optional per-point features.

    ``xyz`` is float32 ``[N, 3]`` in metres in the sensor/file frame (for KITTI and nuScenes
    LiDAR scans: x forward, y left, z up, origin at the LiDAR). ``features`` maps a name to an
    array whose first axis is N, e.g. ``intensity`` [N], ``normal`` [N, 3], ``rgb`` uint8 [N, 3].
    ``organized_shape`` is (height, width) for organised (image-like) PCD clouds; rows follow
    row-major pixel order only while ``num_nan_dropped == 0``.
    """

    xyz: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "<array>"
    organized_shape: tuple[int, int] | None = None
    num_nan_dropped: int = 0

    def __post_init__(self) -> None:
        xyz = np.asarray(self.xyz)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise InputError(self.source, f"xyz must have shape [N, 3], got {list(xyz.shape)}",
                                  "pass an array with exactly three columns x, y, z")
        self.xyz = np.ascontiguousarray(xyz, dtype=np.float32)
        for name, arr in self.features.items():
            arr = np.asarray(arr)
            if arr.shape[:1] != (len(self.xyz),):
                raise InputError(self.source, f"feature {name!r} has {arr.shape[0] if arr.ndim else 0} "
                                      f"rows but there are {len(self.xyz)} points",
                                      "give every feature one row per point")
            self.features[name] = arr

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def select(self, mask_or_index: np.ndarray) -> "PointCloud":
        """A new cloud with only the chosen points (features follow); organisation is dropped."""
        return PointCloud(self.xyz[mask_or_index], {k: v[mask_or_index] for k, v in self.features.items()},
                          source=self.source, organized_shape=None, num_nan_dropped=self.num_nan_dropped)


def finalize(xyz: np.ndarray, features: dict[str, np.ndarray], source: object, *,
             nan_policy: NanPolicy, max_points: int | None,
             organized_shape: tuple[int, int] | None = None) -> PointCloud:
    """Apply the shared checks (non-finite points, empty, too large) and build the cloud."""
    if nan_policy not in ("drop", "raise", "keep"):
        raise ValueError(f"nan_policy must be 'drop', 'raise' or 'keep', got {nan_policy!r}")
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise InputError(source, f"expected points of shape [N, 3], got {list(xyz.shape)}",
                              "check the file format / column layout")
    if max_points is not None and len(xyz) > max_points:
        raise InputError(source, f"{len(xyz):,} points exceed the cap of {max_points:,}",
                              "pass max_points=None (or a larger cap), or downsample the file first")
    bad = ~np.isfinite(xyz).all(axis=1)
    n_bad = int(bad.sum())
    dropped = 0
    if n_bad:
        if nan_policy == "raise":
            raise InputError(source, f"{n_bad:,} of {len(xyz):,} points have NaN/inf coordinates",
                                  "pass nan_policy='drop' to remove them (or 'keep' for organised clouds)")
        if nan_policy == "drop":
            keep = ~bad
            xyz = xyz[keep]
            features = {k: v[keep] for k, v in features.items()}
            dropped = n_bad
    if len(xyz) == 0:
        extra = f" after dropping {dropped:,} NaN/inf points" if dropped else ""
        raise InputError(source, f"the cloud is empty{extra}",
                              "check that the file holds points (and valid coordinates)")
    return PointCloud(xyz, features, source=str(source), organized_shape=organized_shape,
                      num_nan_dropped=dropped)
