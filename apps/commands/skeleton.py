"""``maskworks eval skeleton/actions`` (the pre-training study) and ``maskworks predict skeleton/actions``."""
from __future__ import annotations

import argparse
from pathlib import Path


def eval_actions(argv: list[str]) -> int:
    from maskworks.domains.skeleton.study import PROTOCOL_HELP, StudyConfig, run_study

    p = argparse.ArgumentParser(
        prog="maskworks eval skeleton/actions", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Does SkeletonMAE pre-training help? For each seed and fold: pre-train SkeletonMAE on the "
        "training sequences (labels unused), then a linear probe and STRL fine-tuning from the pre-trained and from a "
        "random encoder, beside a majority-class and a hand-made-feature baseline. Sequences are classified by their "
        "windows' mean log-probability; accuracy and macro-F1 over the held-out sequences, mean +- std over seeds.\n\n"
        + PROTOCOL_HELP)
    p.add_argument("--data", required=True, help="a folder with labels.csv (file, label; optional subject, split, fps) "
                   "beside .npy/.npz/.skeleton/.bvh files, e.g. the shipped shipped:skeleton/cmu, or a pyskl .pkl")
    p.add_argument("--out", default="runs/skeleton-actions-study", help="output folder: results.md, results.json, "
                   "results.png, per-seed predictions and every training run (a rerun skips finished runs)")
    p.add_argument("--protocol", choices=["subject", "trial", "split"], default="subject",
                   help="how sequences are held out (default subject: leave one subject out)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...; default 3)")
    p.add_argument("--folds", type=int, default=3, help="folds of the trial protocol (default 3)")
    p.add_argument("--min-sequences", type=int, default=3,
                   help="trial protocol: classes with fewer sequences than this are left out (default 3)")
    p.add_argument("--frames", type=int, default=32, help="window length in frames at 30 fps (default 32)")
    p.add_argument("--pretrain-steps", type=int, default=600, help="SkeletonMAE steps per fold (default 600)")
    p.add_argument("--finetune-steps", type=int, default=300, help="STRL steps per fold and init (default 300)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    p.add_argument("--hidden", type=int, default=64, help="encoder width (default 64)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    a = p.parse_args(argv)
    cfg = StudyConfig(protocol=a.protocol, seeds=tuple(range(a.seeds)), folds=a.folds, min_sequences=a.min_sequences,
                      frames=a.frames, pretrain_steps=a.pretrain_steps, finetune_steps=a.finetune_steps,
                      batch_size=a.batch_size, hidden=a.hidden, device=a.device)
    run_study(a.data, a.out, cfg)
    print((Path(a.out) / "results.md").read_text())
    print(f"written: {Path(a.out) / 'results.json'}, {Path(a.out) / 'results.png'}")
    return 0


def predict_actions(argv: list[str]) -> int:
    from maskworks.apps.commands.common import add_batch_options, run_predict
    from maskworks.domains.skeleton.actions import INPUT_SUFFIXES, VIDEO_SUFFIXES, ActionRecognizer

    p = argparse.ArgumentParser(
        prog="maskworks predict skeleton/actions",
        description="Recognise the action in skeleton files (pyskl .pkl, NTU .skeleton, .npy/.npz [T, V, 3] or "
        "[M, T, V, 3] with 25 NTU / 17 COCO / 33 MediaPipe joints, BVH) or short videos (pose extracted with "
        "MediaPipe). Writes <name>.json (probabilities, per-window labels, SkeletonMAE's reconstruction error), "
        "<name>.png and <name>.joints.npy; <name>.pose.npz for videos. The shipped model knows 10 coarse CMU labels "
        "from 57 mocap sequences: a small demo model.")
    add_batch_options(p, "skeleton files or videos")
    p.add_argument("--weights", help="STRL weights (a `maskworks train skeleton/strl` run's model.safetensors; "
                   "default: the shipped model)")
    p.add_argument("--mae-weights", help="SkeletonMAE weights for the reconstruction (default: shipped, with the "
                   "shipped STRL weights; none otherwise)")
    p.add_argument("--seed", type=int, default=0, help="seed of the body parts hidden for the reconstruction (default 0)")
    p.add_argument("--index", type=int, default=0, help="which sample of a .pkl to read (default 0)")
    p.add_argument("--max-frames", type=int, default=300, help="videos: read at most this many frames (default 300)")
    a = p.parse_args(argv)
    rec = ActionRecognizer.load(a.weights, a.device, a.mae_weights)

    def predict(path: Path):
        opts = {"max_frames": a.max_frames} if path.suffix.lower() in VIDEO_SUFFIXES else {}
        return rec.predict_file(path, seed=a.seed, index=a.index, **opts)

    def describe(item, result) -> str:
        return f"{item.path.name}: {result.label} ({result.confidence:.0%})"

    return run_predict(a, INPUT_SUFFIXES, predict, "predict skeleton/actions", describe)



def eval_reconstruction(argv: list[str]) -> int:
    import json

    import numpy as np
    import torch

    from maskworks.core.device import default_device
    from maskworks.core.io import resolve_shipped
    from maskworks.core.training.task import load_trained
    from maskworks.domains.skeleton.actions import MAE_WEIGHTS
    from maskworks.domains.skeleton.data import prepare, read_collection, window
    from maskworks.domains.skeleton.sequence import window_starts
    from maskworks.domains.skeleton.skeleton_mae import reconstruction_errors

    p = argparse.ArgumentParser(
        prog="maskworks eval skeleton/reconstruction",
        description="How well SkeletonMAE rebuilds hidden body parts: for every sequence, every window (32 frames, "
        "step 8) and every pair of hidden parts, the masked scaled cosine error and the mean position error of the "
        "hidden joints (cm; hidden bones drawn in the predicted direction at their true length), beside the mean "
        "training pose as a baseline.")
    p.add_argument("--data", required=True, help="a folder with labels.csv beside skeleton files, or a pyskl .pkl")
    p.add_argument("--weights", default=MAE_WEIGHTS, help="SkeletonMAE weights (default: the shipped model)")
    p.add_argument("--sequences", nargs="*", help="only these sequences (names as in labels.csv, e.g. seq/06_09.npy)")
    p.add_argument("--out", help="write the figures as JSON to this file")
    a = p.parse_args(argv)
    _, mae = load_trained(resolve_shipped(a.weights), default_device())
    coll = read_collection(a.data)
    rows, total, n = [], {}, 0
    for s in coll.samples:
        if a.sequences and s.name not in a.sequences:
            continue
        prep = prepare(s.skeleton)
        starts = window_starts(prep.joints.shape[1], 32, 8)
        x = torch.from_numpy(np.stack([window(prep, k, 32, mae.frames_per_node)[0] for k in starts]))
        r = reconstruction_errors(mae, x.to(mae.feature_mean.device))
        cm = {k: v * prep.scale * 100 if k.startswith("error") else v for k, v in r.items()}
        rows.append({"sequence": s.name, "windows": len(starts), **{k: round(v, 4) for k, v in cm.items()}})
        for k, v in cm.items():
            total[k] = total.get(k, 0.0) + v * len(starts)
        n += len(starts)
    if not rows:
        raise FileNotFoundError("no sequences matched --sequences")
    overall = {k: round(v / n, 4) for k, v in total.items()}
    print(f"{'sequence':24s} {'windows':>7s} {'SCE':>7s} {'mean pose':>9s} {'error cm':>9s} {'mean pose':>9s}")
    for r in rows + [{"sequence": "all (window-weighted)", "windows": n, **overall}]:
        print(f"{r['sequence']:24s} {r['windows']:7d} {r['sce']:7.3f} {r['sce_mean_pose']:9.3f} {r['error']:9.1f} "
              f"{r['error_mean_pose']:9.1f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"weights": str(a.weights), "data": str(a.data), "sequences": rows,
                                           "overall": overall}, indent=2))
    return 0
