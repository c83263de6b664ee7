"""Few-shot probe of a pre-trained point encoder on the real KITTI + nuScenes object crops.

Features: the frozen encoder's max ‖ mean pooled tokens of each normalised 1024-point crop.
Classifiers, both leave-one-out over the crops: nearest class centroid (cosine, standardised
features) and L2 logistic regression. The same classifiers on the same crops with a randomly
initialised encoder of the same architecture (several seeds) give the reference. The set is tiny
(tens of crops, most with < 30 real points), so differences of a few crops are noise.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .objects import PROBE_CLASSES, labelled_objects, normalize, resample


def loo_scores(feats: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out accuracy and balanced accuracy of nearest-centroid and logistic regression."""
    from sklearn.linear_model import LogisticRegression

    n = len(labels)
    pred_nc, pred_lr = np.empty(n, dtype=labels.dtype), np.empty(n, dtype=labels.dtype)
    for i in range(n):
        tr = np.arange(n) != i
        mu, sd = feats[tr].mean(0), feats[tr].std(0) + 1e-6
        z_tr, z_te = (feats[tr] - mu) / sd, (feats[i] - mu) / sd
        classes = np.unique(labels[tr])
        cents = np.stack([z_tr[labels[tr] == c].mean(0) for c in classes])
        cos = cents @ z_te / (np.linalg.norm(cents, axis=1) * np.linalg.norm(z_te) + 1e-9)
        pred_nc[i] = classes[cos.argmax()]
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(z_tr, labels[tr])
        pred_lr[i] = clf.predict(z_te[None])[0]
    out = {}
    for name, pred in (("nearest_centroid", pred_nc), ("logistic", pred_lr)):
        out[f"{name}_acc"] = float((pred == labels).mean())
        out[f"{name}_balanced_acc"] = float(np.mean([(pred[labels == c] == c).mean() for c in np.unique(labels)]))
    return out


def object_set(num_points: int = 1024, min_points: int = 5) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    objs = labelled_objects(min_points)
    x = normalize(torch.stack([resample(o.xyz, num_points, 0) for o in objs]))
    return x, np.array([o.label for o in objs]), [o.source for o in objs]


def encoder_features(encoder: torch.nn.Module, x: torch.Tensor, batch: int = 16) -> np.ndarray:
    encoder.eval()
    return torch.cat([encoder.features(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()


@torch.no_grad()  # not set_grad_enabled(False): entries also run in-process (tests)
def main(argv: list[str] | None = None) -> int:
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
