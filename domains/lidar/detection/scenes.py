"""Training scans. The real labelled data are tiny, so most supervision is simulated: :func:`~..simulator.simulate_scene`
scenes with real object crops pasted in (KITTI crops of the *training* frames and nuScenes boxes cut from the
shipped sweep, each rotated about the sensor so its range and visible side stay physical) plus the labelled
KITTI frames 000000-000001 (000002 is held out). Augmentation: y-flip and 90-degree rotations of the occupancy
grid (exact on the square grid), drawn with ``ctx.rand`` so a resumed run is identical."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..boxes import count_points_in_boxes, points_in_rotated_box
from ..simulator import simulator_kwargs
from ..voxel import VoxelGrid
from .model import CLASSES, GROUND_Z, MAX_OBJECTS, NUSCENES_TO_KITTI


@dataclass
class LabelledScan:
    points: np.ndarray  # [N, 4]
    boxes: np.ndarray  # [M, 7]
    labels: np.ndarray  # [M] class index
    name: str
    ground_z: float = GROUND_Z  # road height under the sensor (where pasted objects stand)


def kitti_frame(frame: str, root: Path | None = None) -> LabelledScan:
    """A shipped (or ``root``) KITTI frame with its Car / Pedestrian / Cyclist boxes in the LiDAR frame."""
    from maskworks.core.io.points import read_scan
    from maskworks.data import data_path

    from ..kitti import labels_to_lidar_boxes, read_calib, read_label

    root = root or data_path("3d", "kitti", "training")
    pts = read_scan(root / "velodyne" / f"{frame}.bin").points
    boxes, classes = labels_to_lidar_boxes(read_label(root / "label_2" / f"{frame}.txt"), read_calib(root / "calib" / f"{frame}.txt"))
    keep = [i for i, c in enumerate(classes) if c in CLASSES]
    return LabelledScan(pts, boxes[keep], np.array([CLASSES.index(classes[i]) for i in keep], np.int64), f"kitti/{frame}")


def object_bank(holdout: set[str], min_points: int = 5) -> list[tuple[np.ndarray, np.ndarray, int, str]]:
    """Real object crops (points ``[n, 4]``, box ``[7]``, class, source), bottoms moved onto ``GROUND_Z``.

    KITTI crops of the non-held-out frames (``kitti_objects/index.csv``) and nuScenes objects cut from
    the shipped sweep with ``nuscenes/boxes_lidar.json`` (car, pedestrian, bicycle -> Cyclist).
    """
    from maskworks.core.io.points import read_scan
    from maskworks.data import data_path

    bank = []
    root = data_path("3d", "kitti_objects")
    with open(root / "index.csv") as f:
        for row in csv.DictReader(f):
            if row["frame"] in holdout or row["class"] not in CLASSES or int(row["num_points"]) < min_points:
                continue
            box = np.array([float(row[k]) for k in ("x", "y", "z", "dx", "dy", "dz", "heading")])
            bank.append((np.load(root / row["file"]).astype(np.float32), box, CLASSES.index(row["class"]), f"kitti/{row['file']}"))
    nus = data_path("3d", "nuscenes")
    pts4 = read_scan(next(iter(sorted(nus.glob("*.pcd.bin"))))).points  # intensity / 255, as KITTI reflectance
    meta = json.loads((nus / "boxes_lidar.json").read_text())
    cand = [(np.array(o["box_lidar"], float), NUSCENES_TO_KITTI[o["type"]]) for o in meta["boxes"] if o["type"] in NUSCENES_TO_KITTI]
    if cand:
        inside = points_in_rotated_box(pts4, np.stack([b for b, _ in cand]))
        for (box, cls), m in zip(cand, inside):
            if m.sum() >= min_points:
                bank.append((pts4[m], box, CLASSES.index(cls), "nuscenes"))
    out = []
    for p, b, c, src in bank:
        dz = GROUND_Z - (b[2] - b[5] / 2)
        p = p.copy()
        p[:, 2] += dz
        b = b.copy()
        b[2] += dz
        out.append((p, b, c, src))
    return out


def rotate_about_sensor(points: np.ndarray, boxes: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate points ``[N, >=3]`` and boxes ``[M, 7]`` by ``theta`` about the sensor's z axis."""
    c, s = np.cos(theta), np.sin(theta)
    p, b = points.copy(), np.asarray(boxes, float).reshape(-1, 7).copy()
    p[:, 0], p[:, 1] = c * points[:, 0] - s * points[:, 1], s * points[:, 0] + c * points[:, 1]
    b[:, 0], b[:, 1] = c * boxes[:, 0] - s * boxes[:, 1], s * boxes[:, 0] + c * boxes[:, 1]
    b[:, 6] = boxes[:, 6] + theta
    return p, b


