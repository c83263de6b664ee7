"""A CenterPoint-style 3-D detector on the R-MAE BEV backbone (``maskworks train lidar/detector``).

Model: :class:`~.rmae.BEVBackbone` (same class and :class:`~.voxel.VoxelGrid` as R-MAE, so the
pre-trained weights load unchanged) -> a small FPN-like neck to stride 2 (0.8 m cells) -> heads for
class heatmaps (Car, Pedestrian, Cyclist; Gaussian targets, focal loss), sub-cell offset, z centre,
log size and (sin, cos) yaw (L1). Decoding: 3x3 max-pool peaks, top-k, per-class rotated BEV NMS.

Data (the real labelled data are tiny, so most supervision is simulated): :func:`simulate_scene`
scenes with real object crops pasted in (KITTI crops of the *training* frames and nuScenes boxes cut
from the shipped sweep, each rotated about the sensor so its range and visible side stay physical)
plus the labelled KITTI frames 000000-000001. KITTI 000002 is held out for evaluation.
Augmentation: y-flip and 90-degree rotations of the occupancy grid (exact on the square grid),
drawn with ``ctx.rand`` so a resumed run is identical.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from maskworks.core.training.task import StepContext, Task

from .boxes import PointIndex, count_points_in_boxes, points_in_rotated_box
from .car_fit import fit_cars
from .ground import settle_on_ground
from .iou import nms_bev
from .rmae import BEVBackbone, conv_bn
from .simulator import recipe_sim, simulator_kwargs
from .voxel import VoxelGrid

CLASSES = ("Car", "Pedestrian", "Cyclist")
MAX_OBJECTS = 64
NUSCENES_TO_KITTI = {"car": "Car", "pedestrian": "Pedestrian", "bicycle": "Cyclist"}
GROUND_Z = -1.73  # KITTI / simulator sensor height above the road


def make_grid(cfg: dict | None) -> VoxelGrid:
    return VoxelGrid(**{k: tuple(v) if isinstance(v, list) else v for k, v in (cfg or {}).items()})


def resolve_shipped(path: str | Path) -> Path:
    """``shipped:weights/x.safetensors`` -> the file under ``maskworks.data``; other paths unchanged."""
    s = str(path)
    if s.startswith("shipped:"):
        from maskworks.data import data_path

        return data_path(*s[len("shipped:"):].split("/"))
    return Path(s)


class BEVDetector(nn.Module):
    """Occupancy ``[B, nz, ny, nx]`` -> dict of head maps at stride 2: ``heatmap`` (logits, C),
    ``offset`` (2), ``z`` (1), ``size`` (3, log metres), ``rot`` (2, sin/cos)."""

    def __init__(self, grid: VoxelGrid | dict | None = None, widths: tuple[int, int, int] | list[int] = (16, 32, 64),
                 head_channels: int = 32, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.voxel_grid = grid if isinstance(grid, VoxelGrid) else make_grid(grid)
        nz, ny, nx = self.voxel_grid.shape
        if ny % 4 or nx % 4:
            raise ValueError(f"the BEV grid {ny} x {nx} must be divisible by 4 (two stride-2 stages)")
        c1, c2, c3 = widths
        self.backbone = BEVBackbone(nz, tuple(widths))
        self.up3 = nn.ConvTranspose2d(c3, c2, 2, 2)
        self.fuse = conv_bn(2 * c2, head_channels)
        self.shared = conv_bn(head_channels, head_channels)
        outs = {"heatmap": num_classes, "offset": 2, "z": 1, "size": 3, "rot": 2}
        self.heads = nn.ModuleDict({k: nn.Sequential(conv_bn(head_channels, head_channels), nn.Conv2d(head_channels, n, 1))
                                    for k, n in outs.items()})
        nn.init.constant_(self.heads["heatmap"][-1].bias, -2.19)  # prior 0.1, as CenterNet
        self.stride = 2

    def forward(self, occ: Tensor) -> dict[str, Tensor]:
        _, f2, f3 = self.backbone(occ.float())
        x = self.shared(self.fuse(torch.cat([self.up3(f3), f2], 1)))
        return {k: h(x) for k, h in self.heads.items()}


# ----------------------------------------------------------------------------- targets and loss
def gaussian_radius(h: float, w: float, min_overlap: float = 0.1) -> float:
    """CenterNet's radius (in cells) such that a shifted box still has IoU >= ``min_overlap``."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + np.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


