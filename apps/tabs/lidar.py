"""Demo tab: 3-D detection (Car / Pedestrian / Cyclist) in a LiDAR scan with the shipped detector (R-MAE backbone).

Upload a KITTI ``.bin``, nuScenes ``.pcd.bin``, ``.pcd``, ``.ply`` or ``.npy`` (read here, not by
Gradio, so a bad file gets a message naming it), or pick a shipped KITTI / nuScenes scan. Shows an
interactive Plotly 3-D view (points subsampled for speed, boxes coloured by class), a bird's-eye
image, a detection table, a score-threshold slider and KITTI-label / JSON downloads, the ground truth when KITTI's
label_2/ and calib/ sit beside the scan's velodyne/ (dashed grey, with found / labelled counts), and the R-MAE view
of the same scan: 80 % of its occupied voxels hidden in 1-degree sectors and reconstructed by the shipped
R-MAE (what the backbone learned before any label). The detector sees the region of its voxel grid
(the tab says which) and z in [-3, 1) m around the sensor (metres, x forward, y left, z up).
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

PLOT_POINTS = 30_000
COLORS = {"Car": "#e6194b", "Pedestrian": "#3cb44b", "Cyclist": "#4363d8"}
GT_COLOR, GT_COLOR_RGB = "#303030", (200, 200, 200)  # ground truth, dashed: dark grey on the 3-D view's light
# background, light grey on the bird's-eye image's black
COLUMNS = ["class", "score", "x", "y", "z", "l", "w", "h", "yaw"]
UPLOAD_TYPES = [".bin", ".pcd", ".ply", ".npy", ".npz", ".xyz", ".txt"]  # maskworks.core.io.points.SCAN_SUFFIXES


@lru_cache(maxsize=1)
def detector():
    """The shipped detector (the near model, and the far one beyond the hand-over) as the detection job, loaded once."""
    from maskworks.domains.lidar.detection.predict import ScanDetector

    return ScanDetector.load()


@lru_cache(maxsize=1)
def rmae():
    """The shipped whole R-MAE (backbone + occupancy decoder) and its probability threshold, loaded once."""
    import torch
    from maskworks.core.training.task import load_trained
    from maskworks.data import data_path

    _, model = load_trained(data_path("weights", "lidar-rmae.safetensors"))
    model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()  # evaluate_scan follows the model
    threshold = float(json.loads(data_path("weights", "lidar-rmae.json").read_text()).get("threshold", 0.5))
    return model, threshold


def rmae_view(pts: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(three-panel R-MAE image or None, a line of text) for a scan: one seeded 80 % sector mask."""
    import torch
    from maskworks.domains.lidar.rmae_eval import evaluate_scan, reconstruction_view

    model, threshold = rmae()
    if int(model.voxel_grid.occupancy(pts).sum()) < 100:
        return None, "R-MAE view: fewer than 100 occupied voxels in the grid, nothing to reconstruct."
    with torch.no_grad():
        res = evaluate_scan(model, pts, seed=0, thresholds={"shipped": threshold})
    m, base = res["model"]["threshold shipped"], res["baselines"]["copy nearest kept sector"]
    text = (f"R-MAE view: {res['masked_voxels']:,} of {res['occupied_voxels']:,} occupied voxels hidden in 1° sectors "
            f"(left: what the model sees); the reconstruction of the hidden sectors (middle: green hit, red false alarm, "
            f"blue missed) has IoU **{m['iou']:.2f}** with the scan (right; copying the nearest kept sector: "
            f"{base['iou']:.2f}).")
    return reconstruction_view(res, threshold), text


def shipped_grid():
    """The grid the shipped detector covers (the far model's when one is shipped), read from the weights'
    header (no model built: the tab's text needs it at start-up, the model only at the first scan)."""
    from maskworks.domains.lidar.detection.inference import (
        shipped_weights,
        weights_grid,
    )

    near, far = shipped_weights()
    return weights_grid(far or near)


def shipped_init() -> str:
    """How the shipped detector's backbone was initialised, from its record (``lidar-detector.json``)."""
    from maskworks.domains.lidar.detection.inference import shipped_record

    init = str(shipped_record().get("init", ""))
    return "unknown" if not init else "random-init" if init.startswith(("random", "scratch")) else "R-MAE-pretrained"


