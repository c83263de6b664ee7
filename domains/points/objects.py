"""Real object clouds for pre-training and probing, built from the shipped 3-D subset.

* labelled objects: points inside every KITTI / nuScenes box of the shipped scans (classes mapped to
  car / pedestrian / barrier / other), used by the probe and (without labels) for pre-training;
* unlabelled clouds: PCL scans, shape samples and random cylinder crops of the LiDAR scans.

Every cloud is resampled to a fixed count (FPS when there are more points, random repeats when
fewer) and normalised to the unit sphere (Point-MAE's convention). Box geometry is re-implemented
here in a few lines because a domain never imports another (``lidar`` has the full version).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from maskworks.data import data_path
from torch import Tensor
from torch.utils.data import Dataset

from .grouping import farthest_point_sample
from maskworks.core.io.points import read_points

PROBE_CLASSES = ("car", "pedestrian", "barrier", "other")
_CLASS_MAP = {"car": "car", "pedestrian": "pedestrian", "barrier": "barrier"}


@dataclass
class LabelledObject:
    xyz: np.ndarray  # [n, 3] raw points in the LiDAR frame
    label: str  # one of PROBE_CLASSES
    source: str  # e.g. "kitti/000001 Car #1"


def probe_class(name: str) -> str:
    """KITTI / nuScenes class name -> car, pedestrian, barrier or other."""
    return _CLASS_MAP.get(name.lower(), "other")


def in_box(xyz: np.ndarray, box: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Points inside a ``[x, y, z_center, l, w, h, yaw]`` box grown by ``margin`` metres per side."""
    d = xyz[:, :3] - box[:3]
    c, s = np.cos(box[6]), np.sin(box[6])
    lx, ly = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
    half = np.asarray(box[3:6]) / 2 + margin
    return (np.abs(lx) <= half[0]) & (np.abs(ly) <= half[1]) & (np.abs(d[:, 2]) <= half[2])


@functools.lru_cache(maxsize=1)
def _scans() -> list[tuple[str, np.ndarray, list[tuple[str, np.ndarray]]]]:
    """(name, xyz, [(class, box)]) for every shipped LiDAR scan with box labels."""
    out = []
    kitti = json.loads(data_path("3d", "kitti", "boxes_lidar.json").read_text())
    for frame, objs in sorted(kitti.items()):
        xyz = read_points(data_path("3d", "kitti", "training", "velodyne", f"{frame}.bin")).xyz
        out.append((f"kitti/{frame}", xyz, [(o["type"], np.asarray(o["box_lidar"], float)) for o in objs]))
    nus = json.loads(data_path("3d", "nuscenes", "boxes_lidar.json").read_text())
    scan = next(Path(data_path("3d", "nuscenes")).glob("*.pcd.bin"))
    out.append(("nuscenes/0", read_points(scan).xyz,
                [(b["type"], np.asarray(b["box_lidar"], float)) for b in nus["boxes"] if not b["type"].startswith("ignored")]))
    return out


def labelled_objects(min_points: int = 5) -> list[LabelledObject]:
    """Points inside each labelled box of the shipped KITTI + nuScenes scans with >= ``min_points``."""
    objs = []
    for name, xyz, boxes in _scans():
        for i, (cls, box) in enumerate(boxes):
            pts = xyz[in_box(xyz, box)]
            if len(pts) >= min_points:
                objs.append(LabelledObject(pts, probe_class(cls), f"{name} {cls} #{i}"))
    return objs


def resample(xyz: np.ndarray | Tensor, n: int, seed: int = 0, pre_cap: int = 2048) -> Tensor:
    """Exactly ``n`` points: FPS if there are more (after a seeded random cap for speed), else repeats."""
    x = torch.as_tensor(np.asarray(xyz, dtype=np.float32)[:, :3])
    if len(x) == 0:
        raise ValueError("cannot resample an empty cloud")
    g = torch.Generator().manual_seed(seed)
    if len(x) > pre_cap:
        x = x[torch.randperm(len(x), generator=g)[:pre_cap]]
    if len(x) >= n:
        return x[farthest_point_sample(x, n, start_idx=0)]
    extra = torch.randint(len(x), (n - len(x),), generator=g)
    return torch.cat([x, x[extra]])