def build_targets(boxes: np.ndarray, labels: np.ndarray, grid: VoxelGrid, stride: int = 2,
                  num_classes: int = len(CLASSES), min_radius: int = 2) -> dict[str, np.ndarray]:
    """CenterPoint targets for one scan: heatmap ``[C, H, W]``, ``ind`` / ``mask`` ``[K]``, ``reg`` ``[K, 8]``
    (dx, dy, z, log l, log w, log h, sin yaw, cos yaw); boxes whose centre is off the grid are skipped."""
    _, ny, nx = grid.shape
    H, W, cell = ny // stride, nx // stride, grid.voxel_size * stride
    heat = np.zeros((num_classes, H, W), np.float32)
    ind = np.zeros(MAX_OBJECTS, np.int64)
    mask = np.zeros(MAX_OBJECTS, np.float32)
    reg = np.zeros((MAX_OBJECTS, 8), np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    k = 0
    for b, c in zip(boxes, labels):
        if c < 0 or k >= MAX_OBJECTS:
            continue
        fx, fy = (b[0] - grid.x_range[0]) / cell, (b[1] - grid.y_range[0]) / cell
        ix, iy = int(np.floor(fx)), int(np.floor(fy))
        if not (0 <= ix < W and 0 <= iy < H):
            continue
        r = max(min_radius, int(gaussian_radius(b[3] / cell, b[4] / cell)))
        sigma = (2 * r + 1) / 6
        g = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma ** 2))
        g[(np.abs(xx - ix) > r) | (np.abs(yy - iy) > r)] = 0
        heat[c] = np.maximum(heat[c], g)
        ind[k], mask[k] = iy * W + ix, 1.0
        reg[k] = [fx - ix, fy - iy, b[2], np.log(b[3]), np.log(b[4]), np.log(b[5]), np.sin(b[6]), np.cos(b[6])]
        k += 1
    return {"heatmap": heat, "ind": ind, "mask": mask, "reg": reg}


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of peaks."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = (torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * neg).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp_min(1)


def regression_map(out: dict[str, Tensor]) -> Tensor:
    """Head outputs stacked as ``[B, 8, H, W]`` in the order of :func:`build_targets`' ``reg``."""
    return torch.cat([out["offset"], out["z"], out["size"], out["rot"]], 1)


def detection_loss(out: dict[str, Tensor], tgt: dict[str, Tensor], reg_weight: float = 1.0) -> dict[str, Tensor]:
    hm = focal_loss(out["heatmap"], tgt["heatmap"])
    reg = regression_map(out)
    b, c, h, w = reg.shape
    pred = reg.reshape(b, c, h * w).gather(2, tgt["ind"][:, None, :].expand(b, c, -1)).permute(0, 2, 1)  # [B, K, 8]
    m = tgt["mask"][..., None]
    l1 = (F.l1_loss(pred, tgt["reg"], reduction="none") * m).sum() / m.sum().clamp_min(1)
    return {"loss": hm + reg_weight * l1, "heatmap": hm.detach(), "reg": l1.detach()}


def unflip(out: dict[str, Tensor], axis: str) -> dict[str, Tensor]:
    """Head maps computed on a grid flipped along ``axis`` (``"y"``: y -> -y, ``"x"``: x -> -x) expressed
    in the original grid: maps flipped back, the sub-cell offset mirrored (``d -> 1 - d``) and the yaw
    mirrored (y-flip: yaw -> -yaw; x-flip: yaw -> pi - yaw). Exact on a grid symmetric about the sensor."""
    dim, k = (-2, 1) if axis == "y" else (-1, 0)
    o = {name: t.flip(dim) for name, t in out.items()}
    off = o["offset"].clone()
    off[:, k] = 1 - off[:, k]
    rot = o["rot"].clone()
    rot[:, 0 if axis == "y" else 1] *= -1  # y: sin -> -sin; x: cos -> -cos
    return {**o, "offset": off, "rot": rot}


def flip_tta(model: nn.Module, occ: Tensor) -> dict[str, Tensor]:
    """Test-time augmentation: the model on the scan and on its y-mirror, maps averaged (heatmap as
    probabilities, returned as logits): each box's position, size and heading become the mean of the two
    passes' estimates, which evens out left-right biases of the learned filters."""
    a, b = model(occ), unflip(model(occ.flip(-2)), "y")
    p = (a["heatmap"].sigmoid() + b["heatmap"].sigmoid()) / 2
    out = {k: (a[k] + b[k]) / 2 for k in a if k != "heatmap"}
    return {"heatmap": torch.logit(p.clamp(1e-6, 1 - 1e-6)), **out}