def model_card() -> str:
    """What the shipped detector was trained on and its cross-validated AP on real frames, from its record."""
    from maskworks.domains.lidar.detection.inference import shipped_record

    rec = shipped_record()
    cv = rec.get("cross_validation") or {}
    text = f"Trained on {rec.get('trained_on', 'see docs/3d/detection.md')}."
    if cv:
        n = cv.get("num_labels", {})
        text += (f" **Cross-validated on {cv.get('frames', 31)} real KITTI frames** ({cv.get('folds', 3)} folds; each frame "
                 f"scored by a model that never trained on it; {cv.get('seeds', 2)} seeds): Car BEV AP (IoU 0.7) "
                 f"**{cv['car_bev_ap07_moderate']:.1f}**, Car BEV AP (IoU 0.5) {cv['car_bev_ap05_moderate']:.1f} (moderate, "
                 f"{n.get('Car', '?')} cars); Pedestrian BEV AP (IoU 0.5) {cv['pedestrian_bev_ap05_moderate']:.1f} "
                 f"({n.get('Pedestrian', '?')}); Cyclist {cv['cyclist_bev_ap05_moderate']:.1f} ({n.get('Cyclist', '?')}) "
                 "— a small-data detector, not a benchmark one (docs/3d/detection.md).")
    return text


def examples() -> dict[str, Path]:
    """Shipped scans: KITTI frames (000010 by default: eight cars, one truncated beside the sensor) and the nuScenes
    sweep. Every KITTI frame here is in the shipped model's training set (its figures come from cross-validation)."""
    from maskworks.data import data_path

    out: dict[str, Path] = {}
    try:
        more = data_path("3d", "kitti_more", "training", "velodyne")
        out["KITTI 000010: 8 cars, one truncated beside the sensor (camera-view crop)"] = more / "000010.bin"
        out["KITTI 000134: pedestrians and cyclists (camera-view crop)"] = more / "000134.bin"
        for p in sorted(data_path("3d", "kitti", "training", "velodyne").glob("*.bin")):
            out[f"KITTI {p.stem} (360-degree scan)"] = p
        for p in sorted(data_path("3d", "nuscenes").glob("*.pcd.bin")):
            out["nuScenes LIDAR_TOP sweep (32 beams, other sensor)"] = p
    except FileNotFoundError:
        pass
    return out


def bev_image(pts: np.ndarray, det, x_range: tuple[float, float] = (-40.0, 40.0),
              y_range: tuple[float, float] = (-40.0, 40.0), px_per_m: float = 6.25,
              gt_boxes: np.ndarray | None = None) -> np.ndarray:
    """Bird's-eye view of the region the detector sees (x up, y left; the sensor a yellow arrow, range
    rings every 10 m) with boxes coloured by class and ground-truth boxes (``gt_boxes`` [M, 7], LiDAR frame)
    dashed in light grey under them, as RGB uint8."""
    from maskworks.domains.lidar.iou import bev_corners
    from PIL import Image, ImageDraw

    s = px_per_m
    (x0, x1), (y0, y1) = x_range, y_range
    rows, cols = int(round((x1 - x0) * s)), int(round((y1 - y0) * s))
    col = lambda y: (y1 - y) * s  # y left -> image left
    row = lambda x: (x1 - x) * s  # x forward -> image up
    u, v = col(pts[:, 1]).astype(np.int64), row(pts[:, 0]).astype(np.int64)
    ok = (u >= 0) & (u < cols) & (v >= 0) & (v < rows)
    dens = np.bincount(v[ok] * cols + u[ok], minlength=rows * cols).reshape(rows, cols)
    gray = (np.clip(np.log1p(dens) / np.log(8), 0, 1) * 200 + 20 * (dens > 0)).astype(np.uint8)
    img = Image.fromarray(np.stack([gray] * 3, -1))
    draw = ImageDraw.Draw(img)
    cu, cv = col(0.0), row(0.0)
    far = max(abs(x0), abs(x1), abs(y0), abs(y1))
    for r in np.arange(10.0, far + 1e-6, 10.0):
        draw.ellipse([cu - r * s, cv - r * s, cu + r * s, cv + r * s], outline=(60, 60, 90))
    for cs in (bev_corners(np.asarray(gt_boxes, np.float64).reshape(-1, 7)) if gt_boxes is not None else []):
        for a, b in zip(cs, np.roll(cs, -1, axis=0)):  # dashes of 0.5 m with 0.5 m gaps
            n = max(int(np.hypot(*(b - a)) / 0.5), 1)
            for k in range(0, n, 2):
                p, q = a + (b - a) * k / n, a + (b - a) * min(k + 1, n) / n
                draw.line([(col(p[1]), row(p[0])), (col(q[1]), row(q[0]))], fill=GT_COLOR_RGB, width=2)
    for b, c in zip(det.boxes, det.classes):
        cs = bev_corners(b[None])[0]
        draw.polygon([(col(y), row(x)) for x, y in cs], outline=COLORS.get(c, "#ffffff"), width=2)
        front = (cs[0] + cs[3]) / 2
        draw.line([(col(b[1]), row(b[0])), (col(front[1]), row(front[0]))], fill=COLORS.get(c, "#ffffff"), width=2)
    draw.polygon([(cu - 4, cv + 5), (cu + 4, cv + 5), (cu, cv - 7)], fill=(255, 200, 0))
    return np.asarray(img)


