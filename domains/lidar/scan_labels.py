"""Ground truth beside a scan: KITTI's ``label_2/<frame>.txt`` (and ``calib/<frame>.txt``) next to ``velodyne/<frame>.bin``,
read with the repo's KITTI readers and scored with its evaluator's matching (for the demo tab's "found k of n").

Only KITTI's layout is recognised; labels cover camera 2's field of view only, so detections elsewhere are neither
right nor wrong (they are dropped before matching, as :func:`~.kitti_metric.restrict_to_fov` does for AP).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detection.predict import find_calib
from .kitti import KittiCalib, read_calib, read_label
from .kitti_metric import (
    CLASSES,
    DIFFICULTIES,
    FrameBoxes,
    label_matches,
    match_frame,
    objects_to_frame,
    restrict_to_fov,
)


def find_label(scan_path: str | Path) -> Path | None:
    """KITTI's ``label_2/<frame>.txt`` beside the scan's ``velodyne/`` folder, when there is one."""
    p = Path(scan_path)
    cand = p.parent.parent / "label_2" / f"{p.name.split('.')[0]}.txt"
    return cand if p.parent.name == "velodyne" and cand.is_file() else None


@dataclass
class ScanLabels:
    """The labelled objects of one scan (LiDAR frame, DontCare regions kept apart) and the calibration used."""

    frame: FrameBoxes
    calib: KittiCalib
    label_path: Path

    def __len__(self) -> int:
        return len(self.frame.boxes)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.frame.classes:
            out[c] = out.get(c, 0) + 1
        return out


def scan_labels(scan_path: str | Path, calib_path: str | Path | None = None) -> ScanLabels | None:
    """The labels beside a scan (``None`` when no label file or no calibration is found): camera-frame boxes moved
    into the LiDAR frame by the calibration (:func:`~.kitti_metric.objects_to_frame`)."""
    label = find_label(scan_path)
    calib = Path(calib_path) if calib_path else find_calib(scan_path)
    if label is None or calib is None:
        return None
    cal = read_calib(calib)
    return ScanLabels(objects_to_frame(read_label(label), cal, label.stem), cal, label)


def match_summary(labels: ScanLabels, boxes: np.ndarray, classes: list[str], scores: np.ndarray,
                  iou: float = 0.5, level: str = "moderate", metric: str = "bev") -> dict[str, dict]:
    """Per class with labels or detections: ``{"labels": n, "found": tp, "false_alarms": fp}`` for the given
    detections, matched as the evaluator does at ``level`` (camera view only, greedy by score, BEV IoU > ``iou``,
    DontCare and too-small / other-difficulty labels ignored), and ``"all_labels"`` / ``"all_overlapped"``: every
    label of the class whatever its difficulty, and how many have a same-class detection above ``iou``
    (:func:`~.kitti_metric.label_matches`, a reading aid beside the evaluator's count)."""
    det = restrict_to_fov(FrameBoxes(np.asarray(boxes, np.float64).reshape(-1, 7), list(classes),
                                     np.asarray(scores, np.float64)), labels.calib)
    rows = label_matches([labels.frame], [det])
    out = {}
    for cls in CLASSES:
        _, tp, n = match_frame(labels.frame, det, cls, DIFFICULTIES.index(level), iou, metric)
        mine = [r for r in rows if r["class"] == cls]
        if n or len(tp) or mine:
            out[cls] = {"labels": int(n), "found": int(tp.sum()), "false_alarms": int((~tp).sum()),
                        "all_labels": len(mine), "all_overlapped": sum(r["best_iou_bev"] > iou for r in mine)}
    return out