# ----------------------------------------------------------------------------- decoding
@dataclass
class Detections:
    """Boxes ``[K, 7]`` (LiDAR ``x, y, z_center, l, w, h, yaw``), class names and scores, best first."""

    boxes: np.ndarray
    classes: list[str]
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def filter(self, score_threshold: float) -> "Detections":
        k = self.scores >= score_threshold
        return Detections(self.boxes[k], [c for c, kk in zip(self.classes, k) if kk], self.scores[k])

    def to_json(self) -> list[dict]:
        return [{"class": c, "score": round(float(s), 4),
                 "box_lidar": [round(float(v), 4) for v in b], "box_format": "x y z_center l w h yaw (LiDAR, m, rad)"}
                for b, c, s in zip(self.boxes, self.classes, self.scores)]


def decode(out: dict[str, Tensor], grid: VoxelGrid, stride: int = 2, top_k: int = 100, score_threshold: float = 0.05,
           nms_iou: float = 0.1) -> list[Detections]:
    """Max-pool peaks -> top-k -> boxes in metres -> per-class rotated BEV NMS, one result per scan."""
    heat = out["heatmap"].sigmoid()
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    b, c, h, w = heat.shape
    cell = grid.voxel_size * stride
    reg = regression_map(out).reshape(b, 8, h * w)
    results = []
    for i in range(b):
        s, idx = peaks[i].reshape(-1).topk(min(top_k, c * h * w))
        keep = s >= score_threshold
        s, idx = s[keep], idx[keep]
        cls, pix = idx // (h * w), idx % (h * w)
        r = reg[i][:, pix].T.double().numpy()  # [K, 8]
        iy, ix = (pix // w).double().numpy(), (pix % w).double().numpy()
        boxes = np.stack([grid.x_range[0] + (ix + r[:, 0]) * cell, grid.y_range[0] + (iy + r[:, 1]) * cell, r[:, 2],
                          *np.exp(np.clip(r[:, 3:6], -3, 3)).T, np.arctan2(r[:, 6], r[:, 7])], 1).reshape(-1, 7)
        s, cls = s.double().numpy(), cls.numpy()
        kept = []
        for k in range(c):
            sel = np.nonzero(cls == k)[0]
            kept.extend(sel[nms_bev(boxes[sel], s[sel], nms_iou)].tolist())
        kept = np.array(sorted(kept, key=lambda j: -s[j]), dtype=np.int64)
        results.append(Detections(boxes[kept], [CLASSES[j] for j in cls[kept]], s[kept]))
    return results


# ----------------------------------------------------------------------------- data
@dataclass
class LabelledScan:
    points: np.ndarray  # [N, 4]
    boxes: np.ndarray  # [M, 7]
    labels: np.ndarray  # [M] class index
    name: str
    ground_z: float = GROUND_Z  # road height under the sensor (where pasted objects stand)


def kitti_frame(frame: str, root: Path | None = None) -> LabelledScan:
    """A shipped (or ``root``) KITTI frame with its Car / Pedestrian / Cyclist boxes in the LiDAR frame."""
    from maskworks.data import data_path

    from .io import read_kitti_bin
    from .kitti import labels_to_lidar_boxes, read_calib, read_label

    root = root or data_path("3d", "kitti", "training")
    pts = read_kitti_bin(root / "velodyne" / f"{frame}.bin", drop_nan=True)
    boxes, classes = labels_to_lidar_boxes(read_label(root / "label_2" / f"{frame}.txt"), read_calib(root / "calib" / f"{frame}.txt"))
    keep = [i for i, c in enumerate(classes) if c in CLASSES]
    return LabelledScan(pts, boxes[keep], np.array([CLASSES.index(classes[i]) for i in keep], np.int64), f"kitti/{frame}")


def object_bank(holdout: set[str], min_points: int = 5) -> list[tuple[np.ndarray, np.ndarray, int, str]]:
    """Real object crops (points ``[n, 4]``, box ``[7]``, class, source), bottoms moved onto ``GROUND_Z``.

    KITTI crops of the non-held-out frames (``kitti_objects/index.csv``) and nuScenes objects cut from
    the shipped sweep with ``nuscenes/boxes_lidar.json`` (car, pedestrian, bicycle -> Cyclist).
    """
    from maskworks.data import data_path

    from .io import read_nuscenes_bin

    bank = []
    root = data_path("3d", "kitti_objects")
    with open(root / "index.csv") as f:
        for row in csv.DictReader(f):
            if row["frame"] in holdout or row["class"] not in CLASSES or int(row["num_points"]) < min_points:
                continue
            box = np.array([float(row[k]) for k in ("x", "y", "z", "dx", "dy", "dz", "heading")])
            bank.append((np.load(root / row["file"]).astype(np.float32), box, CLASSES.index(row["class"]), f"kitti/{row['file']}"))
    nus = data_path("3d", "nuscenes")
    sweep = read_nuscenes_bin(next(iter(sorted(nus.glob("*.pcd.bin")))), drop_nan=True)
    pts4 = np.concatenate([sweep[:, :3], sweep[:, 3:4] / 255.0], 1).astype(np.float32)
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
        from .simulator import simulate_scene

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


def _raw(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


class DetectorTask(Task):
    """``model``: grid, widths, head_channels, ``pretrained`` (an R-MAE ``backbone.safetensors``, or null for
    random init), ``init`` (a trained detector's ``model.safetensors`` to start from: fine-tuning on
    another grid, since every layer is convolutional); ``data``: simulated, paste, kitti_frames, holdout,
    repeat."""

    def build_model(self) -> BEVDetector:
        m = dict(self.cfg.get("model", {}))
        pre = m.pop("pretrained", None)
        init = m.pop("init", None)
        model = BEVDetector(grid=m.pop("grid", None), **m)
        if init:
            if pre:
                raise ValueError(f"model.init ({init}) and model.pretrained ({pre}) both set: a detector started from "
                                 "trained weights already has its backbone; set model.pretrained=null")
            from maskworks.core.training.checkpoint import load_weights

            try:
                path, _ = detector_weights(resolve_shipped(init))
            except ValueError as e:
                raise ValueError(f"model.init: {e}") from None
            try:
                load_weights(path, model)
            except (RuntimeError, ValueError) as e:
                raise ValueError(f"model.init: {path} does not fit the recipe's model (same model.widths and "
                                 f"model.head_channels as that run are needed): {str(e)[:300]}") from None
            return model
        if pre:
            from .rmae_task import load_backbone

            bb, meta = load_backbone(resolve_shipped(pre))
            if tuple(meta["widths"]) != model.backbone.widths or int(meta["in_channels"]) != model.backbone.in_channels:
                raise ValueError(f"{pre}: backbone widths {meta['widths']} / {meta['in_channels']} channels do not match "
                                 f"model.widths {list(model.backbone.widths)}; set model.widths to the backbone's")
            model.backbone.load_state_dict(bb.state_dict())
        return model

    def build_dataset(self, split: str = "train") -> DetectionScans:
        d = self.cfg.get("data", {})
        holdout = set(d.get("holdout", ["000002"]))
        frames = [f for f in d.get("kitti_frames", ["000000", "000001"]) if f not in holdout]
        grid = make_grid((self.cfg.get("model") or {}).get("grid"))
        return DetectionScans(grid, frames, int(d.get("simulated", 16)), recipe_sim(d),
                              int(d.get("paste", 6)), holdout, int(d.get("repeat", 1)), int(d.get("real_repeat", 2)),
                              seed=int((self.cfg.get("trainer") or {}).get("seed", 0)),
                              far_prob=float(d.get("paste_far", 0.0)), max_range=float(d.get("paste_max_range", 50.0)),
                              rotate=d.get("rotate") or None)

    def training_step(self, model, batch, ctx: StepContext):
        raw = _raw(model)
        occ, boxes = augment(batch["occ"], batch["boxes"], ctx.rand(2))
        tg = [build_targets(b.double().numpy(), lab.numpy(), raw.voxel_grid, raw.stride) for b, lab in zip(boxes, batch["labels"])]
        tgt = {k: torch.from_numpy(np.stack([t[k] for t in tg])).to(occ.device) for k in tg[0]}
        return detection_loss(model(occ), tgt, float((self.cfg.get("trainer") or {}).get("reg_weight", 1.0)))

    def on_fit_end(self, model: BEVDetector, run_dir: Path) -> dict:
        """AP on the held-out KITTI frame and, separately, on the training frames."""
        run_dir = Path(run_dir)
        res = evaluate_on_kitti(LidarDetector(_raw(model).eval(), self.cfg), self.cfg.get("data", {}))
        from .kitti_eval import json_safe

        (run_dir / "detection_eval.json").write_text(json.dumps(json_safe(res), indent=2))
        return {k: {"Car BEV/3D moderate strict": [v["strict"]["Car"]["bev"]["moderate"], v["strict"]["Car"]["3d"]["moderate"]],
                    "Car BEV/3D moderate loose": [v["loose"]["Car"]["bev"]["moderate"], v["loose"]["Car"]["3d"]["moderate"]]}
                for k, v in res.items() if isinstance(v, dict) and "strict" in v}


def evaluate_on_kitti(det: "LidarDetector", data_cfg: dict, score_threshold: float = 0.05, **inference) -> dict:
    """KITTI AP_R40 of ``det`` on the held-out frames and on the training frames (shipped KITTI);
    ``inference``: :meth:`LidarDetector.predict`'s ``tta`` / ``settle`` / ``fit`` (default: all on)."""
    from maskworks.data import data_path

    from .kitti_eval import FrameBoxes, evaluate, label_matches, load_ground_truth, restrict_to_fov
    from .io import read_kitti_bin

    root = data_path("3d", "kitti", "training")
    holdout = list(data_cfg.get("holdout", ["000002"]))
    train = [f for f in data_cfg.get("kitti_frames", ["000000", "000001"]) if f not in holdout]
    out = {}
    for name, frames in (("heldout", holdout), ("train_frames", train)):
        if not frames:
            continue
        gts, calibs = load_ground_truth(root, frames)
        dets = []
        for f, calib in zip(frames, calibs):
            r = det.predict(read_kitti_bin(root / "velodyne" / f"{f}.bin", drop_nan=True), score_threshold=score_threshold,
                            **inference)
            dets.append(restrict_to_fov(FrameBoxes(r.boxes, r.classes, r.scores, name=f), calib))
        out[name] = {"frames": frames, **evaluate(gts, dets), "labels": label_matches(gts, dets)}
    return out


SIM_EVAL_REGION = (-40.0, 40.0, -40.0, 40.0)  # x_lo, x_hi, y_lo, y_hi: what every shipped grid has seen


def evaluate_on_simulated(det: "LidarDetector", scenes: int = 8, first_seed: int = 9000,
                          score_threshold: float = 0.05, sim: dict | None = None,
                          region: tuple[float, float, float, float] = SIM_EVAL_REGION,
                          band: tuple[float, float] | None = None, **inference) -> dict:
    """AP_R40 on held-out simulated scenes (seeds never used in training; objects with >= 5 points, all
    counted at every difficulty since simulated labels have no 2-D box), simulated with the recipe's
    ``data.sim`` settings ``sim``; ``inference`` as for :func:`evaluate_on_kitti`. A sanity check, not KITTI.

    Objects and detections count when their centre lies in ``region`` (x_lo, x_hi, y_lo, y_hi; the same
    region for models with different grids) and, with ``band`` (lo, hi), at a range in [lo, hi) m."""
    from .kitti_eval import FrameBoxes, evaluate
    from .simulator import simulate_scene

    def counted(b: np.ndarray) -> np.ndarray:
        b = np.asarray(b, float).reshape(-1, 7)
        ok = (region[0] <= b[:, 0]) & (b[:, 0] < region[1]) & (region[2] <= b[:, 1]) & (b[:, 1] < region[3])
        if band is not None:
            r = np.hypot(b[:, 0], b[:, 1])
            ok &= (band[0] <= r) & (r < band[1])
        return ok

    gts, dets = [], []
    for s in range(first_seed, first_seed + scenes):
        pts, boxes, cls = simulate_scene(s, **simulator_kwargs(sim, s))
        vis = count_points_in_boxes(pts, boxes) >= 5 if len(boxes) else np.zeros(0, bool)
        keep = vis & counted(boxes)
        gts.append(FrameBoxes(boxes[keep], [c for c, k in zip(cls, keep) if k], name=f"sim/{s}"))
        r = det.predict(pts, score_threshold=score_threshold, **inference)
        k = counted(r.boxes)
        dets.append(FrameBoxes(r.boxes[k], [c for c, m in zip(r.classes, k) if m], r.scores[k], name=f"sim/{s}"))
    return {"scenes": [f"sim/{s}" for s in range(first_seed, first_seed + scenes)], **evaluate(gts, dets)}


# ----------------------------------------------------------------------------- inference
DEFAULT_WEIGHTS = ("weights", "lidar-detector.safetensors")
FAR_WEIGHTS = ("weights", "lidar-detector-far.safetensors")


def shipped_weights() -> tuple[Path, Path | None]:
    """The shipped detector's files: the near model, and the far one (None when none is shipped)."""
    from maskworks.data import data_path

    far = data_path(*FAR_WEIGHTS)
    return data_path(*DEFAULT_WEIGHTS), far if far.is_file() else None


def detector_weights(path: str | Path) -> tuple[Path, dict]:
    """A ``maskworks train lidar/detector`` weights file (or its run folder) and the config recorded in its
    header; anything else is refused with what to give instead."""
    from maskworks.core.training.checkpoint import weights_metadata

    path = Path(path)
    path = path / "model.safetensors" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"No such file or directory: {path}")
    meta = weights_metadata(path)
    if "DetectorTask" not in str(meta.get("task", "")):
        raise ValueError(f"{path} is not a lidar/detector model (task {meta.get('task')!r}); "
                         "give the model.safetensors of a `maskworks train lidar/detector` run")
    return path, meta


def weights_grid(path: str | Path) -> VoxelGrid:
    """The grid a detector weights file was trained on, from its header (no model built)."""
    return make_grid((detector_weights(path)[1].get("model") or {}).get("grid"))


DEFAULT_SCORE_THRESHOLD = 0.3
EGO_RADIUS = 2.0  # metres around the sensor's axis: the ego vehicle's own roof and body returns


def drop_ego_returns(points: np.ndarray, radius: float = EGO_RADIUS) -> np.ndarray:
    """Points farther than ``radius`` from the sensor's vertical axis.

    Real scans carry returns from the car the sensor sits on (KITTI: ~40 roof and body points 1-2 m away;
    the shipped nuScenes sweep: ~8,000 within 1 m), which the detector would read as an object at the
    sensor. The simulated training scans have none (their closest returns are the road, ~4 m out), so
    dropping them also makes real input look like training input. As nuScenes' ``remove_close``."""
    pts = np.asarray(points)
    return pts[np.hypot(pts[:, 0], pts[:, 1]) > radius] if radius > 0 else pts


class LidarDetector:
    """Inference wrapper: ``LidarDetector.load().predict(points [N, >=3]) -> Detections``."""

    def __init__(self, model: BEVDetector, cfg: dict | None = None, device: str | torch.device | None = None,
                 grid: VoxelGrid | None = None) -> None:
        """``grid`` (default: the one it was trained on) may be any window of voxels aligned with it: the
        network is convolutional (:class:`RangeDetector` runs its far model on the part ahead only)."""
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.cfg = model.to(self.device).eval(), cfg or {}
        self.grid = grid or model.voxel_grid

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device | None = None) -> "LidarDetector":
        """Rebuild from a ``maskworks train lidar/detector`` safetensors (default: the shipped weights),
        without re-reading the R-MAE backbone named in the recipe; on ``device`` (default: the GPU when
        there is one)."""
        from maskworks.core.training.checkpoint import load_weights

        path, meta = detector_weights(path or shipped_weights()[0])
        m = dict(meta.get("model") or {})
        for started_from in ("pretrained", "init"):  # where training started; the weights hold it all
            m.pop(started_from, None)
        model = BEVDetector(grid=m.pop("grid", None), **m)
        load_weights(path, model)
        return cls(model, meta, device)

    @torch.no_grad()
    def predict(self, points: np.ndarray, score_threshold: float = DEFAULT_SCORE_THRESHOLD, top_k: int = 100,
                tta: bool = True, ego_radius: float = EGO_RADIUS, settle: bool = True, fit: bool = True) -> Detections:
        """Detections of one scan (LiDAR frame, metres; only the grid's x/y/z range is seen). Returns within
        ``ego_radius`` of the sensor are the ego vehicle and are dropped (:func:`drop_ego_returns`; 0 keeps
        them); ``tta`` averages the scan and its mirror image (:func:`flip_tta`: twice the time; raised Car AP
        on every run measured, docs/3d/detection.md); ``settle`` puts each box on the ground the scan shows
        around it (:func:`~.ground.settle_on_ground`); ``fit`` then turns and moves each car onto its own
        returns (:func:`~.car_fit.fit_cars`)."""
        pts = drop_ego_returns(np.asarray(points)[:, :3], ego_radius)
        occ = torch.from_numpy(self.grid.occupancy(pts).astype(np.float32))[None].to(self.device)
        out = flip_tta(self.model, occ) if tta else self.model(occ)
        out = {k: v.float().cpu() for k, v in out.items()}  # decoding (peaks, NMS) runs in numpy
        det = decode(out, self.grid, self.model.stride, top_k, score_threshold)[0]
        if (settle or fit) and len(det):
            index = PointIndex(pts)  # one sort of the scan serves both steps
            boxes = settle_on_ground(index, det.boxes) if settle else det.boxes
            det = Detections(fit_cars(index, boxes, det.classes) if fit else boxes, det.classes, det.scores)
        return det


