"""KITTI-style 3-D detection evaluation: AP over 40 recall points (R40) in BEV and 3-D, by difficulty.

What follows the KITTI devkit (``evaluate_object_3d_offline.cpp``) and OpenPCDet's ``kitti_object_eval_python``:
- IoU thresholds per class: ``strict`` Car 0.7, Pedestrian 0.5, Cyclist 0.5; ``loose`` 0.5 / 0.25 / 0.25; a
  detection matches a label when their IoU exceeds the threshold.
- Difficulty from the 2-D box height, occlusion and truncation of each label: easy / moderate /
  hard need height > 40 / 25 / 25 px, occlusion <= 0 / 1 / 2, truncation <= 0.15 / 0.3 / 0.5; a
  harder level includes the easier objects. Labels failing the level are *ignored* (a detection on
  them is neither TP nor FP), as are the neighbouring classes (Van for Car, Person_sitting for
  Pedestrian). Detections whose 2-D box is lower than the level's height are ignored: predictions
  need their projected 2-D boxes (a label file without them scores nothing in the official tools).
- DontCare regions (``dontcare=True``, default; the devkit's rule for every metric): a detection left
  unmatched whose 2-D box lies inside a DontCare box by more than the IoU threshold (intersection over
  the detection's own area) is not a false positive. OpenPCDet's Python port applies this to the 2-D
  metric only (``dontcare=False`` gives its BEV / 3-D figures).
- Only the camera field of view is labelled in KITTI, so predictions whose projected box does not reach
  into the image are dropped before matching (:func:`restrict_to_fov`); truncated objects beside the
  sensor keep the part of their box in front of the camera.

Two ways to turn matches into AP_R40 (``conventions``):
- ``"exact"`` (default, what maskworks prints): greedy score-ordered matching (each detection takes the
  unmatched label with the highest IoU), precision interpolated at recall 1/40 ... 40/40, mean of the 40.
- ``"official"``: the devkit's procedure, so a figure can be set beside published KITTI tables: score
  thresholds picked from the matched scores (``get_thresholds``), matching redone at each, precision at the
  k-th threshold credited to recall point k/40 and the sum over points 1..40 divided by 40. With fewer than
  40 labels there are fewer thresholds than points, so a perfect detector of N < 40 labels scores
  (N - 1) / 40 (e.g. 77.5 for 32 labels), and with N > 40 each threshold's precision is credited one recall
  step above the recall it reached. Both agree for large label sets.
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
    bbox: np.ndarray | None = None  # [M, 4] 2-D boxes (x1, y1, x2, y2), NaN where unknown
    dontcare: np.ndarray | None = None  # labels: [D, 4] DontCare 2-D regions

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
        if self.bbox is None:
            self.bbox = np.full((m, 4), np.nan)
        self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(m, 4)
        self.dontcare = np.zeros((0, 4)) if self.dontcare is None else np.asarray(self.dontcare, np.float64).reshape(-1, 4)


def objects_to_frame(objects: list[KittiObject], calib: KittiCalib, name: str = "") -> FrameBoxes:
    """KITTI label objects -> :class:`FrameBoxes` (DontCare objects become its ``dontcare`` regions); a 16th
    column becomes the score."""
    kept = [o for o in objects if o.type != "DontCare"]
    boxes, classes = labels_to_lidar_boxes(kept, calib)
    scores = np.array([o.score if o.score is not None else 1.0 for o in kept], dtype=np.float64)
    bbox = np.array([o.bbox for o in kept], dtype=np.float64).reshape(-1, 4)
    return FrameBoxes(boxes, classes, scores, bbox[:, 3] - bbox[:, 1],
                      np.array([o.occluded for o in kept], dtype=np.int64),
                      np.array([o.truncated for o in kept], dtype=np.float64), name, bbox=bbox,
                      dontcare=np.array([o.bbox for o in objects if o.type == "DontCare"], np.float64).reshape(-1, 4))


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
            ok = (gt.height[i] > MIN_HEIGHT[level] or np.isnan(gt.height[i])) \
                and gt.occluded[i] <= MAX_OCCLUSION[level] and gt.truncated[i] <= MAX_TRUNCATION[level]
            status[i] = 1 if ok else 0
        elif c == NEIGHBOUR_CLASS[cls]:
            status[i] = 0
    return status


def dontcare_overlap(bbox: np.ndarray, dontcare: np.ndarray) -> np.ndarray:
    """``[M, D]`` intersection of each 2-D box with each DontCare region over the box's own area (the devkit's
    ``boxoverlap(det, dc, 0)``); 0 for unknown (NaN) boxes."""
    bbox, dontcare = np.asarray(bbox, float).reshape(-1, 4), np.asarray(dontcare, float).reshape(-1, 4)
    iw = np.minimum(bbox[:, None, 2], dontcare[None, :, 2]) - np.maximum(bbox[:, None, 0], dontcare[None, :, 0])
    ih = np.minimum(bbox[:, None, 3], dontcare[None, :, 3]) - np.maximum(bbox[:, None, 1], dontcare[None, :, 1])
    area = ((bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1]))[:, None]
    out = np.where((iw > 0) & (ih > 0), iw * ih / np.where(area > 0, area, 1.0), 0.0)
    return np.nan_to_num(out)


def match_frame(gt: FrameBoxes, det: FrameBoxes, cls: str, level: int, threshold: float,
                metric: str, dontcare: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
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
    in_dc = (dontcare_overlap(det.bbox[d_idx], gt.dontcare) > threshold).any(1) if dontcare and len(gt.dontcare) \
        else np.zeros(len(d_idx), bool)
    taken = np.zeros(len(g_idx), dtype=bool)
    out_s, out_tp = [], []
    for k, di in enumerate(d_idx):
        cand = np.where(~taken & (iou[k] > threshold), iou[k], -1.0)
        j = int(np.argmax(cand)) if len(cand) else -1
        h = det.height[di]
        too_small = not np.isnan(h) and h < MIN_HEIGHT[level]
        if j >= 0 and cand[j] >= 0:
            taken[j] = True
            if status[g_idx[j]] == 1 and not too_small:
                out_s.append(det.scores[di])
                out_tp.append(True)
            continue  # matched an ignored label, or too small to count (as the devkit: the label stays unfound)
        if too_small:
            continue  # too small in the image for this level: ignored
        if in_dc[k]:
            continue  # inside a DontCare region: not a false positive
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


CONVENTIONS = ("exact", "official")


def evaluate(gts: list[FrameBoxes], dets: list[FrameBoxes], classes: tuple[str, ...] = CLASSES,
             settings: tuple[str, ...] = ("strict", "loose"), conventions: str = "exact", dontcare: bool = True) -> dict:
    """``{setting: {class: {"bev"|"3d": {difficulty: AP_R40}, "num_gt": {difficulty: n}}}}``; NaN where no labels.
    ``conventions`` and ``dontcare``: see the module docstring."""
    if len(gts) != len(dets):
        raise ValueError(f"{len(gts)} label frames but {len(dets)} detection frames")
    if conventions not in CONVENTIONS:
        raise ValueError(f"conventions must be one of {CONVENTIONS}, not {conventions!r}")
    res: dict = {}
    for setting in settings:
        res[setting] = {}
        for cls in classes:
            thr = IOU_THRESHOLDS[setting][cls]
            entry: dict = {"iou_threshold": thr, "num_gt": {}}
            for metric in ("bev", "3d"):
                entry[metric] = {}
                for lv, diff in enumerate(DIFFICULTIES):
                    if conventions == "official":
                        ap, n = official_ap_r40(gts, dets, cls, lv, thr, metric, dontcare)
                    else:
                        s_all, tp_all, n = [], [], 0
                        for g, d in zip(gts, dets):
                            s, tp, ng = match_frame(g, d, cls, lv, thr, metric, dontcare)
                            s_all.append(s)
                            tp_all.append(tp)
                            n += ng
                        ap = ap_r40(np.concatenate(s_all), np.concatenate(tp_all), n)
                    entry[metric][diff] = ap
                    entry["num_gt"][diff] = n
            res[setting][cls] = entry
    return res


# ----------------------------------------------------------------------------- the devkit's procedure
def _official_flags(gt: FrameBoxes, det: FrameBoxes, cls: str, level: int) -> tuple[np.ndarray, np.ndarray]:
    """The devkit's ``clean_data``: per label 0 counted / 1 ignored / -1 other class; per detection 1 when
    lower than the level's height (whatever its class), else 0 for the class, -1 for others."""
    ignored_gt = _gt_status(gt, cls, level)
    ignored_gt = np.where(ignored_gt == 1, 0, np.where(ignored_gt == 0, 1, -1))
    h = np.nan_to_num(det.height, nan=np.inf)
    ignored_det = np.where(h < MIN_HEIGHT[level], 1, np.where(np.array(det.classes, dtype=object) == cls, 0, -1))
    return ignored_gt.astype(np.int64), ignored_det.astype(np.int64).reshape(-1)


