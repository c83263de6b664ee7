"""Cross-validation on the real labelled KITTI frames (issue #22): each fold's run predicts the frames it
did not train on (:func:`save_fold_predictions`, called when a real-data run ends), and :func:`cv_report` pools
those out-of-fold predictions over the folds of one configuration (init and seed) and scores them as one set.

Predictions are stored raw (every box scoring >= 0.05 on the model's grid, LiDAR frame), for every checkpoint
of the run and for each inference variant, so that the evaluator (FOV, DontCare, conventions) and the
selection of checkpoint, variant and score threshold are applied afterwards, on the out-of-fold set only.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..boxes import PointIndex
from ..car_fit import fit_cars
from ..ground import settle_on_ground
from ..voxel import VoxelGrid
from .decode import Detections, decode, flip_tta
from .inference import drop_ego_returns

VARIANTS = {  # name: (tta, settle, fit)
    "plain": (False, False, False), "settle": (False, True, False), "settle+fit": (False, True, True),
    "tta": (True, False, False), "tta+settle": (True, True, False), "tta+settle+fit": (True, True, True),
}
DEFAULT_VARIANT = "tta+settle+fit"  # the product's default inference


@torch.no_grad()
def predict_variants(model, grid: VoxelGrid, points: np.ndarray, score_threshold: float = 0.05,
                     variants: dict = VARIANTS) -> dict[str, Detections]:
    """One scan through ``model`` once per TTA setting; ground settling and the car fit applied to the decoded
    boxes for each variant (the same as :meth:`LidarDetector.predict` with those options)."""
    pts = drop_ego_returns(np.asarray(points)[:, :3])
    occ = torch.from_numpy(grid.occupancy(pts).astype(np.float32))[None]
    decoded = {}
    for tta in sorted({v[0] for v in variants.values()}):
        out = flip_tta(model, occ) if tta else model(occ)
        decoded[tta] = decode({k: v.float() for k, v in out.items()}, grid, model.stride, 100, score_threshold)[0]
    index = PointIndex(pts)
    res = {}
    for name, (tta, settle, fit) in variants.items():
        d = decoded[tta]
        boxes = d.boxes
        if len(d) and settle:
            boxes = settle_on_ground(index, boxes)
        if len(d) and fit:
            boxes = fit_cars(index, boxes, d.classes)
        res[name] = Detections(boxes, d.classes, d.scores)
    return res


def _dets_json(d: Detections) -> dict:
    return {"boxes": np.round(d.boxes, 4).tolist(), "classes": list(d.classes), "scores": np.round(d.scores, 5).tolist()}


def save_fold_predictions(model, cfg: dict, run_dir: str | Path) -> Path | None:
    """Predictions of the run's final model and of each of its checkpoints on the frames it left out
    (``data.holdout_fold`` / ``data.holdout``), as read from their folders (full scans stay whole): ``oof.json``."""
    from maskworks.core.training.checkpoint import load_weights

    from ..real_data import kitti_frames
    from .task import held_out_frames

    d = cfg.get("data") or {}
    frames = held_out_frames(d)
    if not frames:
        return None
    run_dir = Path(run_dir)
    scans = kitti_frames(d.get("kitti_dirs") or ["shipped:3d/kitti/training"], frames, crop_to_fov=False)
    model = model.eval()
    steps: dict[str, dict] = {}
    ckpts = sorted((run_dir / "checkpoints").glob("step_*"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for ck in ckpts + [None]:
        if ck is not None:
            load_weights(ck / "model.safetensors", model)
        step = int(ck.name.split("_")[1]) if ck is not None else int((cfg.get("trainer") or {}).get("max_steps", 0))
        per = {v: {} for v in VARIANTS}
        for s in scans:
            for v, det in predict_variants(model, model.voxel_grid, s.points).items():
                per[v][s.name] = _dets_json(det)
        steps[str(step)] = per
    model.load_state_dict(state)
    out = {"fold": d.get("holdout_fold"), "frames": frames, "kitti_dirs": d.get("kitti_dirs"),
           "pretrained": (cfg.get("model") or {}).get("pretrained"), "seed": (cfg.get("trainer") or {}).get("seed"),
           "grid": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(model.voxel_grid).items()},
           "score_floor": 0.05, "steps": steps}
    path = run_dir / "oof.json"
    path.write_text(json.dumps(out))
    return path