RECEPTIVE_CELLS = 20
"""How far (in input cells) a detection's evidence reaches, with a margin: 3 x 3 convolutions at strides
1, 2, 2, 4, 4 (backbone), 2, 2, 2 (neck, shared layer, head) and the 3 x 3 peak pooling at stride 2
(an impulse moves head outputs up to 16 cells away, + 2 for the pooling; tested)."""
SPLIT_MARGIN_M = 2.0  # half a car: a car centred this far inside the near grid's forward edge is still whole in it


def default_split_x(near_grid) -> float:
    """Where :class:`RangeDetector` hands over from the near model to the far one by default."""
    return near_grid.x_range[1] - SPLIT_MARGIN_M


def shipped_split_x() -> float:
    """The shipped pair's hand-over, from the near model's header (no model built)."""
    return default_split_x(weights_grid(shipped_weights()[0]))


class RangeDetector:
    """Two detectors split by forward range: ``near`` reports the objects centred at ``x < split_x``,
    ``far`` (a grid reaching further ahead) the rest, so a far-reaching model adds range without
    changing what the near model reports. ``split_x`` defaults to the near grid's forward edge minus
    half a car length (2 m), where a car is still whole in the near grid. The far model only looks at
    its grid from ``split_x`` minus its receptive field on (aligned with its coarsest stride), which
    gives the same maps there at ~40 % of the cost (``crop=False``: the whole grid)."""

    def __init__(self, near: LidarDetector, far: LidarDetector, split_x: float | None = None, crop: bool = True) -> None:
        if far.grid.x_range[1] <= near.grid.x_range[1]:
            raise ValueError(f"the far detector's grid ends at x = {far.grid.x_range[1]:g} m, not beyond the near "
                             f"one's ({near.grid.x_range[1]:g} m): give a detector trained on a longer grid (--preset far)")
        self.near, self.far = near, far
        self.split_x = default_split_x(near.grid) if split_x is None else float(split_x)
        if crop:
            (x0, x1), cell = far.grid.x_range, far.grid.voxel_size
            step = 4 * cell  # the backbone's coarsest stride: the window's cells line up with the full grid's
            start = x0 + max(0.0, np.floor((self.split_x - RECEPTIVE_CELLS * cell - x0) / step)) * step
            window = replace(far.grid, x_range=(round(float(start), 6), x1))
            self.far = LidarDetector(far.model, far.cfg, far.device, grid=window)
        self.grid, self.cfg, self.device = far.grid, near.cfg, near.device

    def predict(self, points: np.ndarray, score_threshold: float = DEFAULT_SCORE_THRESHOLD, top_k: int = 100,
                **inference) -> Detections:
        """:meth:`LidarDetector.predict` of both, each kept on its side of ``split_x``, best first."""
        a = self.near.predict(points, score_threshold, top_k, **inference)
        b = self.far.predict(points, score_threshold, top_k, **inference)
        boxes = np.concatenate([a.boxes.reshape(-1, 7), b.boxes.reshape(-1, 7)])
        from_near = np.arange(len(boxes)) < len(a)
        keep = from_near == (boxes[:, 0] < self.split_x)  # near boxes before the split, far boxes from it on
        boxes = boxes[keep]
        scores = np.concatenate([a.scores, b.scores])[keep]
        classes = [c for c, k in zip(a.classes + b.classes, keep) if k]
        order = np.argsort(-scores, kind="stable")[:top_k]
        return Detections(boxes[order], [classes[i] for i in order], scores[order])