def move_away(points: np.ndarray, box: np.ndarray, factor: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Slide an object along the ray through its centre to ``factor`` x its range (``factor >= 1``).

    The sensor sees it from the same side, and its returns thin as ``1 / factor**2`` (the beams' angular
    spacing is fixed, so the number of hits falls with the square of the distance)."""
    if factor < 1:
        raise ValueError(f"move_away only moves objects away (factor {factor} < 1): closer would need points we do not have")
    shift = (factor - 1) * np.array([box[0], box[1]])
    p, b = points[rng.random(len(points)) < factor ** -2].copy(), np.array(box, float).copy()
    p[:, :2] += shift
    b[:2] += shift
    return p, b


def paste_objects(scan: LabelledScan, bank: list, count: int, rng: np.random.Generator, grid: VoxelGrid,
                  far_prob: float = 0.0, max_range: float = 50.0) -> LabelledScan:
    """SECOND-style GT sampling: paste up to ``count`` bank objects, each rotated about the sensor by a
    random angle (and, with probability ``far_prob``, moved away to a range up to ``max_range`` and thinned,
    see :func:`move_away`), where they overlap no existing box, standing on the scan's road
    (``scan.ground_z``); scene points in their footprint are removed."""
    pts, boxes, labels = scan.points, scan.boxes.copy(), list(scan.labels)
    for j in rng.choice(len(bank), size=min(count, len(bank)), replace=False) if bank else []:
        p, b, c, _ = bank[j]
        p, b = rotate_about_sensor(p, b[None], float(rng.uniform(-np.pi, np.pi)))
        r0 = float(np.hypot(*b[0, :2]))
        if far_prob and rng.random() < far_prob and 1.0 < r0 < max_range:
            p, b0 = move_away(p, b[0], float(rng.uniform(r0, max_range)) / r0, rng)
            b = b0[None]
        p[:, 2] += scan.ground_z - GROUND_Z  # p and b are fresh copies (rotate_about_sensor, move_away)
        b[:, 2] += scan.ground_z - GROUND_Z
        bx = b[0]
        if not (grid.x_range[0] + 2 < bx[0] < grid.x_range[1] - 2 and grid.y_range[0] + 2 < bx[1] < grid.y_range[1] - 2):
            continue
        r = 0.5 * np.hypot(bx[3], bx[4])
        if len(boxes) and (np.hypot(boxes[:, 0] - bx[0], boxes[:, 1] - bx[1]) < r + 0.5 * np.hypot(boxes[:, 3], boxes[:, 4]) + 0.3).any():
            continue
        clear = bx.copy()
        clear[3:5] += 0.3
        clear[5] = 20.0
        clear[2] = scan.ground_z + 0.15 + 10.0  # keep the road surface under the object
        inside = points_in_rotated_box(pts, clear[None])[0]
        pts = np.concatenate([pts[~inside], p[:, :4]], 0)
        boxes = np.concatenate([boxes, bx[None]], 0)
        labels.append(c)
    return LabelledScan(pts, boxes, np.asarray(labels, np.int64), scan.name + "+paste", scan.ground_z)


class DetectionScans(Dataset):
    """Items ``{"occ": uint8 [nz, ny, nx], "boxes": float32 [64, 7], "labels": int64 [64] (-1 = pad)}``.

    Base scans: ``simulated`` simulator scenes (settings ``sim``, see :func:`simulator_kwargs`) and the
    real KITTI ``frames`` (repeated ``real_repeat`` times); simulated items get ``paste`` real objects
    (a share ``far_prob`` of them moved away, up to ``max_range``), drawn from a generator seeded by the
    item index (deterministic, different for each of the ``repeat`` copies). ``rotate`` turns every item
    about the sensor by an angle seeded by the item index: ``"any"`` from U(-pi, pi), ``"quarter"`` a
    multiple of 90 deg. The augmentation for grids that are not square, where the training step's
    quarter turns of the occupancy do not apply.
    """

    def __init__(self, grid: VoxelGrid, frames: list[str], simulated: int, sim: dict | None = None,
                 paste: int = 6, holdout: set[str] | None = None, repeat: int = 1, real_repeat: int = 2,
                 min_points: int = 5, seed: int = 0, far_prob: float = 0.0, max_range: float = 50.0,
                 rotate: str | None = None) -> None:
        from ..simulator import simulate_scene

        self.grid, self.paste, self.repeat, self.seed, self.min_points = grid, paste, repeat, seed, min_points
        if rotate not in (None, "any", "quarter"):
            raise ValueError(f"data.rotate must be 'any', 'quarter' or null, not {rotate!r}")
        self.far_prob, self.max_range, self.rotate = far_prob, max_range, rotate
        self.bank = object_bank(holdout or set(), min_points) if paste else []
        self.base: list[LabelledScan] = []
        for s in range(simulated):
            kw = simulator_kwargs(sim, 5000 + s)
            pts, boxes, cls = simulate_scene(5000 + s, **kw)
            self.base.append(LabelledScan(pts, boxes.astype(np.float64), np.array([CLASSES.index(c) for c in cls], np.int64),
                                          f"sim/{5000 + s}", -kw["sensor_height"]))
        self.num_sim = len(self.base)
        for f in frames:
            self.base += [kitti_frame(f)] * real_repeat
        if not self.base:
            raise ValueError("no scans: set data.simulated or data.kitti_frames")

    def __len__(self) -> int:
        return len(self.base) * self.repeat

    def scan(self, i: int) -> LabelledScan:
        j = i % len(self.base)
        s = self.base[j]
        if self.rotate:  # before pasting, so that pasted objects fill the whole grid
            rng = np.random.default_rng([self.seed, i, 29])
            theta = float(rng.uniform(-np.pi, np.pi) if self.rotate == "any" else rng.integers(4) * np.pi / 2)
            pts, boxes = rotate_about_sensor(s.points, s.boxes, theta)
            s = LabelledScan(pts, boxes, s.labels, s.name, s.ground_z)
        if j < self.num_sim and self.paste:
            s = paste_objects(s, self.bank, self.paste, np.random.default_rng(self.seed * 100_003 + i), self.grid,
                              self.far_prob, self.max_range)
        if len(s.boxes):
            visible = count_points_in_boxes(s.points, s.boxes) >= self.min_points
            s = LabelledScan(s.points, s.boxes[visible], s.labels[visible], s.name, s.ground_z)
        return s

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        s = self.scan(i)
        boxes = np.zeros((MAX_OBJECTS, 7), np.float32)
        labels = np.full(MAX_OBJECTS, -1, np.int64)
        n = min(len(s.boxes), MAX_OBJECTS)
        boxes[:n], labels[:n] = s.boxes[:n], s.labels[:n]
        return {"occ": torch.from_numpy(self.grid.occupancy(s.points).astype(np.uint8)),
                "boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}


def augment(occ: Tensor, boxes: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Per scan: y-flip when ``u[0] < 0.5``, then ``torch.rot90`` k = floor(4 u[1]) times over (y, x).

    ``rot90`` over (y, x) maps cell (iy, ix) -> (n-1-ix, iy), i.e. (x, y) -> (y, -x): a rotation by
    -90 deg per step, so boxes are rotated by -k * 90 deg (exact on a square grid centred on the sensor).
    """
    occ_out, box_out = [], []
    for o, b, (uf, ur) in zip(occ, boxes, u.tolist()):
        b = b.clone()
        if uf < 0.5:
            o = o.flip(-2)
            b[:, 1], b[:, 6] = -b[:, 1], -b[:, 6]
        k = int(ur * 4) % 4
        if o.shape[-1] == o.shape[-2] and k:
            o = torch.rot90(o, k, dims=(-2, -1))
            th = -k * np.pi / 2
            c, s = float(np.cos(th)), float(np.sin(th))
            x, y = b[:, 0].clone(), b[:, 1].clone()
            b[:, 0], b[:, 1], b[:, 6] = c * x - s * y, s * x + c * y, b[:, 6] + th
        occ_out.append(o)
        box_out.append(b)
    return torch.stack(occ_out), torch.stack(box_out)


