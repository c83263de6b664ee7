"""``maskworks bench fps`` and ``maskworks eval points/probe``."""
from __future__ import annotations

from pathlib import Path

import torch


def bench_fps(argv: list[str] | None = None) -> int:
    """``maskworks bench fps``: print per-cloud times and the ours/open3d ratio (optionally as JSON)."""
    import argparse
    import json

    from maskworks.domains.points.bench import bench_fps as run_fps_bench

    p = argparse.ArgumentParser(prog="maskworks bench fps", description=
                                "Farthest-point sampling: our batched-torch FPS vs open3d's farthest_point_down_sample "
                                "on the same real clouds (both start at point 0). Prints the median time of each, "
                                "the ratio ours/open3d (< 1 = ours faster), the coverage radius of both sample sets "
                                "and the fraction of shared samples.")
    p.add_argument("clouds", nargs="*", help="point-cloud files (default: shipped milk.pcd, rops_cloud.pcd, KITTI 000000)")
    p.add_argument("--samples", type=int, default=1024, help="points to sample per cloud (default 1024)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per method; the median is reported (default 5)")
    p.add_argument("--device", default="cpu", help="where our FPS runs: cpu or cuda (open3d is CPU only)")
    p.add_argument("--json", metavar="FILE", help="also write the full results to FILE")
    a = p.parse_args(argv)
    try:
        res = run_fps_bench(repeats=a.repeats, num_samples=a.samples, clouds=a.clouds or None, device=a.device)
    except (RuntimeError, ValueError, OSError) as e:
        print(f"maskworks bench fps: {e}")
        return 1
    print(f"FPS of {res['num_samples']} samples, median of {res['repeats']} runs, device {res['device']}, "
          f"torch threads {res['torch_threads']}, open3d {res['open3d_version']}")
    print(f"{'cloud':<28}{'points':>9}{'torch ms':>10}{'auto ms':>9}{'open3d ms':>11}{'torch/o3d':>10}{'auto/o3d':>9}"
          f"{'cover ours':>12}{'cover o3d':>11}{'shared':>8}{'same':>6}")
    for r in res["clouds"]:
        print(f"{Path(r['cloud']).name:<28}{r['num_points']:>9}{r['ours_s'] * 1e3:>10.1f}{r['auto_s'] * 1e3:>9.1f}"
              f"{r['open3d_s'] * 1e3:>11.1f}{r['ratio_ours_over_open3d']:>10.2f}{r['ratio_auto_over_open3d']:>9.2f}"
              f"{r['coverage_radius_ours']:>12.4f}{r['coverage_radius_open3d']:>11.4f}{r['shared_sample_fraction']:>8.2f}"
              f"{'yes' if r['auto_equals_torch'] else 'NO':>6}")
    print(f"median ratio torch/open3d: {res['median_ratio']:.2f}; what farthest_point_sample uses here (auto): "
          f"{res['median_ratio_auto']:.2f} x open3d")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
        print(f"wrote {a.json}")
    return 0


@torch.no_grad()  # not set_grad_enabled(False): entries also run in-process (tests)
def eval_probe(argv: list[str] | None = None) -> int:
    """``maskworks eval points/probe``."""
    import argparse
    import json
    from collections import Counter

    import numpy as np
    from maskworks.domains.points.objects import PROBE_CLASSES
    from maskworks.domains.points.probe import encoder_features, loo_scores, object_set

    p = argparse.ArgumentParser(prog="maskworks eval points/probe", description=
                                "Leave-one-out few-shot classification (nearest centroid, logistic regression) of "
                                "the real KITTI + nuScenes object crops (car / pedestrian / barrier / other) with "
                                "features of a pre-trained point encoder (point-mae, point-bert or point-cmae run) "
                                "next to the same encoder randomly initialised.")
    p.add_argument("--weights", nargs="+", default=["runs/points-point-mae/model.safetensors"],
                   help="model.safetensors files (or run folders) of point pre-training runs")
    p.add_argument("--random-seeds", type=int, default=3, help="random initialisations to compare with (default 3)")
    p.add_argument("--min-points", type=int, default=5, help="drop boxes with fewer real points (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    a = p.parse_args(argv)
    from maskworks.core.training.task import load_trained

    x, labels, _ = object_set(min_points=a.min_points)
    counts = Counter(labels.tolist())
    res: dict = {"num_objects": len(labels), "class_counts": {c: counts.get(c, 0) for c in PROBE_CLASSES},
                 "majority_acc": max(counts.values()) / len(labels), "runs": {}}
    print(f"{len(labels)} real object crops: {dict(counts)}; majority-class accuracy {res['majority_acc']:.3f}")
    for w in a.weights:
        try:
            task, model = load_trained(w)
        except (FileNotFoundError, ValueError) as e:
            print(f"maskworks eval points/probe: {e}. Train one first, e.g. `maskworks train points/point-mae`.")
            return 1
        name = task.cfg.get("name", str(w))
        rows = {"pretrained": loo_scores(encoder_features(model.encoder, x), labels)}
        rand = []
        for s in range(a.random_seeds):
            torch.manual_seed(s)
            rand.append(loo_scores(encoder_features(task.build_model().encoder, x), labels))
        rows["random_init_mean"] = {k: float(np.mean([r[k] for r in rand])) for k in rand[0]}
        rows["random_init_min_max"] = {k: [float(min(r[k] for r in rand)), float(max(r[k] for r in rand))] for k in rand[0]}
        res["runs"][name] = rows
        for kind in ("pretrained", "random_init_mean"):
            r = rows[kind]
            print(f"{name:<12} {kind:<17} NC acc {r['nearest_centroid_acc']:.3f} (bal {r['nearest_centroid_balanced_acc']:.3f})"
                  f"  LogReg acc {r['logistic_acc']:.3f} (bal {r['logistic_balanced_acc']:.3f})")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0
