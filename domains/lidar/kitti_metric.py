"""KITTI-style 3-D detection evaluation: AP over 40 recall points (R40) in BEV and 3-D, by difficulty.

What follows the KITTI / OpenPCDet protocol:
- IoU thresholds per class: ``strict`` Car 0.7, Pedestrian 0.5, Cyclist 0.5; ``loose`` 0.5 / 0.25 / 0.25.
- Difficulty from the 2-D box height, occlusion and truncation of each label: easy / moderate /
  hard need height >= 40 / 25 / 25 px, occlusion <= 0 / 1 / 2, truncation <= 0.15 / 0.3 / 0.5; a
  harder level includes the easier objects. Labels failing the level are *ignored* (a detection on
  them is neither TP nor FP), as are the neighbouring classes (Van for Car, Person_sitting for
  Pedestrian). Detections whose projected 2-D box is lower than the level's height are ignored.
- AP_R40 = mean over recall r in {1/40, ..., 1} of the interpolated precision max_{r' >= r} p(r').
- Only the camera field of view is labelled in KITTI, so predictions whose centre does not project
  into the image (``IMAGE_SHAPE``) are dropped before matching (OpenPCDet does the same).

Simplifications (stated, not hidden): DontCare regions are not used (OpenPCDet uses them only in
the 2-D bbox metric, not BEV/3-D); matching is greedy in score order (each detection takes the
unmatched label with the highest IoU), not KITTI's per-threshold re-assignment; the two agree unless
several detections compete for one label.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from maskworks.core.io import InputError

from .iou import bev_iou, iou_3d
from .kitti import (
    IMAGE_SHAPE,
    KittiCalib,
    KittiObject,
    labels_to_lidar_boxes,
    project_boxes_to_image,
    read_calib,
    read_label,
)

CLASSES = ("Car", "Pedestrian", "Cyclist")
IOU_THRESHOLDS = {"strict": {"Car": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5},
                  "loose": {"Car": 0.5, "Pedestrian": 0.25, "Cyclist": 0.25}}
DIFFICULTIES = ("easy", "moderate", "hard")
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
NEIGHBOUR_CLASS = {"Car": "Van", "Pedestrian": "Person_sitting", "Cyclist": "__none__"}


@dataclass
class FrameBoxes:
    """Labels or detections of one frame, LiDAR boxes ``[M, 7]``.

    For labels: ``height`` (2-D box px), ``occluded`` and ``truncated`` give the difficulty. For
    detections: ``scores``; ``height`` is NaN where unknown (then no height-based ignoring).
    """

    boxes: np.ndarray
    classes: list[str]
    scores: np.ndarray | None = None
    height: np.ndarray | None = None
    occluded: np.ndarray | None = None
    truncated: np.ndarray | None = None
    name: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 7)
        m = len(self.boxes)
        if len(self.classes) != m:
            raise ValueError(f"{self.name}: {m} boxes but {len(self.classes)} classes")
        if self.height is None:
            self.height = np.full(m, np.nan)
        if self.occluded is None:
            self.occluded = np.zeros(m, dtype=np.int64)
        if self.truncated is None:
            self.truncated = np.zeros(m)


def objects_to_frame(objects: list[KittiObject], calib: KittiCalib, name: str = "") -> FrameBoxes:
    """KITTI label objects (DontCare dropped) -> :class:`FrameBoxes`; a 16th column becomes the score."""
    kept = [o for o in objects if o.type != "DontCare"]
    boxes, classes = labels_to_lidar_boxes(kept, calib)
    scores = np.array([o.score if o.score is not None else 1.0 for o in kept], dtype=np.float64)
    return FrameBoxes(boxes, classes, scores, np.array([o.bbox[3] - o.bbox[1] for o in kept], dtype=np.float64),
                      np.array([o.occluded for o in kept], dtype=np.int64),
                      np.array([o.truncated for o in kept], dtype=np.float64), name)


def in_camera_fov(boxes: np.ndarray, calib: KittiCalib, image_shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Bool ``[M]``: the box centre lies in front of camera 2 and projects inside the image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    uv, depth = calib.rect_to_image(calib.lidar_to_rect(boxes[:, :3]))
    h, w = image_shape
    return (depth > 0.1) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)


def _gt_status(gt: FrameBoxes, cls: str, level: int) -> np.ndarray:
    """Per label: 1 counted, 0 ignored (wrong difficulty or neighbour class), -1 other class."""
    status = np.full(len(gt.boxes), -1, dtype=np.int64)
    for i, c in enumerate(gt.classes):
        if c == cls:
            ok = (gt.height[i] >= MIN_HEIGHT[level] or np.isnan(gt.height[i])) \
                and gt.occluded[i] <= MAX_OCCLUSION[level] and gt.truncated[i] <= MAX_TRUNCATION[level]
            status[i] = 1 if ok else 0
        elif c == NEIGHBOUR_CLASS[cls]:
            status[i] = 0
    return status


def match_frame(gt: FrameBoxes, det: FrameBoxes, cls: str, level: int, threshold: float,
                metric: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Greedy score-ordered matching in one frame: (scores, tp flags) of the counted detections, #labels."""
    status = _gt_status(gt, cls, level)
    d_idx = np.array([i for i, c in enumerate(det.classes) if c == cls], dtype=np.int64)
    g_idx = np.nonzero(status >= 0)[0]
    n_gt = int((status == 1).sum())
    if len(d_idx) == 0:
        return np.zeros(0), np.zeros(0, dtype=bool), n_gt
    scores = det.scores[d_idx]
    d_idx = d_idx[np.argsort(-scores, kind="stable")]
    fn = bev_iou if metric == "bev" else iou_3d
    iou = fn(det.boxes[d_idx], gt.boxes[g_idx]) if len(g_idx) else np.zeros((len(d_idx), 0))
    taken = np.zeros(len(g_idx), dtype=bool)
    out_s, out_tp = [], []
    for k, di in enumerate(d_idx):
        cand = np.where(~taken & (iou[k] >= threshold), iou[k], -1.0)
        j = int(np.argmax(cand)) if len(cand) else -1
        if j >= 0 and cand[j] >= 0:
            taken[j] = True
            if status[g_idx[j]] == 1:
                out_s.append(det.scores[di])
                out_tp.append(True)
            continue  # matched an ignored label: neither TP nor FP
        h = det.height[di]
        if not np.isnan(h) and h < MIN_HEIGHT[level]:
            continue  # too small in the image for this level: ignored
        out_s.append(det.scores[di])
        out_tp.append(False)
    return np.asarray(out_s, dtype=np.float64), np.asarray(out_tp, dtype=bool), n_gt


