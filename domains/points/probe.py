"""Few-shot probe of a pre-trained point encoder on the real KITTI + nuScenes object crops.

Features: the frozen encoder's max ‖ mean pooled tokens of each normalised 1024-point crop.
Classifiers, both leave-one-out over the crops: nearest class centroid (cosine, standardised
features) and L2 logistic regression. The same classifiers on the same crops with a randomly
initialised encoder of the same architecture (several seeds) give the reference. The set is tiny
(tens of crops, most with < 30 real points), so differences of a few crops are noise.
"""
from __future__ import annotations

import numpy as np
import torch

from .objects import labelled_objects, normalize, resample


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
