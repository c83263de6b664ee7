"""``maskworks predict lidar/detection``, ``maskworks eval lidar/detection`` and ``maskworks eval lidar/rmae``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maskworks.apps.commands.common import add_batch_options, run_predict
from maskworks.core.io import InputError


# ----------------------------------------------------------------------------- options shared by predict and eval
def add_weights_options(p: argparse.ArgumentParser) -> None:
    """``--weights`` / ``--far-weights`` for :func:`~maskworks.domains.lidar.detection.inference.load_detector`."""
    from maskworks.domains.lidar.detection.inference import (
        SPLIT_MARGIN_M,
    )

    p.add_argument("--weights", help="detector safetensors (default: the shipped model, data/weights/lidar-detector."
                   "safetensors, one grid from 40 m behind to 72 m ahead; its record lidar-detector.json says what it "
                   "was trained on and its cross-validated AP)")
    p.add_argument("--far-weights", help="a second detector, trained on a grid reaching further ahead, for objects "
                   f"centred beyond the first's grid ({SPLIT_MARGIN_M:g} m inside its forward edge); default: none "
                   "(a shipped far model is used when one is shipped and --weights is not given)")


INFERENCE_OPTIONS = ("tta", "settle", "fit")


def inference_options(args: argparse.Namespace) -> dict[str, bool]:
    """The detector's inference keywords given on the command line (the others: the weights' own defaults)."""
    return {k: bool(getattr(args, k)) for k in INFERENCE_OPTIONS if getattr(args, k) is not None}


def add_inference_options(p: argparse.ArgumentParser) -> None:
    """``--tta/--no-tta``, ``--settle/--no-settle``, ``--fit/--no-fit`` (default: what the weights' header says,
    for the shipped detector the variant chosen by cross-validation; all on for weights without one)."""
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average each scan with its left-right mirror (twice the time); default: the weights' choice")
    p.add_argument("--settle", action=argparse.BooleanOptionalAction, default=None,
                   help="stand each box on the ground seen around it; default: the weights' choice")
    p.add_argument("--fit", action=argparse.BooleanOptionalAction, default=None,
                   help="turn and move each car onto the L-shape of its returns; default: the weights' choice")


def add_metric_options(p: argparse.ArgumentParser) -> None:
    """``--conventions exact|official`` and ``--no-dontcare`` for :func:`~maskworks.domains.lidar.kitti_metric.evaluate`."""
    p.add_argument("--conventions", choices=("exact", "official"), default="exact",
                   help="how matches become AP_R40: 'exact' (default) interpolates precision at recall 1/40..40/40; "
                        "'official' follows the KITTI devkit / OpenPCDet (precision at the matched-score thresholds, "
                        "credited one recall step up and summed over 40 points: with fewer than 40 labels a perfect "
                        "detector scores (N-1)/40), to set a figure beside published KITTI tables")
    p.add_argument("--no-dontcare", dest="dontcare", action="store_false",
                   help="count detections inside DontCare regions as false positives (OpenPCDet's Python BEV/3-D "
                        "figures); default: not counted, as the KITTI devkit does for every metric")


def metric_line(a: argparse.Namespace) -> str:
    return (f"AP_R40 in percent ({a.conventions} conventions; DontCare regions "
            f"{'not counted as false positives' if a.dontcare else 'ignored'}; null / '–' = no labels)")


# ----------------------------------------------------------------------------- predict
def predict_detection(argv: list[str] | None = None) -> int:
    """``maskworks predict lidar/detection FILES_OR_FOLDERS --out DIR``: KITTI label txt + JSON per scan."""
    from maskworks.domains.lidar.detection.inference import DEFAULT_SCORE_THRESHOLD
    from maskworks.domains.lidar.detection.predict import (
        MAX_POINTS,
        SCAN_SUFFIXES,
        ScanDetector,
    )

    p = argparse.ArgumentParser(prog="maskworks predict lidar/detection", description=
                                "Detect cars, pedestrians and cyclists in LiDAR scans: KITTI .bin, nuScenes .pcd.bin, .pcd, "
                                ".ply, .npy/.npz or .xyz/.txt, in metres with x forward, y left, z up. Writes <name>.txt "
                                "(KITTI label_2 layout, 16th column = score) and <name>.json (boxes in the LiDAR frame, "
                                f"notes) per scan. Scans over {MAX_POINTS:,} points are subsampled, returns within 2 m of the "
                                "sensor are ignored, and the notes say when a scan does not look like metres with z up.")
    add_batch_options(p, "scans (.bin, .pcd.bin, .pcd, .ply, .npy, .npz, .xyz, .txt) or folders of them")
    add_weights_options(p)
    p.add_argument("--threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                   help="report detections scoring at least this (default %(default)s; lower finds more, with more false alarms)")
    add_inference_options(p)
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calib", help="one KITTI calib file for every scan (camera-frame labels with 2-D boxes; default: "
                     "calib/<frame>.txt beside each scan's velodyne/ folder when there is one; else an axis swap, no "
                     "2-D boxes and a warning: the official KITTI evaluator then scores the labels as missing)")
    cal.add_argument("--calib-dir", help="folder of KITTI calib files: calib-dir/<frame>.txt for each scan <frame>.bin "
                     "(a scan without one is refused)")
    a = p.parse_args(argv)
    det = ScanDetector.load(a.weights, a.far_weights, a.device)
    opts = inference_options(a)

    def calib_for(f: Path) -> str | None:
        if not a.calib_dir:
            return a.calib
        c = Path(a.calib_dir) / f"{Path(f).name.split('.')[0]}.txt"
        if not c.is_file():
            raise InputError(f, f"no calibration {c.name} in --calib-dir {a.calib_dir}",
                             "add calib/<frame>.txt for this scan, or drop --calib-dir")
        return str(c)

    return run_predict(a, SCAN_SUFFIXES, lambda f: det.predict_file(f, a.threshold, calib_for(f), **opts),
                       "lidar/detection", describe=lambda it, r: f"{it.path}: {len(r.detections)} detections")


# ----------------------------------------------------------------------------- eval
def eval_detection(argv: list[str] | None = None) -> int:
    """``maskworks eval lidar/detection``: run the detector (or read ``--pred`` label files) and report AP_R40."""
    from maskworks.core.io.points import read_scan
    from maskworks.domains.lidar.kitti import read_label
    from maskworks.domains.lidar.kitti_metric import (
        IOU_THRESHOLDS,
        FrameBoxes,
        evaluate,
        format_matches,
        format_table,
        json_safe,
        kitti_dirs,
        label_matches,
        load_ground_truth,
        objects_to_frame,
        restrict_to_fov,
        sim_settings_from,
    )

    p = argparse.ArgumentParser(prog="maskworks eval lidar/detection",
                                description="KITTI-style BEV/3-D AP_R40 (Car 0.7 / Ped 0.5 / Cyc 0.5 and the loose "
                                            "0.5 / 0.25 / 0.25) on a KITTI object folder (velodyne/, label_2/, calib/). "
                                            "Runs the shipped detector pair unless --pred gives KITTI label txt predictions.")
    p.add_argument("--data", required=True, help="KITTI folder (or its parent holding training/)")
    p.add_argument("--pred", help="folder of KITTI label_2-format predictions (16th column = score); skips the detector")
    add_weights_options(p)
    p.add_argument("--frames", nargs="*", help="frame ids (default: every label file)")
    p.add_argument("--threshold", type=float, default=0.05, help="detector score threshold (default 0.05)")
    p.add_argument("--simulated", type=int, default=0, metavar="N",
                   help="also report AP on N held-out simulated scenes (seeds 9000...), simulated with the settings "
                        "the detector was trained with (a sanity check of the model, not a KITTI number)")
    p.add_argument("--sim-from", metavar="FILE",
                   help="with --simulated: simulate the scenes with the data.sim settings of this recipe / run config "
                        "(.yaml) or detector (.safetensors) instead of the evaluated detector's own, so that detectors "
                        "trained on different simulator settings are compared on the same scenes")
    p.add_argument("--region", nargs=4, type=float, metavar=("X0", "X1", "Y0", "Y1"),
                   help="with --simulated: count objects and detections whose centre lies in x in [X0, X1), y in [Y0, Y1) "
                        "metres (default -40 40 -40 40: the region every shipped grid has seen, so grids compare)")
    p.add_argument("--band", nargs=2, type=float, metavar=("LO", "HI"),
                   help="with --simulated: count only objects and detections at a range in [LO, HI) metres from the sensor")
    add_inference_options(p)
    add_metric_options(p)
    p.add_argument("--json", help="write the result here")
    a = p.parse_args(argv)
    inference = inference_options(a)
    if a.simulated and a.pred:
        p.error("--simulated runs the detector; it cannot be combined with --pred")
    if (a.sim_from or a.band or a.region) and not a.simulated:
        p.error("--sim-from, --region and --band apply to --simulated N scenes; give --simulated too")
    try:
        sim_settings = sim_settings_from(a.sim_from) if a.sim_from else None
        root = kitti_dirs(a.data)
        frames = a.frames or sorted(q.stem for q in (root / "label_2").glob("*.txt"))
        if not frames:
            raise InputError(root / "label_2", "no label files", "add KITTI label_2/*.txt files")
        gts, calibs = load_ground_truth(root, frames)
        dets = []
        if a.pred:
            for f, calib in zip(frames, calibs):
                path = Path(a.pred) / f"{f}.txt"
                objs = read_label(path) if path.is_file() else []
                dets.append(restrict_to_fov(objects_to_frame(objs, calib, f), calib, given_bbox=True))
        else:
            from maskworks.domains.lidar.detection.inference import load_detector

            det = load_detector(a.weights, a.far_weights)
            for f, calib in zip(frames, calibs):
                r = det.predict(read_scan(root / "velodyne" / f"{f}.bin").points, score_threshold=a.threshold, **inference)
                dets.append(restrict_to_fov(FrameBoxes(r.boxes, r.classes, r.scores, name=f), calib))
    except (InputError, ValueError, OSError) as e:
        print(f"maskworks eval lidar/detection: {e}", file=sys.stderr)
        return 2
    res = evaluate(gts, dets, conventions=a.conventions, dontcare=a.dontcare)
    rows = label_matches(gts, dets)
    print(f"frames: {', '.join(frames)}  ({'predictions from ' + a.pred if a.pred else 'detector'})")
    print(metric_line(a))
    print(format_table(res))
    print("\nper label (in camera view, after the score threshold):")
    print(format_matches(rows))
    out = {"frames": frames, "source": a.pred or (a.weights or "shipped"), "far_weights": None if a.pred else a.far_weights,
           "inference": None if a.pred else {**getattr(det, "near", det).inference_defaults, **inference},
           "metric": metric_line(a), "conventions": a.conventions, "dontcare": a.dontcare, "results": res, "labels": rows}
    if a.simulated:
        from maskworks.domains.lidar.detection.evaluate import (
            SIM_EVAL_REGION,
            evaluate_on_simulated,
        )
        from maskworks.domains.lidar.simulator import recipe_sim

        settings = sim_settings if sim_settings is not None else recipe_sim(det.cfg.get("data"))
        region = list(a.region or SIM_EVAL_REGION)
        sim = evaluate_on_simulated(det, a.simulated, score_threshold=a.threshold, sim=settings,
                                    region=tuple(region), band=tuple(a.band) if a.band else None, **inference)
        whose = f"the settings of {a.sim_from}" if a.sim_from else "the detector's training settings"
        where = f"x {region[0]:g}..{region[1]:g} m, y {region[2]:g}..{region[3]:g} m" + (
            f", range {a.band[0]:g}..{a.band[1]:g} m" if a.band else "")
        print(f"\nheld-out simulated scenes ({a.simulated}, {whose}; {where}; all difficulty levels alike):")
        print(format_table({k: v for k, v in sim.items() if k in IOU_THRESHOLDS}))
        out["simulated"] = {"settings": settings, "settings_from": a.sim_from or "the detector", "region": region,
                            "band": a.band, **sim}
    if a.json:
        Path(a.json).write_text(json.dumps(json_safe(out), indent=2))
    return 0


def eval_rmae(argv: list[str] | None = None) -> int:
    """``maskworks eval lidar/rmae``: occupancy reconstruction of the masked sectors of a real scan."""
    from maskworks.core.io.points import read_scan
    from maskworks.core.training.task import load_trained
    from maskworks.domains.lidar.kitti_metric import kitti_dirs
    from maskworks.domains.lidar.rmae_eval import evaluate_frames

    p = argparse.ArgumentParser(prog="maskworks eval lidar/rmae", description=
                                "Occupancy reconstruction of a trained R-MAE on the masked sectors of a real KITTI "
                                "scan (precision / recall / IoU), next to 'all occupied' and 'copy nearest kept "
                                "sector' baselines on the same masks; optionally writes the BEV picture.")
    p.add_argument("--weights", default="runs/lidar-rmae/model.safetensors", help="model.safetensors or run folder")
    p.add_argument("--data", default="shipped:3d/kitti/training",
                   help="KITTI folder with velodyne/ (default: the shipped frames)")
    p.add_argument("--frame", default="000002", help="frame to evaluate (default 000002, held out from training)")
    p.add_argument("--calib-frame", default="000001", help="frame used to pick the probability threshold")
    p.add_argument("--repeats", type=int, default=3, help="seeded masks to average over")
    p.add_argument("--picture", help="write the BEV reconstruction picture here (.png)")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    a = p.parse_args(argv)
    from maskworks.core.io import resolve_shipped

    root = resolve_shipped(a.data)
    root = root if (root / "velodyne").is_dir() else kitti_dirs(root)
    _, model = load_trained(a.weights)
    scan = lambda f: read_scan(root / "velodyne" / f"{f}.bin").points  # noqa: E731
    pts, calib = scan(a.frame), scan(a.calib_frame) if a.calib_frame else None
    res = evaluate_frames(model, pts, calib, a.repeats, Path(a.picture) if a.picture else None)
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


def eval_detection_cv(argv: list[str] | None = None) -> int:
    """``maskworks eval lidar/detection-cv RUN...``: pooled out-of-fold AP of cross-validation runs."""
    from maskworks.domains.lidar.detection.crossval import VARIANTS, cv_report
    from maskworks.domains.lidar.kitti_metric import format_table, json_safe

    p = argparse.ArgumentParser(prog="maskworks eval lidar/detection-cv", description=
                                "Cross-validated KITTI AP_R40: pools the predictions that each fold's run "
                                "(`maskworks train lidar/detector --set data.holdout_fold=K`) made on the frames it "
                                "left out, per configuration (R-MAE or scratch start, seed), and scores them as one set; "
                                "also the Car BEV AP@0.7 (moderate) at every checkpoint and inference variant, and the "
                                "score threshold with the best Car F1 (BEV IoU 0.5, moderate).")
    p.add_argument("runs", nargs="+", help="run folders holding oof.json")
    p.add_argument("--data", nargs="+", required=True,
                   help="the KITTI folders the runs were trained from (labels and calibration of the left-out frames)")
    add_metric_options(p)
    p.add_argument("--json", help="write the full report here")
    a = p.parse_args(argv)
    try:
        rep = cv_report(a.runs, a.data, a.conventions, a.dontcare)
    except (InputError, ValueError, KeyError, OSError) as e:
        print(f"maskworks eval lidar/detection-cv: {e}", file=sys.stderr)
        return 2
    print(metric_line(a))
    for name, e in rep["configs"].items():
        print(f"\n## {name}: folds {e['folds']}, {e['frames']} frames, last checkpoint, default inference")
        print(format_table(e["final"]))
        t = e["threshold_car_bev05_moderate"]
        print(f"best Car F1 (BEV IoU 0.5, moderate) at score >= {t['threshold']}: F1 {t['f1']}, "
              f"precision {t['precision']}, recall {t['recall']} of {t['num_gt']}")
        print("Car BEV AP@0.7 moderate by checkpoint (rows) and inference (columns):")
        print("| step | " + " | ".join(VARIANTS) + " |\n|---|" + "---|" * len(VARIANTS))
        for st, row in e["by_step"].items():
            print(f"| {st} | " + " | ".join(f"{row[v]:.1f}" for v in VARIANTS) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(json_safe(rep), indent=2))
    return 0