def _official_statistics(overlap: np.ndarray, scores: np.ndarray, ignored_gt: np.ndarray, ignored_det: np.ndarray,
                         in_dc: np.ndarray, threshold: float, thresh: float | None) -> tuple[int, int, int, list]:
    """The devkit's ``computeStatistics`` for one frame: (tp, fp, fn, matched scores); ``thresh`` None is its
    first pass (no false positives counted, every score allowed)."""
    compute_fp = thresh is not None
    below = scores < thresh if compute_fp else np.zeros(len(scores), bool)
    assigned = np.zeros(len(scores), bool)
    tp = fp = fn = 0
    matched = []
    for i in range(overlap.shape[1]):
        if ignored_gt[i] == -1:
            continue
        det_idx, valid, best, took_ignored = -1, None, 0.0, False
        for j in range(len(scores)):
            if ignored_det[j] == -1 or assigned[j] or below[j] or not overlap[j, i] > threshold:
                continue
            if not compute_fp:
                if valid is None or scores[j] > valid:
                    det_idx, valid = j, scores[j]
            elif (overlap[j, i] > best or took_ignored) and ignored_det[j] == 0:
                best, det_idx, valid, took_ignored = overlap[j, i], j, 1.0, False
            elif valid is None and ignored_det[j] == 1:
                det_idx, valid, took_ignored = j, 1.0, True
        if valid is None:
            fn += int(ignored_gt[i] == 0)
        elif ignored_gt[i] == 1 or ignored_det[det_idx] == 1:
            assigned[det_idx] = True
        else:
            tp += 1
            matched.append(float(scores[det_idx]))
            assigned[det_idx] = True
    if compute_fp:
        free = ~assigned & (ignored_det == 0) & ~below
        fp = int(free.sum()) - int((free & in_dc).sum())
    return tp, fp, fn, matched


