"""The detection job, shared by the tab, ``maskworks predict lidar/detection`` and Python users:
a scan file -> checks and notes -> detections -> KITTI label text + JSON.

    from maskworks.domains.lidar.detection.predict import ScanDetector
    result = ScanDetector.load().predict_file("000002.bin")        # or .pcd.bin / .pcd / .ply / .npy
    result.to_json()["detections"]; result.write(Path("out/000002"))  # out/000002.txt (KITTI label_2)

Every input goes through :func:`read_lidar_input`, so the tab and the CLI read the same formats, apply the
same point cap and report the same notes (units, axes, ego returns, NaN points).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from maskworks.core.io import InputError
from maskworks.core.io.points import SCAN_SUFFIXES, read_scan

from ..kitti import KittiCalib, detections_to_objects, read_calib, write_label
from .decode import Detections
from .inference import (
    DEFAULT_SCORE_THRESHOLD,
    EGO_RADIUS,
    LidarDetector,
    RangeDetector,
    drop_ego_returns,
    load_detector,
)

MAX_POINTS = 300_000  # more points are randomly subsampled (seeded): a scan of 300k points takes ~1 s on a CPU
MIN_SCORE = 0.05      # detections are computed down to this score once; a higher threshold only filters them


def sanity_notes(pts: np.ndarray) -> list[str]:
    """Warnings when the cloud does not look like a LiDAR scan in metres with z up."""
    lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
    span = hi - lo
    notes = []
    if span[:2].max() < 5:
        notes.append(f"The cloud spans only {span[0]:.2f} x {span[1]:.2f} x {span[2]:.2f} units: it does not look like "
                     "a street scan in **metres** (an object scan, or normalised coordinates?). Nothing will be detected "
                     "unless it is a scene in metres.")
    elif span[:2].max() > 1000:
        notes.append(f"The cloud spans {span[0]:,.0f} x {span[1]:,.0f} units: probably **millimetres** or centimetres; "
                     "convert to metres (divide by 1000 for mm).")
    if span[1] < 0.5 * span[2] and span[2] > 5 and span[0] > 5:
        notes.append(f"z spans {span[2]:.1f} while y spans only {span[1]:.1f}: the cloud looks **y-up** (camera / "
                     "graphics convention). The detector expects x forward, y left, z up (KITTI LiDAR frame).")
    return notes


@dataclass
class LidarInput:
    points: np.ndarray  # [N, 3] float32, metres, LiDAR frame (after the cap)
    source: str
    num_points_read: int
    notes: list[str] = field(default_factory=list)


def read_lidar_input(path: str | Path, max_points: int = MAX_POINTS) -> LidarInput:
    """A scan file as the detector takes it, with every note a user should see. :class:`InputError` when unusable."""
    scan = read_scan(path)
    pts = scan.points[:, :3]
    notes = list(scan.notes)
    n = len(pts)
    if n > max_points:
        notes.append(f"{n:,} points: randomly subsampled to {max_points:,} (the cap) before detection.")
        pts = pts[np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))]
    notes += sanity_notes(pts)
    ego = len(pts) - len(drop_ego_returns(pts))
    if ego:
        notes.append(f"{ego:,} returns within {EGO_RADIUS:g} m of the sensor (the ego vehicle's roof and body) are "
                     "ignored by the detector.")
    return LidarInput(np.ascontiguousarray(pts, dtype=np.float32), scan.source, n, notes)


def find_calib(scan_path: str | Path) -> Path | None:
    """KITTI's ``calib/<frame>.txt`` beside the scan's ``velodyne/`` folder, when there is one."""
    p = Path(scan_path)
    cand = p.parent.parent / "calib" / f"{p.name.split('.')[0]}.txt"
    return cand if p.parent.name == "velodyne" and cand.is_file() else None


@dataclass
class DetectionResult:
    source: str
    points: np.ndarray
    detections: Detections  # best first
    threshold: float
    notes: list[str]
    seconds: float
    device: str
    num_points_read: int
    calib: KittiCalib | None = None
    calib_source: str | None = None

    def at(self, threshold: float) -> "DetectionResult":
        """The same scan at a higher score threshold (no second run of the detector)."""
        if threshold < self.threshold:
            raise ValueError(f"computed down to score {self.threshold}; cannot lower the threshold to {threshold}")
        return replace(self, detections=self.detections.filter(threshold), threshold=float(threshold))

    def to_json(self) -> dict:
        return {"file": Path(self.source).name, "num_points": int(self.num_points_read), "threshold": float(self.threshold),
                "frame": "LiDAR: metres, x forward, y left, z up", "calibration": self.calib_source,
                "notes": self.notes, "detections": self.detections.to_json()}

    def kitti_objects(self):
        d = self.detections
        return detections_to_objects(d.boxes, d.classes, d.scores, self.calib)

    def write(self, base: Path) -> list[Path]:
        """``base.txt``: KITTI ``label_2`` text (16th column = score; camera frame and 2-D boxes from the
        calibration when one was found, else an axis swap and no 2-D boxes)."""
        path = Path(str(base) + ".txt")
        write_label(path, self.kitti_objects())
        return [path]


class ScanDetector:
    """A loaded detector (one model, or the shipped near/far pair) that reads files."""

    def __init__(self, detector: LidarDetector | RangeDetector) -> None:
        self.detector = detector

    @classmethod
    def load(cls, weights: str | Path | None = None, far_weights: str | Path | None = None,
             device: str | None = None) -> "ScanDetector":
        """:func:`~.inference.load_detector` (the shipped pair by default; GPU when present)."""
        return cls(load_detector(weights, far_weights, device))

    @property
    def device(self) -> str:
        return self.detector.device.type

    def predict_input(self, inp: LidarInput, threshold: float = DEFAULT_SCORE_THRESHOLD, calib: str | Path | None = None,
                      **inference) -> DetectionResult:
        t = time.perf_counter()
        det = self.detector.predict(inp.points, score_threshold=threshold, **inference)
        seconds = time.perf_counter() - t
        calib_path = Path(calib) if calib else find_calib(inp.source)
        notes = list(inp.notes)
        cal = read_calib(calib_path) if calib_path else None
        if cal is None:
            notes.append("No KITTI calibration given or found beside the scan (calib/<frame>.txt next to velodyne/): "
                         "KITTI label files are written with an axis swap and without 2-D boxes, which the official "
                         "KITTI evaluator scores as missing; pass the calibration to score them.")
        return DetectionResult(inp.source, inp.points, det, float(threshold), notes, seconds, self.device,
                               inp.num_points_read, cal, str(calib_path.name) if calib_path else None)

    def predict_file(self, path: str | Path, threshold: float = DEFAULT_SCORE_THRESHOLD,
                     calib: str | Path | None = None, **inference) -> DetectionResult:
        """Detections in one scan file (``inference``: ``tta``, ``settle``, ``fit``; all on by default)."""
        return self.predict_input(read_lidar_input(path), threshold, calib, **inference)


__all__ = ["DetectionResult", "LidarInput", "MAX_POINTS", "MIN_SCORE", "SCAN_SUFFIXES", "ScanDetector", "find_calib",
           "read_lidar_input", "sanity_notes", "InputError"]