def _wire(boxes: np.ndarray) -> tuple[list, list, list]:
    """x, y, z lists of the 12 edges of each box (None between edges), for one Scatter3d line trace."""
    from maskworks.domains.lidar.boxes import boxes_to_corners

    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
    xs, ys, zs = [], [], []
    for cr in boxes_to_corners(np.asarray(boxes, np.float64).reshape(-1, 7)):
        for a, b in edges:
            xs += [round(float(cr[a, 0]), 3), round(float(cr[b, 0]), 3), None]
            ys += [round(float(cr[a, 1]), 3), round(float(cr[b, 1]), 3), None]
            zs += [round(float(cr[a, 2]), 3), round(float(cr[b, 2]), 3), None]
    return xs, ys, zs


def figure(pts: np.ndarray, det, max_points: int = PLOT_POINTS, gt_boxes: np.ndarray | None = None):
    """Plotly 3-D scatter of (subsampled) points plus box wireframes, one legend entry per class, and the
    ground-truth boxes (``gt_boxes`` [M, 7], LiDAR frame) dashed in grey as "ground truth"."""
    import plotly.graph_objects as go

    near = (np.abs(pts[:, 0]) < 45) & (np.abs(pts[:, 1]) < 45)
    p = pts[near]
    if len(p) > max_points:
        p = p[np.random.default_rng(0).choice(len(p), max_points, replace=False)]
    p = p.astype(np.float32)  # sent to the browser as float32 typed arrays: half the bytes of float64
    fig = go.Figure([go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=f"points ({len(p):,} shown)",
                                  marker=dict(size=1.2, color=p[:, 2], colorscale="Viridis", cmin=-2.5, cmax=1.5),
                                  hoverinfo="skip")])
    if gt_boxes is not None and len(gt_boxes):
        xs, ys, zs = _wire(gt_boxes)
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line=dict(color=GT_COLOR, width=3, dash="dash"),
                                   name=f"ground truth ({len(gt_boxes)})", hoverinfo="skip"))
    for cls, col in COLORS.items():
        sel = [i for i, c in enumerate(det.classes) if c == cls]
        if not sel:
            continue
        xs, ys, zs = _wire(det.boxes[sel])
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line=dict(color=col, width=5), name=f"{cls} ({len(sel)})"))
    fig.update_layout(height=520, margin=dict(l=0, r=0, t=30, b=0), legend=dict(x=0, y=1),
                      scene=dict(aspectmode="data", xaxis_title="x forward (m)", yaxis_title="y left (m)", zaxis_title="z up (m)",
                                 camera=dict(eye=dict(x=-0.6, y=0.0, z=0.45), up=dict(x=0, y=0, z=1))))
    return fig


_CACHE: dict[tuple, tuple] = {}
_TRUTH: dict[tuple, tuple] = {}


def ground_truth(path: Path, label_files: list[str] | None = None) -> tuple:
    """(the scan's KITTI labels, None or the :class:`InputError` that kept them out; the calibration to hand the
    detector or None) from ``label_files`` (an uploaded label_2 .txt and its calib .txt) or else beside the scan.
    Cached like the detections, so that moving the threshold slider reads no file again."""
    from maskworks.core.io import InputError
    from maskworks.domains.lidar.scan_labels import scan_labels, sort_label_files

    key = (str(path), tuple(label_files or ()))
    if key not in _TRUTH:
        calib = labels = None
        try:
            label, calib = sort_label_files(label_files) if label_files else (None, None)
            labels = scan_labels(path, calib, label)
        except InputError as e:
            labels = e
            if calib is not None and e.path == calib:
                calib = None  # an unreadable calibration is not handed to the detector either
        _TRUTH.clear()
        _TRUTH[key] = (labels, calib)
    return _TRUTH[key]


