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


# ----------------------------------------------------------------------------- pooling and scoring
def config_name(oof: dict) -> str:
    """``rmae-s0`` / ``scratch-s1``: how a fold run was initialised and its seed."""
    return f"{'scratch' if not oof.get('pretrained') else 'rmae'}-s{oof.get('seed', 0)}"


def load_runs(run_dirs: list[str | Path]) -> dict[str, list[dict]]:
    """``oof.json`` of each run folder, grouped by :func:`config_name`."""
    from maskworks.core.io import InputError

    groups: dict[str, list[dict]] = {}
    for d in run_dirs:
        path = Path(d) / "oof.json"
        if not path.is_file():
            raise InputError(d, "no oof.json (the run has not finished, or it left no frames out)",
                             "give the folders of finished `maskworks train lidar/detector --set data.holdout_fold=K` runs")
        oof = json.loads(path.read_text())
        oof["run"] = str(d)
        groups.setdefault(config_name(oof), []).append(oof)
    return groups


def pooled(oofs: list[dict], step: str | int | None = None, variant: str = DEFAULT_VARIANT) -> dict[str, Detections]:
    """Every left-out frame's detections from the run that left it out (``step`` None: each run's last)."""
    out: dict[str, Detections] = {}
    for o in oofs:
        steps = o["steps"]
        key = str(step) if step is not None else str(max(map(int, steps)))
        if key not in steps:
            raise KeyError(f"{o['run']}: no predictions at step {key} (has {sorted(map(int, steps))})")
        for frame, d in steps[key][variant].items():
            if frame in out:
                raise ValueError(f"frame {frame} is left out by two runs of one configuration")
            out[frame] = Detections(np.array(d["boxes"], float).reshape(-1, 7), list(d["classes"]), np.array(d["scores"], float))
    return out


def ground_truth(kitti_dirs: list, frames: list[str]):
    """Labels (:class:`~..kitti_metric.FrameBoxes`, DontCare regions included) and calibrations of ``frames``."""
    from ..kitti_metric import objects_to_frame
    from ..real_data import kitti_root, frame_ids
    from ..kitti import read_calib, read_label

    where = {}
    for d in kitti_dirs:
        root = kitti_root(d)
        for f in frame_ids(root):
            where.setdefault(f, root)
    gts, calibs = [], []
    for f in frames:
        calib = read_calib(where[f] / "calib" / f"{f}.txt")
        gts.append(objects_to_frame(read_label(where[f] / "label_2" / f"{f}.txt"), calib, f))
        calibs.append(calib)
    return gts, calibs


def score_pooled(dets: dict[str, Detections], kitti_dirs: list, conventions: str = "exact", dontcare: bool = True,
                 **evaluate_kw):
    """(AP table of :func:`~..kitti_metric.evaluate`, the frames' labels, their FOV-restricted detections)."""
    from ..kitti_metric import FrameBoxes, evaluate, restrict_to_fov

    frames = sorted(dets)
    gts, calibs = ground_truth(kitti_dirs, frames)
    fd = [restrict_to_fov(FrameBoxes(dets[f].boxes, dets[f].classes, dets[f].scores, name=f), c)
          for f, c in zip(frames, calibs)]
    return evaluate(gts, fd, conventions=conventions, dontcare=dontcare, **evaluate_kw), gts, fd


def f1_threshold(gts, dets, cls: str = "Car", level: int = 1, iou: float = 0.5, metric: str = "bev") -> dict:
    """The score threshold with the best F1 of ``cls`` at ``iou`` (labels and detections ignored as by AP)."""
    from ..kitti_metric import match_frame

    s_all, tp_all, n = [], [], 0
    for g, d in zip(gts, dets):
        s, tp, ng = match_frame(g, d, cls, level, iou, metric)
        s_all.append(s)
        tp_all.append(tp)
        n += ng
    s, tp = np.concatenate(s_all), np.concatenate(tp_all)
    best = {"threshold": None, "f1": 0.0, "precision": 0.0, "recall": 0.0, "num_gt": n}
    for t in np.unique(s):
        k = s >= t
        a, b = int((tp & k).sum()), int((~tp & k).sum())
        f1 = 2 * a / (2 * a + b + (n - a)) if n else 0.0
        if f1 > best["f1"] + 1e-12 or (abs(f1 - best["f1"]) < 1e-12 and best["threshold"] is not None and t > best["threshold"]):
            best = {"threshold": round(float(t), 4), "f1": round(f1, 4), "precision": round(a / max(a + b, 1), 4),
                    "recall": round(a / max(n, 1), 4), "num_gt": n}
    return best


def headline(res: dict) -> float:
    """The figure issue #22 asks for: Car BEV AP_R40 at IoU 0.7, moderate."""
    return res["strict"]["Car"]["bev"]["moderate"]


def cv_report(run_dirs: list[str | Path], kitti_dirs: list, conventions: str = "exact", dontcare: bool = True) -> dict:
    """Per configuration: the full AP table at the last step with the default inference, and the headline
    figure at every checkpoint and inference variant (what checkpoint / variant selection reads)."""
    groups = load_runs(run_dirs)
    out: dict = {"conventions": conventions, "dontcare": dontcare, "configs": {}}
    for name, oofs in sorted(groups.items()):
        steps = sorted(set.intersection(*[set(map(int, o["steps"])) for o in oofs]))
        entry = {"runs": [o["run"] for o in oofs], "folds": sorted(o["fold"] for o in oofs if o["fold"] is not None)}
        res, gts, fd = score_pooled(pooled(oofs), kitti_dirs, conventions, dontcare)
        entry.update(final=res, frames=len(gts), threshold_car_bev05_moderate=f1_threshold(gts, fd))
        entry["by_step"] = {str(st): {v: headline(score_pooled(pooled(oofs, st, v), kitti_dirs, conventions, dontcare,
                                                               classes=("Car",), settings=("strict",))[0])
                                      for v in VARIANTS} for st in steps}
        out["configs"][name] = entry
    return out
