"""Detector evaluation drivers: KITTI AP R40 on labelled frames, and a sanity check on held-out simulated scenes."""
from __future__ import annotations

import numpy as np

from ..boxes import count_points_in_boxes
from ..simulator import simulator_kwargs
from .inference import LidarDetector


def evaluate_on_kitti(det: "LidarDetector", data_cfg: dict, score_threshold: float = 0.05, **inference) -> dict:
    """KITTI AP_R40 of ``det`` on the held-out frames and on the training frames (shipped KITTI);
    ``inference``: :meth:`LidarDetector.predict`'s ``tta`` / ``settle`` / ``fit`` (default: all on)."""
    from maskworks.core.io.points import read_scan
    from maskworks.data import data_path

    from ..kitti_metric import (
        FrameBoxes,
        evaluate,
        label_matches,
        load_ground_truth,
        restrict_to_fov,
    )

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
            r = det.predict(read_scan(root / "velodyne" / f"{f}.bin").points, score_threshold=score_threshold,
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
    from ..kitti_metric import FrameBoxes, evaluate
    from ..simulator import simulate_scene

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