def analyse_file(path: str | Path, label_files: list[str] | None = None):
    """(the detection job's result down to score 0.05, (R-MAE image, text), the scan's :func:`ground_truth`) for a
    file: a bad label file costs the ground truth, not the detections. Cached on path/size/mtime and calibration so
    that moving the threshold slider does not run the detector again."""
    from maskworks.domains.lidar.detection.predict import MIN_SCORE

    p = Path(path)
    labels, calib = ground_truth(p, label_files)
    key = (str(p), p.stat().st_size, p.stat().st_mtime, str(calib))
    if key not in _CACHE:  # an uploaded calibration also goes into the written KITTI labels (2-D boxes, camera frame)
        res = detector().predict_file(p, threshold=MIN_SCORE, calib=calib)
        _CACHE.clear()
        _CACHE[key] = (res, rmae_view(res.points))
    return (*_CACHE[key], labels)


def labels_text(labels, det) -> str:
    """"N labelled objects ...; found k of n cars ..." for the detections at the current threshold."""
    from maskworks.domains.lidar.scan_labels import match_summary

    counts = ", ".join(f"{n} {c}" for c, n in sorted(labels.counts().items(), key=lambda kv: -kv[1]))
    text = (f"**Ground truth** ({labels.label_path.name}, dashed grey boxes): **{len(labels)} labelled objects** "
            f"({counts or 'none'}; labels cover the camera's view only).")
    found = match_summary(labels, det.boxes, det.classes, det.scores)
    if any(v["labels"] or v["false_alarms"] for v in found.values()):
        text += " At this threshold, matched as the evaluator does (BEV IoU > 0.5, moderate difficulty, camera view): " + \
            "; ".join((f"**{v['found']} of {v['labels']} {c}** found, " if v["labels"] else f"no {c} label at this difficulty, ")
                      + f"{v['false_alarms']} false alarm{'' if v['false_alarms'] == 1 else 's'}" for c, v in found.items()
                      if v["labels"] or v["false_alarms"]) + "."
    if any(v["all_labels"] for v in found.values()):
        text += " Whatever their difficulty: " + "; ".join(f"{v['all_overlapped']} of {v['all_labels']} {c} labels overlap a "
                                                           "detection" for c, v in found.items() if v["all_labels"]) + "."
    return text


def run(path: str | None, threshold: float, label_files: list[str] | None = None):
    """(figure, BEV image, table rows, info markdown, download files, R-MAE image, R-MAE text, JSON report) for a
    file at a score threshold, with its ground truth when ``label_files`` (label_2 + calib .txt) are given or sit
    beside the scan."""
    import gradio as gr
    from maskworks.core.io import InputError

    if not path:
        raise gr.Error("Upload a scan (.bin, .pcd.bin, .pcd, .ply, .npy) or pick a shipped example.")
    name = Path(path).name
    try:
        res_all, (rmae_img, rmae_text), labels = analyse_file(path, label_files)
    except InputError as e:
        raise gr.Error(f"Cannot read {e.short()}") from None
    res = res_all.at(float(threshold))
    det, pts = res.detections, res.points
    rows = [[c, round(float(s), 3), *[round(float(v), 2) for v in b]] for b, c, s in zip(det.boxes, det.classes, det.scores)]
    out = Path(tempfile.mkdtemp(prefix="maskworks-lidar-"))
    stem = name.split(".")[0] or "scan"
    files = res.write(out / stem)
    report = res.to_json()
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    counts = ", ".join(f"{det.classes.count(c)} {c}" for c in COLORS) or "none"
    info = (f"**{name}**: {res.num_points_read:,} points, **{len(det)} detections** at score ≥ {float(threshold):.2f} ({counts}); "
            f"detector {res.seconds * 1000:.0f} ms on {'GPU' if res.device == 'cuda' else 'CPU'}.")
    if res.notes:
        info += "\n\n" + "\n\n".join(f"⚠ {n}" for n in res.notes)
    if isinstance(labels, InputError):
        info += f"\n\n⚠ Ground truth not shown: {labels.short()}"
        labels = None
    gt = labels.frame.boxes if labels is not None else None
    if labels is not None:
        info += "\n\n" + labels_text(labels, det)
    info += "\n\n" + model_card()
    grid = detector().detector.grid
    return (figure(pts, det, gt_boxes=gt), bev_image(pts, det, grid.x_range, grid.y_range, gt_boxes=gt), rows, info,
            [str(f) for f in files] + [str(out / f"{stem}.json")], rmae_img, rmae_text, report)


