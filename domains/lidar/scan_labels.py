"""Ground truth for a scan: KITTI's ``label_2/<frame>.txt`` (and ``calib/<frame>.txt``) next to ``velodyne/<frame>.bin``,
or given as files of their own (an upload loses the folder: :func:`sort_label_files` tells label from calibration by
content); read with the repo's KITTI readers and scored with its evaluator's matching (the demo tab's "found k of n").

Only KITTI's layout is recognised; labels cover camera 2's field of view only, so detections elsewhere are neither
right nor wrong (they are dropped before matching, as :func:`~.kitti_metric.restrict_to_fov` does for AP).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskworks.core.io import InputError

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


#: a KITTI label or calibration file is a few kB; anything far larger is not one (and is not read)
MAX_LABEL_FILE_BYTES = 1 << 20


def sort_label_files(paths: list[str | Path]) -> tuple[Path | None, Path | None]:
    """(label, calibration) among up to two text files, told apart by content (a calibration has a
    ``Tr_velo_to_cam`` line), whatever their names; an :class:`InputError` names a file that is neither."""
    how = "give KITTI's label_2/<frame>.txt and calib/<frame>.txt of the scan"
    label = calib = None
    for p in map(Path, paths):
        size = p.stat().st_size
        if size > MAX_LABEL_FILE_BYTES:
            raise InputError(p, f"is {size:,} bytes, far more than a KITTI label or calibration file", how)
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            raise InputError(p, "is not a text file", how) from None
        if any(line.split(":")[0].strip().startswith("Tr_velo") for line in text.splitlines() if ":" in line):
            if calib is not None:
                raise InputError(p, f"is a second calibration file (after {calib.name})", how)
            calib = p
        else:
            if label is not None:
                raise InputError(p, f"is a second label file (after {label.name}; a calibration has a Tr_velo_to_cam line)", how)
            label = p
    return label, calib


def scan_labels(scan_path: str | Path, calib_path: str | Path | None = None,
                label_path: str | Path | None = None) -> ScanLabels | None:
    """The scan's labels (``label_path``, else the file beside the scan), as camera-frame boxes moved into the LiDAR
    frame by the calibration (``calib_path``, else the file beside the scan; :func:`~.kitti_metric.objects_to_frame`).
    ``None`` when no label file is found; a label file given without any calibration is an :class:`InputError`
    (KITTI labels are in camera coordinates: without ``Tr_velo_to_cam`` they cannot be placed in the scan)."""
    label = Path(label_path) if label_path else find_label(scan_path)
    calib = Path(calib_path) if calib_path else find_calib(scan_path)
    if label is None:
        return None
    if calib is None:
        if label_path is None:
            return None
        raise InputError(label, "came without the scan's calibration: KITTI labels are in camera coordinates",
                         "give calib/<frame>.txt of the same frame with it")
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
