"""Evaluations on any ``videos/`` + ``labels.csv`` folder: a few-shot probe of the encoder's
features, and the reconstruction error of hidden tubes against copying the nearest visible patch.

Both compare with a reference computed in the same run on the same clips: the probe with the same
encoder randomly initialised (several seeds), the reconstruction with the nearest-visible-patch
baseline under the same masks. Labelled sets of a few dozen clips are noise-prone: the results
carry their counts and the majority-class accuracy.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from maskworks.domains.video.data import VideoClips
from maskworks.domains.video.videomae import VideoMAE, normalize_clip
from maskworks.domains.video.viz import masked_mse, nearest_visible_baseline, visible_mean_baseline


def loo_scores(feats: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out accuracy of nearest class centroid (cosine, standardised features) and of an
    L2-regularised logistic regression (a linear probe, fitted with L-BFGS)."""
    n = len(labels)
    classes = np.unique(labels)
    pred_nc, pred_lr = np.empty(n, dtype=labels.dtype), np.empty(n, dtype=labels.dtype)
    for i in range(n):
        tr = np.arange(n) != i
        mu, sd = feats[tr].mean(0), feats[tr].std(0) + 1e-6
        z_tr, z_te = (feats[tr] - mu) / sd, (feats[i] - mu) / sd
        present = [c for c in classes if (labels[tr] == c).any()]
        cents = np.stack([z_tr[labels[tr] == c].mean(0) for c in present])
        cos = cents @ z_te / (np.linalg.norm(cents, axis=1) * np.linalg.norm(z_te) + 1e-9)
        pred_nc[i] = present[int(cos.argmax())]
        pred_lr[i] = present[_logistic(z_tr, np.array([present.index(c) for c in labels[tr]]), z_te, len(present))]
    out = {}
    for name, pred in (("nearest_centroid", pred_nc), ("linear_probe", pred_lr)):
        out[f"{name}_acc"] = float((pred == labels).mean())
        out[f"{name}_balanced_acc"] = float(np.mean([(pred[labels == c] == c).mean() for c in classes]))
    return out


def _logistic(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, k: int, l2: float = 1.0) -> int:
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y).long()
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w ** 2).sum() / len(y)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return int((torch.from_numpy(x_test).double() @ w + b).argmax())


@torch.no_grad()
def clip_features(model: VideoMAE, ds: VideoClips, device: torch.device, progress: Callable | None = None) -> np.ndarray:
    """Per video: the encoder's mean token over its clips (``ds.windows`` per video), averaged."""
    model.eval()
    feats = np.zeros((len(ds.entries), model.norm.normalized_shape[0]), np.float64)
    for i in range(len(ds)):
        k = i // ds.windows
        clip = ds[i]["clip"][None].to(device)
        feats[k] += model.features(normalize_clip(clip))[0].double().cpu().numpy() / ds.windows
        if progress:
            progress(i + 1, len(ds))
    return feats


def probe(model: VideoMAE, build_random: Callable[[], VideoMAE], ds: VideoClips, device: torch.device,
          random_seeds: int = 3) -> dict:
    """Leave-one-video-out probe of ``model``'s features next to ``random_seeds`` random initialisations."""
    labels = np.array([e.label for e in ds.entries])
    counts = Counter(labels.tolist())
    if len(counts) < 2 or min(counts.values()) < 2:
        raise ValueError(f"a probe needs at least 2 labels with 2 videos each; this folder has {dict(counts)}")
    res = {"num_videos": len(labels), "clips_per_video": ds.windows, "class_counts": dict(counts),
           "majority_acc": max(counts.values()) / len(labels),
           "pretrained": loo_scores(clip_features(model, ds, device), labels)}
    rand = []
    for s in range(random_seeds):
        torch.manual_seed(s)
        rand.append(loo_scores(clip_features(build_random().to(device), ds, device), labels))
    res["random_init_mean"] = {k: float(np.mean([r[k] for r in rand])) for k in rand[0]}
    res["random_init_min_max"] = {k: [float(min(r[k] for r in rand)), float(max(r[k] for r in rand))] for k in rand[0]}
    return res


@torch.no_grad()
def reconstruction_error(model: VideoMAE, ds: VideoClips, device: torch.device, masks_per_clip: int = 4,
                         seed: int = 0, progress: Callable | None = None) -> dict:
    """Hidden-tube MSE (pixels in [0, 1]) of the model, of copying the nearest visible patch and of the
    visible patches' mean, under the same ``masks_per_clip`` tube masks per clip; per video and overall."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    per_video: dict[str, list[tuple[float, float, float]]] = {}
    for i in range(len(ds)):
        item = ds[i]
        clip = item["clip"]
        x = clip[None].to(device)
        for _ in range(masks_per_clip):
            mask = model.make_mask(1, g).to(device)
            rec = model.reconstruct(normalize_clip(x), mask, target=x)[0].float().cpu()
            hidden = mask.encoder.mask[0].cpu()
            base = nearest_visible_baseline(clip, hidden, model.patch_size)
            name = ds.entries[int(item["video"])].path.name
            flat = visible_mean_baseline(clip, hidden, model.patch_size)
            per_video.setdefault(name, []).append((masked_mse(rec, clip, hidden, model.patch_size),
                                                   masked_mse(base, clip, hidden, model.patch_size),
                                                   masked_mse(flat, clip, hidden, model.patch_size)))
        if progress:
            progress(i + 1, len(ds))
    def summary(v: list[tuple[float, float, float]]) -> dict:
        a, b, c = (np.array(x) for x in zip(*v))
        return {"model_mse": float(a.mean()), "nearest_visible_mse": float(b.mean()), "visible_mean_mse": float(c.mean()),
                "model_better_fraction": float((a < b).mean()), "model_better_than_mean_fraction": float((a < c).mean()),
                "samples": len(v)}

    allv = [x for v in per_video.values() for x in v]
    return {"videos": len(per_video), "clips_per_video": ds.windows, "masks_per_clip": masks_per_clip,
            **summary(allv), "per_video": {k: summary(v) for k, v in per_video.items()}}


def video_set(root: str | Path, split: str | None, cfg: dict, windows: int) -> VideoClips:
    """The clips of ``root`` cut as the model was trained (frames, interval, size, scale), centre crops."""
    d = cfg.get("data", {})
    return VideoClips(root, split, num_frames=int(d.get("num_frames", 16)), interval=int(d.get("interval", 4)),
                      size=int(d.get("size", 112)), scale=int(d.get("scale", 128)), windows=windows, cache=False,
                      center_crop=True)