def build_tab() -> None:
    """Creates the tab's components."""
    import gradio as gr
    from maskworks.domains.lidar.detection.inference import (
        DEFAULT_SCORE_THRESHOLD,
        shipped_split_x,
        shipped_weights,
    )

    grid = shipped_grid()
    (x0, x1), (y0, y1) = grid.x_range, grid.y_range
    try:
        pair = f"; beyond {shipped_split_x():g} m ahead, a second model fine-tuned on a longer grid" \
            if shipped_weights()[1] else ""
    except (OSError, ValueError):
        pair = ""
    gr.Markdown(f"CenterPoint-style detector on the R-MAE BEV backbone (shipped weights: **{shipped_init()}**{pair}): "
                f"cars, pedestrians and cyclists from {-x0:g} m behind to {x1:g} m ahead of the sensor and {y1:g} m to "
                "either side, each scan read as it is and mirrored left-right (the two averaged), each box stood on the "
                "ground seen around it, each car turned and moved onto its own returns. " + model_card() +
                f" Default score threshold {DEFAULT_SCORE_THRESHOLD:g} (chosen by cross-validation). Cars partly outside "
                "the camera's view or beside the sensor are found from the returns there are; in a camera-view crop "
                "(KITTI's velodyne_reduced) the part outside the view has no returns, so their boxes are less sure. "
                "Upload a scan in metres (x forward, y left, z up) or pick a shipped one; add its KITTI label_2 and calib "
                "files to see its ground truth beside the detections.")
    ex = examples()
    path = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="scan: KITTI .bin, nuScenes .pcd.bin, .pcd, .ply or .npy [N, >=3]", type="filepath",
                             file_types=UPLOAD_TYPES, elem_id="lidar-upload")
            # after the scan (a new scan clears it): drawn dashed and counted as the evaluator does
            truth = gr.File(label="its ground truth, optional: KITTI label_2 .txt + calib .txt", file_count="multiple",
                            file_types=[".txt"], type="filepath", elem_id="lidar-truth")
            default = next(iter(ex), None)
            example = gr.Dropdown(list(ex), value=default, label="or a shipped scan", elem_id="lidar-example")
            go = gr.Button("Detect in example", variant="primary", elem_id="lidar-example-go")
            threshold = gr.Slider(0.05, 0.95, value=DEFAULT_SCORE_THRESHOLD, step=0.05, label="score threshold",
                                  elem_id="lidar-threshold")
            info = gr.Markdown(elem_id="lidar-info")
            bev = gr.Image(label="bird's-eye view (x up, sensor: yellow arrow; rings every 10 m)", height=380,
                           elem_id="lidar-bev")
            files = gr.File(label="downloads: KITTI label txt, JSON", file_count="multiple", elem_id="lidar-downloads")
        with gr.Column(scale=2):
            plot = gr.Plot(label="3-D view (drag to rotate)", elem_id="lidar-plot")
            table = gr.Dataframe(headers=COLUMNS, label="detections (LiDAR frame, metres, radians)", elem_id="lidar-table",
                                 interactive=False)
            rmae_img = gr.Image(label="R-MAE view (x up, sensor at the centre): input | reconstruction | scan",
                                elem_id="lidar-rmae")
            rmae_text = gr.Markdown(elem_id="lidar-rmae-info")
    report = gr.JSON(visible=False)
    outputs = [plot, bev, table, info, files, rmae_img, rmae_text, report]

    def from_example(name):
        if name not in ex:
            raise gr.Error("No shipped scans found (data/3d).")
        return str(ex[name]), None  # a new scan: the previous scan's ground truth no longer applies

    # The page's own events are kept out of the API page and out of Gradio's run history (which stores every public
    # call's outputs, this 3-D figure included, in the browser's localStorage and re-reads and re-writes all of it on
    # every call: the 3-D view got slower with each scan). Scripts call /predict_lidar_detection (apps/api.py).
    inputs = [path, threshold, truth]
    go.click(from_example, example, [path, truth], api_visibility="private").then(run, inputs, outputs,
                                                                                 api_visibility="private")
    upload.upload(lambda f: (f, None), upload, [path, truth], api_visibility="private").then(
        run, inputs, outputs, api_visibility="private")
    truth.upload(run, inputs, outputs, api_visibility="private")
    truth.clear(run, inputs, outputs, api_visibility="private")
    threshold.release(run, inputs, outputs, api_name="lidar_detection", api_visibility="undocumented")


def launch(host: str = "127.0.0.1", port: int = 7862, block: bool = True):
    """This tab on its own (binds 127.0.0.1, caps uploads at 50 MB, one model call at a time)."""
    from maskworks.apps.demo import launch_tab

    return launch_tab("3-D detection in LiDAR scans", build_tab, host, port, "50mb", block)


if __name__ == "__main__":
    launch()