def official_thresholds(scores: np.ndarray, num_gt: int, num_points: int = 41) -> list[float]:
    """The devkit's ``getThresholds``: from the matched scores (best first), the ones whose recall is nearest
    each recall point; the last one is always taken."""
    scores = np.sort(np.asarray(scores, float))[::-1]
    out, current = [], 0.0
    for i, s in enumerate(scores):
        lo, hi = (i + 1) / num_gt, ((i + 2) / num_gt if i < len(scores) - 1 else (i + 1) / num_gt)
        if hi - current < current - lo and i < len(scores) - 1:
            continue
        out.append(float(s))
        current += 1 / (num_points - 1.0)
    return out


def official_ap_r40(gts: list[FrameBoxes], dets: list[FrameBoxes], cls: str, level: int, threshold: float,
                    metric: str, dontcare: bool = True) -> tuple[float, int]:
    """AP_R40 (percent) and #labels by the devkit's procedure (overlaps over every class pair, as it does)."""
    fn = bev_iou if metric == "bev" else iou_3d
    frames = []
    num_gt = 0
    for g, d in zip(gts, dets):
        ig, idt = _official_flags(g, d, cls, level)
        num_gt += int((ig == 0).sum())
        ov = fn(d.boxes, g.boxes) if len(d.boxes) and len(g.boxes) else np.zeros((len(d.boxes), len(g.boxes)))
        in_dc = (dontcare_overlap(d.bbox, g.dontcare) > threshold).any(1) if dontcare and len(g.dontcare) \
            else np.zeros(len(d.boxes), bool)
        frames.append((ov, np.asarray(d.scores, float), ig, idt, in_dc))
    if num_gt == 0:
        return float("nan"), 0
    matched = [s for f in frames for s in _official_statistics(*f, threshold, None)[3]]
    thresholds = official_thresholds(np.array(matched), num_gt)
    precision = np.zeros(41)
    for k, t in enumerate(thresholds[:41]):
        tp = fp = 0
        for f in frames:
            a, b, _, _ = _official_statistics(*f, threshold, t)
            tp, fp = tp + a, fp + b
        precision[k] = tp / (tp + fp) if tp + fp else 0.0
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(precision[1:].sum() / 40 * 100), num_gt


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


def restrict_to_fov(det: FrameBoxes, calib: KittiCalib, image_shape: tuple[int, int] = IMAGE_SHAPE,
                    given_bbox: bool = False) -> FrameBoxes:
    """Keep detections whose projected box reaches into camera 2's image (a truncated car beside the sensor
    keeps the part in front of the camera); give them their 2-D boxes (clipped to the image) and heights.
    ``given_bbox``: keep the detections' own 2-D boxes (read from label files, as the official tools do: a file
    written without them, ``-1 -1 -1 -1``, has 0 px boxes, ignored at every level)."""
    proj = project_boxes_to_image(det.boxes, calib) if len(det.boxes) else np.zeros((0, 4))
    h, w = image_shape
    keep = np.isfinite(proj).all(1) & (proj[:, 2] > 0) & (proj[:, 0] < w - 1) & (proj[:, 3] > 0) & (proj[:, 1] < h - 1)
    bb = det.bbox[keep].copy() if given_bbox else proj[keep]
    if not given_bbox:
        bb[:, [0, 2]] = bb[:, [0, 2]].clip(0, w - 1)
        bb[:, [1, 3]] = bb[:, [1, 3]].clip(0, h - 1)
    return FrameBoxes(det.boxes[keep], [c for c, k in zip(det.classes, keep) if k], det.scores[keep],
                      bb[:, 3] - bb[:, 1], name=det.name, bbox=bb)


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