def load_detector(weights: str | Path | None = None, far_weights: str | Path | None = None,
                  device: str | torch.device | None = None) -> "LidarDetector | RangeDetector":
    """The detector the tools use: ``weights`` alone, or ``weights`` near and ``far_weights`` beyond
    (:class:`RangeDetector`). With neither: the shipped pair (the shipped near model alone when no far
    model is shipped)."""
    near = LidarDetector.load(weights, device)
    if far_weights is None and weights is None:
        far_weights = shipped_weights()[1]
    return RangeDetector(near, LidarDetector.load(far_weights, device)) if far_weights else near


def add_weights_options(p) -> None:
    """``--weights`` / ``--far-weights`` for :func:`load_detector` (predict and eval)."""
    try:
        hand_over = f"{shipped_split_x():g} m ahead"
    except (OSError, ValueError):  # no shipped model: --weights still works
        hand_over = "the near grid"
    p.add_argument("--weights", help="detector safetensors (default: the shipped pair, data/weights/"
                   f"lidar-detector.safetensors near and lidar-detector-far.safetensors beyond {hand_over})")
    p.add_argument("--far-weights", help="a second detector, trained on a grid reaching further ahead, for objects "
                   f"centred beyond the first's grid ({SPLIT_MARGIN_M:g} m inside its forward edge); default: the shipped far model "
                   "when --weights is not given")