def ap_r40(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """AP (percent) over recall points 1/40 ... 40/40 with interpolated precision."""
    if num_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(tp, dtype=bool)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / num_gt
    precision = ctp / np.maximum(ctp + cfp, 1)
    ap = 0.0
    for r in np.arange(1, 41) / 40:
        ok = recall >= r - 1e-12
        ap += precision[ok].max() if ok.any() else 0.0
    return 100.0 * ap / 40


def evaluate(gts: list[FrameBoxes], dets: list[FrameBoxes], classes: tuple[str, ...] = CLASSES,
             settings: tuple[str, ...] = ("strict", "loose")) -> dict:
    """``{setting: {class: {"bev"|"3d": {difficulty: AP_R40}, "num_gt": {difficulty: n}}}}``; NaN where no labels."""
    if len(gts) != len(dets):
        raise ValueError(f"{len(gts)} label frames but {len(dets)} detection frames")
    res: dict = {}
    for setting in settings:
        res[setting] = {}
        for cls in classes:
            thr = IOU_THRESHOLDS[setting][cls]
            entry: dict = {"iou_threshold": thr, "num_gt": {}}
            for metric in ("bev", "3d"):
                entry[metric] = {}
                for lv, diff in enumerate(DIFFICULTIES):
                    s_all, tp_all, n = [], [], 0
                    for g, d in zip(gts, dets):
                        s, tp, ng = match_frame(g, d, cls, lv, thr, metric)
                        s_all.append(s)
                        tp_all.append(tp)
                        n += ng
                    entry[metric][diff] = ap_r40(np.concatenate(s_all), np.concatenate(tp_all), n)
                    entry["num_gt"][diff] = n
            res[setting][cls] = entry
    return res


def label_matches(gts: list[FrameBoxes], dets: list[FrameBoxes], classes: tuple[str, ...] = CLASSES) -> list[dict]:
    """Per label of ``classes``: its range and the same-class detection overlapping it most in BEV
    (IoU, score, centre distance), or the nearest one when none overlaps. For reading which objects a
    detector finds, next to the AP table; the AP is what counts."""
    rows = []
    for gt, det in zip(gts, dets):
        for i, c in enumerate(gt.classes):
            if c not in classes:
                continue
            b = gt.boxes[i]
            row = {"frame": gt.name, "class": c, "range_m": round(float(np.hypot(b[0], b[1])), 1),
                   "best_iou_bev": 0.0, "score": None, "distance_m": None}
            same = [k for k, d in enumerate(det.classes) if d == c]
            if same:
                iou = bev_iou(gt.boxes[i:i + 1], det.boxes[same])[0]
                dist = np.hypot(det.boxes[same, 0] - b[0], det.boxes[same, 1] - b[1])
                k = int(np.argmax(iou)) if iou.max() > 0 else int(np.argmin(dist))
                row.update(best_iou_bev=round(float(iou[k]), 3), score=round(float(det.scores[same[k]]), 3),
                           distance_m=round(float(dist[k]), 2))
            rows.append(row)
    return rows


def format_matches(rows: list[dict]) -> str:
    lines = ["| frame | label | range (m) | best same-class detection: BEV IoU | score | centre offset (m) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        f = lambda v: "–" if v is None else str(v)  # noqa: E731
        lines.append(f"| {r['frame']} | {r['class']} | {r['range_m']} | {r['best_iou_bev']} | {f(r['score'])} | "
                     f"{f(r['distance_m'])} |")
    return "\n".join(lines)


def json_safe(o):
    """NaN (no labels) -> None, numpy scalars -> Python, so the result is strict JSON."""
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


def format_table(res: dict) -> str:
    """Markdown table of a :func:`evaluate` result (NaN = no labels of that class/level)."""
    lines = ["| setting | class | IoU | BEV easy | BEV mod | BEV hard | 3D easy | 3D mod | 3D hard | #labels (e/m/h) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for setting, per in res.items():
        for cls, e in per.items():
            f = lambda v: "–" if np.isnan(v) else f"{v:.1f}"  # noqa: E731
            lines.append(f"| {setting} | {cls} | {e['iou_threshold']} | "
                         + " | ".join(f(e[m][d]) for m in ("bev", "3d") for d in DIFFICULTIES)
                         + " | " + "/".join(str(e["num_gt"][d]) for d in DIFFICULTIES) + " |")
    return "\n".join(lines)


def kitti_dirs(root: str | Path) -> Path:
    """The folder holding ``velodyne/``, ``label_2/``, ``calib/`` (``root`` or ``root/training``)."""
    root = Path(root)
    for cand in (root, root / "training"):
        if (cand / "label_2").is_dir() and (cand / "calib").is_dir():
            return cand
    raise InputError(root, "no label_2/ and calib/ folders here or under training/",
                         "point --data at a KITTI object folder (velodyne/, label_2/, calib/)")


def load_ground_truth(root: Path, frames: list[str]) -> tuple[list[FrameBoxes], list[KittiCalib]]:
    gts, calibs = [], []
    for f in frames:
        calib = read_calib(root / "calib" / f"{f}.txt")
        gts.append(objects_to_frame(read_label(root / "label_2" / f"{f}.txt"), calib, f))
        calibs.append(calib)
    return gts, calibs


def restrict_to_fov(det: FrameBoxes, calib: KittiCalib) -> FrameBoxes:
    """Keep detections in camera 2's view; fill their 2-D box heights from the projection."""
    keep = in_camera_fov(det.boxes, calib)
    boxes = det.boxes[keep]
    bb = project_boxes_to_image(boxes, calib, image_shape=IMAGE_SHAPE) if len(boxes) else np.zeros((0, 4))
    h = bb[:, 3] - bb[:, 1]
    return FrameBoxes(boxes, [c for c, k in zip(det.classes, keep) if k], det.scores[keep], h, name=det.name)


def sim_settings_from(path: str | Path) -> dict:
    """The ``data.sim`` block of a recipe / run ``config.yaml`` or of a detector's safetensors metadata."""
    from .simulator import recipe_sim

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file", "give a recipe .yaml, a run's config.yaml or a detector .safetensors")
    if path.suffix == ".safetensors":
        from maskworks.core.training.checkpoint import weights_metadata

        data = weights_metadata(path).get("data")
    else:
        from maskworks.core.training.config import RecipeError, load_recipe

        try:
            data = load_recipe(path).get("data")
        except RecipeError as e:
            raise InputError(path, str(e), "give a recipe .yaml with a data.sim block") from None
    if not isinstance(data, dict):
        raise InputError(path, "no data section", "give a detector recipe / config with data.sim")
    return recipe_sim(data)
