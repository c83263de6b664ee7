"""Voxelisation of a LiDAR scan on a fixed metric grid (numpy; no sparse-conv library needed).

Default grid (R-MAE / SECOND-like, coarsened for CPU): x, y in [-40, 40) m, z in [-3, 1) m,
0.4 m cubic voxels -> ``(nz, ny, nx) = (10, 200, 200)``, sensor at the grid's x-y centre.
Arrays are indexed ``[z, y, x]`` so that height can become the channel axis of a BEV network.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoxelGrid:
    x_range: tuple[float, float] = (-40.0, 40.0)
    y_range: tuple[float, float] = (-40.0, 40.0)
    z_range: tuple[float, float] = (-3.0, 1.0)
    voxel_size: float = 0.4

    def __post_init__(self) -> None:
        for lo, hi in (self.x_range, self.y_range, self.z_range):
            n = (hi - lo) / self.voxel_size
            if hi <= lo or abs(n - round(n)) > 1e-6:
                raise ValueError(f"range ({lo}, {hi}) must be increasing and a whole number of "
                                 f"{self.voxel_size} m voxels")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(nz, ny, nx)``."""
        return tuple(int(round((hi - lo) / self.voxel_size)) for lo, hi in (self.z_range, self.y_range, self.x_range))

    def index(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer ``[N, 3]`` (iz, iy, ix) of each point and a bool ``[N]`` for points inside the grid."""
        p = np.asarray(points, dtype=np.float64)[:, :3]
        lo = np.array([self.z_range[0], self.y_range[0], self.x_range[0]])
        idx = np.floor((p[:, ::-1] - lo) / self.voxel_size).astype(np.int64)
        inside = ((idx >= 0) & (idx < np.array(self.shape))).all(axis=1)
        return idx, inside

    def counts(self, points: np.ndarray) -> np.ndarray:
        """Points per voxel, int64 ``(nz, ny, nx)`` (points outside the grid are dropped)."""
        idx, inside = self.index(points)
        flat = np.ravel_multi_index(idx[inside].T, self.shape)
        return np.bincount(flat, minlength=int(np.prod(self.shape))).reshape(self.shape)

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        """Bool ``(nz, ny, nx)``: a voxel is occupied when at least one point falls in it."""
        return self.counts(points) > 0

    def centers(self, idx: np.ndarray) -> np.ndarray:
        """Voxel centres in metres ``[N, 3]`` (x, y, z) of integer (iz, iy, ix) indices ``[N, 3]``."""
        idx = np.asarray(idx)
        lo = np.array([self.x_range[0], self.y_range[0], self.z_range[0]])
        return lo + (idx[:, ::-1] + 0.5) * self.voxel_size
