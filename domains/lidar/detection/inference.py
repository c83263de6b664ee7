"""Inference: the shipped weights, :class:`LidarDetector` (one model), :class:`RangeDetector` (a near and a far
model split by forward range) and :func:`load_detector`, what every tool loads."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..boxes import PointIndex
from ..car_fit import fit_cars
from ..ground import settle_on_ground
from ..voxel import VoxelGrid
from .decode import Detections, decode, flip_tta
from .model import BEVDetector, make_grid
from maskworks.core.device import default_device

DEFAULT_WEIGHTS = ("weights", "lidar-detector.safetensors")
FAR_WEIGHTS = ("weights", "lidar-detector-far.safetensors")


def shipped_weights() -> tuple[Path, Path | None]:
    """The shipped detector's files: the near model, and the far one (None when none is shipped)."""
    from maskworks.data import data_path

    try:
        far = data_path(*FAR_WEIGHTS)
    except FileNotFoundError:  # one model covers the whole grid (the shipped one since round 8)
        far = None
    return data_path(*DEFAULT_WEIGHTS), far


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


def shipped_record() -> dict:
    """The shipped detector's record (``data/weights/lidar-detector.json``: what it was trained on, its
    cross-validated figures, the score threshold chosen for it); ``{}`` when there is none."""
    import json

    from maskworks.data import data_path

    try:
        return json.loads(data_path("weights", "lidar-detector.json").read_text())
    except (OSError, ValueError):
        return {}


DEFAULT_SCORE_THRESHOLD = float(shipped_record().get("threshold", 0.3))
"""The score from which the tools report a detection: the shipped record's, chosen by cross-validation (the
best out-of-fold Car F1 at BEV IoU 0.5, moderate); 0.3 without a record."""
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
        self.device = default_device(device)
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

    @property
    def inference_defaults(self) -> dict[str, bool]:
        """``tta`` / ``settle`` / ``fit`` when not given: the ``inference`` entry of the weights' header (the
        shipped detector's was chosen by cross-validation), else all on."""
        given = (self.cfg or {}).get("inference") or {}
        return {k: bool(given.get(k, True)) for k in ("tta", "settle", "fit")}

    @torch.no_grad()
    def predict(self, points: np.ndarray, score_threshold: float = DEFAULT_SCORE_THRESHOLD, top_k: int = 100,
                tta: bool | None = None, ego_radius: float = EGO_RADIUS, settle: bool | None = None,
                fit: bool | None = None) -> Detections:
        """Detections of one scan (LiDAR frame, metres; only the grid's x/y/z range is seen). Returns within
        ``ego_radius`` of the sensor are the ego vehicle and are dropped (:func:`drop_ego_returns`; 0 keeps
        them); ``tta`` / ``settle`` / ``fit`` default to :attr:`inference_defaults`; ``tta`` averages the scan and its mirror image (:func:`flip_tta`: twice the time; raised Car AP
        on every run measured, docs/3d/detection.md); ``settle`` puts each box on the ground the scan shows
        around it (:func:`~.ground.settle_on_ground`); ``fit`` then turns and moves each car onto its own
        returns (:func:`~.car_fit.fit_cars`)."""
        d = self.inference_defaults
        tta, settle, fit = (d[k] if v is None else v for k, v in (("tta", tta), ("settle", settle), ("fit", fit)))
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


