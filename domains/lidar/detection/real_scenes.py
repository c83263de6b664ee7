"""Training items from real scans (round 8, issue #22): labelled KITTI frames of the training folds, the
Argoverse 2 / PandaSet samples moved into KITTI's frame and, optionally, simulated scenes; every item gets
ground-truth database sampling, per-object and global augmentation (:mod:`.augment`), then a square window
of the scene is cut around a labelled object (or a random return) and voxelised.

Why windows: the network is convolutional, so it learns the same from a 38 m window as from the whole 112 x 80 m
grid it runs on, at a third of the cost per item; centring windows on objects puts more of them in each step.
The window is translated to the origin (a translation the network cannot see) and its targets built there.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..real_data import RealScan
from ..voxel import VoxelGrid
from .augment import (
    build_gt_database,
    count_in_boxes,
    global_transform,
    mean_sizes,
    noise_objects,
    normalise_sizes,
    sample_objects,
)
from .inference import drop_ego_returns
from .model import CLASSES, MAX_OBJECTS

DEFAULT_SAMPLE = {"Car": 15, "Pedestrian": 8, "Cyclist": 8}


def window_grid(size: float, z_range: tuple[float, float], voxel_size: float) -> VoxelGrid:
    """A square training window of ``size`` metres centred on the origin."""
    h = size / 2
    return VoxelGrid((-h, h), (-h, h), tuple(z_range), voxel_size)


def simulated_scans(count: int, sim: dict | None, first_seed: int = 5000) -> list[RealScan]:
    """Simulator scenes as :class:`RealScan` (360 degrees, every object labelled)."""
    from ..simulator import simulate_scene, simulator_kwargs

    out = []
    for s in range(first_seed, first_seed + count):
        pts, boxes, cls = simulate_scene(s, **simulator_kwargs(sim, s))
        out.append(RealScan(f"sim/{s}", np.asarray(pts, np.float32), np.asarray(boxes, float), list(cls), "sim", False))
    return out


class WindowScans(Dataset):
    """Items ``{"occ": uint8 [nz, n, n], "boxes": float32 [64, 7], "labels": int64 [64]}`` on ``window``.

    ``scans`` are the training scans (each used ``repeat[source]`` times per pass, e.g. KITTI frames more often
    than simulated scenes); ``db_scans`` the scans whose objects feed the database (default: the real ones
    among ``scans``). Item ``i`` is augmented with a generator seeded by ``(seed, i)``; ``len`` is
    ``sum(repeats) x passes``, so each pass sees new draws."""

    def __init__(self, window: VoxelGrid, scans: list[RealScan], repeat: dict[str, int] | None = None,
                 passes: int = 1, seed: int = 0, sample: dict[str, int] | None = None, min_points: int = 5,
                 object_noise: bool = True, global_aug: bool = True, centre_on_object: float = 0.8,
                 db_scans: list[RealScan] | None = None, normalise: tuple[str, ...] = ("av2", "pandaset")) -> None:
        self.window, self.seed, self.min_points, self.passes = window, seed, min_points, passes
        self.sample = dict(DEFAULT_SAMPLE if sample is None else sample)
        self.object_noise, self.global_aug, self.centre_on_object = object_noise, global_aug, centre_on_object
        repeat = repeat or {}
        self.scans = [self._clean(s) for s in scans]
        self.size_delta = {}
        if normalise:  # foreign annotation conventions -> KITTI's mean object sizes (of the training frames)
            target = mean_sizes([s for s in self.scans if s.source == "kitti"], CLASSES)
            for src in normalise:
                own = mean_sizes([s for s in self.scans if s.source == src], CLASSES)
                self.size_delta[src] = {c: target[c] - own[c] for c in own if c in target}
            self.scans = [RealScan(s.name, *normalise_sizes(s.points, s.boxes, s.classes, self.size_delta[s.source]),
                                   s.classes, s.source, s.fov_only) if s.source in self.size_delta else s
                          for s in self.scans]
        self.order = [k for k, s in enumerate(self.scans) for _ in range(int(repeat.get(s.source, 1)))]
        if not self.order:
            raise ValueError("no training scans: give KITTI folders (data.kitti_dirs), extra scans or simulated scenes")
        real = [self._clean(s) for s in db_scans] if db_scans is not None else [s for s in self.scans if s.source != "sim"]
        self.db = build_gt_database(real, CLASSES, min_points) if self.sample else []

    def _clean(self, s: RealScan) -> RealScan:
        """Ego-vehicle returns dropped as at inference; boxes with fewer than ``min_points`` returns unlabelled
        (class "Other": still avoided when pasting)."""
        pts = drop_ego_returns(s.points)
        n = count_in_boxes(pts, s.boxes) if len(s.boxes) else np.zeros(0, int)
        classes = [c if (c not in CLASSES or k >= self.min_points) else "Other" for c, k in zip(s.classes, n)]
        return RealScan(s.name, pts, s.boxes, classes, s.source, s.fov_only)

    def __len__(self) -> int:
        return len(self.order) * self.passes

    def scene(self, i: int) -> RealScan:
        """Item ``i``'s augmented scan in sensor coordinates (before the window is cut)."""
        s = self.scans[self.order[i % len(self.order)]]
        rng = np.random.default_rng([self.seed, i, 22])
        pts, boxes, classes = s.points, s.boxes, list(s.classes)
        if self.db:
            pts, boxes, classes = sample_objects(pts, boxes, classes, self.db, self.sample, rng, s.name, s.fov_only,
                                                 (-70.4, 70.4, -40.0, 40.0) if not s.fov_only else (0.0, 70.4, -40.0, 40.0))
        if self.object_noise and len(boxes):
            pts, boxes = noise_objects(pts, boxes, rng, movable=np.array([c in CLASSES for c in classes]))
        if self.global_aug:
            pts, boxes = global_transform(pts, boxes, rng, max_turn=np.pi / 4 if s.fov_only else np.pi)
        return RealScan(s.name, pts, boxes, classes, s.source, s.fov_only)

    def item(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points, boxes, labels) of item ``i`` in window coordinates; labels index :data:`CLASSES`, -1 other."""
        s = self.scene(i)
        rng = np.random.default_rng([self.seed, i, 23])
        half = self.window.x_range[1]
        target = [k for k, c in enumerate(s.classes) if c in CLASSES]
        if target and rng.random() < self.centre_on_object:
            b = s.boxes[int(rng.choice(target))]
            centre = b[:2] + rng.uniform(-half / 2, half / 2, 2)
        else:
            centre = s.points[int(rng.integers(len(s.points))), :2].astype(float)
        centre = np.round(centre / self.window.voxel_size) * self.window.voxel_size
        pts = s.points.copy()
        pts[:, :2] -= centre
        boxes = s.boxes.copy()
        boxes[:, :2] -= centre
        labels = np.array([CLASSES.index(c) if c in CLASSES else -1 for c in s.classes], np.int64)
        inside = (np.abs(boxes[:, 0]) < half) & (np.abs(boxes[:, 1]) < half) if len(boxes) else np.zeros(0, bool)
        return pts, boxes[inside], labels[inside]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        pts, b, lab = self.item(i)
        order = np.argsort(lab < 0, kind="stable")[:MAX_OBJECTS]  # target classes first
        boxes = np.zeros((MAX_OBJECTS, 7), np.float32)
        labels = np.full(MAX_OBJECTS, -1, np.int64)
        boxes[:len(order)], labels[:len(order)] = b[order], lab[order]
        return {"occ": torch.from_numpy(self.window.occupancy(pts).astype(np.uint8)),
                "boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}