INFERENCE_OPTIONS = ("tta", "settle", "fit")


def inference_options(args) -> dict[str, bool]:
    """:meth:`LidarDetector.predict`'s inference keywords from arguments parsed with :func:`add_inference_options`."""
    return {k: bool(getattr(args, k)) for k in INFERENCE_OPTIONS}


def add_inference_options(p) -> None:
    """``--tta/--no-tta``, ``--no-settle``, ``--no-fit`` (all on by default), for the CLIs that run the detector;
    parsed as ``tta``, ``settle``, ``fit`` (:func:`inference_options`)."""
    import argparse

    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                   help="average each scan with its left-right mirror (default; twice the time): --no-tta for one pass")
    p.add_argument("--no-settle", dest="settle", action="store_false",
                   help="keep the detector's box heights instead of standing each box on the ground seen around it")
    p.add_argument("--no-fit", dest="fit", action="store_false",
                   help="keep the detector's car headings and positions instead of fitting each car to its returns")


def predict_main(argv: list[str] | None = None) -> int:
    """``maskworks predict lidar/detection FILES... --out DIR``: KITTI label txt + JSON per scan."""
    import argparse
    import sys

    from .kitti import write_label
    from .kitti_eval import detections_to_objects

    p = argparse.ArgumentParser(prog="maskworks predict lidar/detection",
                                description="Detect cars, pedestrians and cyclists in LiDAR scans (KITTI .bin, nuScenes "
                                            ".pcd.bin, or [N, >=3] .npy in metres, x forward, z up). Writes <name>.txt "
                                            "(KITTI label_2 layout, 16th column = score) and <name>.json per file.")
    p.add_argument("files", nargs="+", help="scans to read (.bin, .pcd.bin, .pcd, .ply, .npy)")
    p.add_argument("--out", required=True, help="folder for the <name>.txt and <name>.json files (created)")
    add_weights_options(p)
    p.add_argument("--threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                   help="report detections scoring at least this (default %(default)s; lower finds more, with more false alarms)")
    add_inference_options(p)
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--calib", help="KITTI calib file for camera-frame labels with 2-D boxes (else an axis swap is used)")
    a = p.parse_args(argv)
    from .io import LidarDataError
    from .kitti import read_calib

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    det = load_detector(a.weights, a.far_weights, a.device)
    calib = read_calib(a.calib) if a.calib else None
    rc = 0
    for f in a.files:
        try:
            pts = read_scan(f)
        except (LidarDataError, ValueError) as e:
            print(f"maskworks predict lidar/detection: {e}", file=sys.stderr)
            rc = 2
            continue
        r = det.predict(pts, a.threshold, **inference_options(a))
        stem = Path(f).name.split(".")[0]
        write_label(out / f"{stem}.txt", detections_to_objects(r.boxes, r.classes, r.scores, calib))
        (out / f"{stem}.json").write_text(json.dumps({"file": str(f), "num_points": len(pts), "threshold": a.threshold,
                                                      "detections": r.to_json()}, indent=2))
        print(f"{f}: {len(r)} detections -> {out / stem}.txt/.json")
    return rc


def read_scan(path: str | Path) -> np.ndarray:
    """A raw scan by extension: ``.pcd.bin`` (nuScenes, 5 floats), ``.bin`` (KITTI, 4 floats), ``.npy`` ([N, >=3])."""
    from .io import LidarDataError, read_kitti_bin, read_nuscenes_bin

    path = Path(path)
    name = path.name.lower()
    if name.endswith(".pcd.bin"):
        return read_nuscenes_bin(path, drop_nan=True)
    if name.endswith(".bin"):
        return read_kitti_bin(path, drop_nan=True)
    if name.endswith(".npy"):
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise LidarDataError(path, f"not a readable .npy ({e})", "save with numpy.save(points_float32)") from None
        if a.ndim != 2 or a.shape[1] < 3 or not np.issubdtype(a.dtype, np.number):
            raise LidarDataError(path, f"array of shape {list(a.shape)} / {a.dtype}", "save a numeric [N, >=3] (x, y, z, ...) array")
        a = a.astype(np.float32)
        return a[np.isfinite(a[:, :3]).all(1)]
    raise LidarDataError(path, "unknown extension", "use .bin (KITTI), .pcd.bin (nuScenes) or .npy")