def normalize(x: Tensor) -> Tensor:
    """Centre on the centroid and scale into the unit sphere (``[..., N, 3]``)."""
    x = x - x.mean(-2, keepdim=True)
    return x / x.norm(dim=-1).amax(-1, keepdim=True).clamp_min(1e-6)[..., None]


def pcl_scan_paths(which: str = "all") -> list[Path]:
    """``all`` PCL scans, or ``small`` (those shipped with an ``.npy`` copy: no slow LZF decoding)."""
    if which not in ("all", "small", "none"):
        raise ValueError(f"pcl_scans must be all, small or none, got {which!r}")
    folder = data_path("3d", "pcl_scans")
    if which == "none":
        return []
    if which == "small":
        return sorted(folder.glob("*.npy"))
    return [p.with_suffix(".npy") if p.with_suffix(".npy").is_file() else p for p in sorted(folder.glob("*.pcd"))]


def unlabelled_clouds(num_points: int = 1024, scene_crops: int = 32, crop_radius: float = 2.5, seed: int = 0,
                      min_crop_points: int = 64, pcl_scans: str = "all") -> list[Tensor]:
    """PCL scans, shape samples and random cylinder crops (radius ``crop_radius`` m) of the LiDAR scans."""
    clouds = [resample(read_points(p).xyz, num_points, seed) for p in pcl_scan_paths(pcl_scans)]
    clouds += [resample(np.load(p), num_points, seed) for p in sorted(data_path("3d", "shapes").glob(f"*_{num_points}.npy"))
               if np.load(p).ndim == 2]
    rng = np.random.default_rng(seed)
    for name, xyz, _ in _scans():
        above = xyz[(xyz[:, 2] > -1.3) & (np.linalg.norm(xyz[:, :2], axis=1) < 40)]  # off the ground, near
        made = 0
        for c in above[rng.permutation(len(above))]:
            if made == scene_crops:
                break
            pts = xyz[np.linalg.norm(xyz[:, :2] - c[:2], axis=1) <= crop_radius]
            if len(pts) >= min_crop_points:
                clouds.append(resample(pts, num_points, seed + made))
                made += 1
    return clouds


class PretrainClouds(Dataset):
    """All shipped real clouds (labelled objects without labels + unlabelled), normalised, ``{"points": [N, 3]}``."""

    def __init__(self, num_points: int = 1024, scene_crops: int = 32, min_points: int = 5, seed: int = 0,
                 repeat: int = 1, pcl_scans: str = "all") -> None:
        objs = [resample(o.xyz, num_points, seed) for o in labelled_objects(min_points)]
        more = unlabelled_clouds(num_points, scene_crops, seed=seed, pcl_scans=pcl_scans)
        self.points = normalize(torch.stack(objs + more))
        self.repeat = int(repeat)  # tiny set: repeat it so one epoch holds several batches

    def __len__(self) -> int:
        return len(self.points) * self.repeat

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"points": self.points[i % len(self.points)]}


def augment(x: Tensor, u_global: Tensor, u_jitter: Tensor, scale: tuple[float, float] = (0.8, 1.2),
            jitter: float = 0.01) -> Tensor:
    """Rotation about z (uniform angle), isotropic scale and per-point jitter from uniform draws.

    ``u_global`` ``[B, >=2]`` (angle, scale), ``u_jitter`` ``[B, N, 3]``; all in [0, 1).
    """
    a = u_global[:, 0] * 2 * torch.pi
    c, s = torch.cos(a), torch.sin(a)
    rot = torch.zeros(len(x), 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1
    k = scale[0] + u_global[:, 1] * (scale[1] - scale[0])
    return (x @ rot.transpose(1, 2)) * k[:, None, None].to(x) + (u_jitter.to(x) * 2 - 1) * jitter
