"""Evaluation of chest X-ray anomaly detectors: image AUROC/AUPR on a labelled folder, and
localisation (pixel AUROC, AUPRO) on synthetic lesions, with baselines in the same run.

Synthetic-lesion protocol (:func:`insert_lesions`): every *normal* image of the evaluated data
(never trained on) gets one elliptical lesion, centre uniform in the central 60 % of the image,
semi-axes uniform in [6 %, 16 %] of the side, any angle, edges softened by a Gaussian (sigma 0.5
px at 28 px, scaled with size). Half are opacities (consolidation-like:
``x + a (1 - x) w``, a in [0.35, 0.6]), half lucencies (``x (1 - a w)``), both with blurred
multiplicative texture noise. The ground truth is ``w > 0.5``. The seed fixes everything.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from maskworks.domains.medical.anomaly.scoring import (
    AnomalyScorer,
    Calibration,
    ScoreResult,
    gaussian_blur,
)

# ----------------------------------------------------------------------------- synthetic lesions


def insert_lesions(images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, 1, H, W]`` normal images in [0, 1] -> (images with one lesion each, masks ``[B, H, W]`` bool)."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = images.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    out, masks = images.clone(), torch.zeros(b, h, w, dtype=torch.bool)
    soft = 0.5 * h / 28
    for i in range(b):
        u = torch.rand(8, generator=g)
        cy, cx = h * (0.2 + 0.6 * u[0]), w * (0.2 + 0.6 * u[1])
        ay, ax = h * (0.06 + 0.10 * u[2]), w * (0.06 + 0.10 * u[3])
        t = math.pi * float(u[4])
        dy, dx = yy - cy, xx - cx
        ry = (dy * math.cos(t) + dx * math.sin(t)) / ay
        rx = (-dy * math.sin(t) + dx * math.cos(t)) / ax
        hard = ((ry ** 2 + rx ** 2) <= 1).float()[None, None]
        wmap = gaussian_blur(hard, soft)[0, 0] if soft > 0 else hard[0, 0]
        noise = gaussian_blur(torch.randn(1, 1, h, w, generator=g), 1.0)[0, 0]
        tex = (1 + 0.3 * noise / (noise.std() + 1e-6)).clamp(0.4, 1.6)
        a = 0.35 + 0.25 * float(u[5])
        x = out[i, 0]
        if u[6] < 0.5:  # opacity
            out[i, 0] = (x + a * (1 - x) * wmap * tex).clamp(0, 1)
        else:           # lucency
            out[i, 0] = (x * (1 - a * wmap * tex.clamp(0, 1 / a))).clamp(0, 1)
        masks[i] = wmap > 0.5
    return out, masks


# ----------------------------------------------------------------------------- metrics

def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def aupr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision with the abnormal class positive."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def aupro(heatmaps: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3, steps: int = 200) -> float:
    """Area under the per-region-overlap curve up to ``max_fpr``, normalised to [0, 1]
    (Bergmann et al., MVTec AD): each connected ground-truth region counts equally, whatever its size."""
    from scipy import ndimage

    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    regions = []  # (image index, boolean region)
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m)
        regions += [(i, lab == k) for k in range(1, n + 1)]
    if not regions:
        raise ValueError("AUPRO needs at least one anomalous region")
    neg = heatmaps[~masks]
    thresholds = np.quantile(neg, np.linspace(1.0, 1.0 - max_fpr, steps))  # FPR from 0 to max_fpr
    fprs, pros = [], []
    for t in thresholds:
        fprs.append(float((neg > t).mean()))
        pros.append(float(np.mean([(heatmaps[i][r] > t).mean() for i, r in regions])))
    fprs, pros = np.asarray([0.0] + fprs), np.asarray([0.0] + pros)
    order = np.argsort(fprs, kind="stable")
    fprs, pros = fprs[order], pros[order]
    keep = fprs <= max_fpr
    f, p = fprs[keep], pros[keep]
    if f[-1] < max_fpr:  # extend to exactly max_fpr
        f, p = np.append(f, max_fpr), np.append(p, p[-1])
    return float(np.trapezoid(p, f) / max_fpr)


@dataclass
class DetectorResult:
    name: str
    scores: np.ndarray
    labels: np.ndarray
    auroc: float
    aupr: float
    sensitivity: float | None = None   # at the threshold chosen on held-out normals
    specificity: float | None = None
    pixel_auroc: float | None = None
    aupro: float | None = None
    seconds: float = 0.0

    def row(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "auroc", "aupr", "sensitivity", "specificity",
                                              "pixel_auroc", "aupro", "seconds")}


def evaluate_detector(name: str, score_fn: Callable[[torch.Tensor], ScoreResult], images: torch.Tensor,
                      labels: np.ndarray, calib: torch.Tensor | None = None, lesion_images: torch.Tensor | None = None,
                      lesion_masks: torch.Tensor | None = None, specificity: float = 0.95) -> DetectorResult:
    """Image AUROC/AUPR (label 1 = abnormal), sensitivity/specificity at the threshold set on
    ``calib`` normals at ``specificity``, and localisation on synthetic lesions when given."""
    t0 = time.time()
    res = score_fn(images)
    s = res.scores.numpy().astype(np.float64)
    out = DetectorResult(name, s, labels, auroc(labels, s), aupr(labels, s))
    if calib is not None:
        cal = Calibration.fit(score_fn(calib).scores, specificity=specificity)
        z = cal.normalise(s)
        pred = z > cal.threshold
        out.sensitivity = float(pred[labels == 1].mean())
        out.specificity = float(1 - pred[labels == 0].mean())
    if lesion_images is not None:
        heat = score_fn(lesion_images).heatmaps.numpy()
        m = lesion_masks.numpy()
        out.pixel_auroc = auroc(m.ravel().astype(int), heat.ravel())
        out.aupro = aupro(heat, m)
    out.seconds = round(time.time() - t0, 2)
    return out


# ----------------------------------------------------------------------------- reporting

def markdown_table(results: list[DetectorResult], title: str = "") -> str:
    f = lambda v: "–" if v is None else f"{v:.3f}"
    lines = ([f"**{title}**", ""] if title else []) + [
        "| detector | image AUROC | image AUPR | sens. @ thr | spec. @ thr | pixel AUROC (synthetic) | AUPRO@0.3 (synthetic) |",
        "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {f(r.auroc)} | {f(r.aupr)} | {f(r.sensitivity)} | {f(r.specificity)} | "
                     f"{f(r.pixel_auroc)} | {f(r.aupro)} |")
    return "\n".join(lines)


def roc_plot(results: list[DetectorResult], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for r in results:
        fpr, tpr, _ = roc_curve(r.labels, r.scores)
        ax.plot(fpr, tpr, lw=1.5, label=f"{r.name} ({r.auroc:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
    ax.set_xlabel("false positive rate (normal images flagged)")
    ax.set_ylabel("true positive rate (abnormal images found)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the command

def default_plain_weights() -> str | None:
    """The shipped plain MAE (no memory, no multi-level decoder) trained like MemMC-MAE: the ablation baseline."""
    try:
        from maskworks.data import data_path

        return str(data_path("weights", "memmc-cxr.plain-mae.safetensors"))
    except FileNotFoundError:
        return None


def example_figure(path: str | Path, n_lesions: int = 4, seed: int = 0) -> Path:
    """Docs figure: the shipped examples and synthetic lesions (ground truth in white) with the
    shipped model's heatmaps: ``python -c "from maskworks.domains.medical.anomaly.evaluate import
    example_figure; example_figure('docs/medical/anomaly_examples.png')"``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from maskworks.core.datasets import LabelledImageFolder
    from maskworks.data import data_path
    from maskworks.domains.medical.anomaly.detector import (
        AnomalyDetector,
        overlay,
        to_unit_range,
    )
    from maskworks.domains.medical.imaging.io import load_medical_image

    det = AnomalyDetector.load(device="cpu")
    panels = []
    for f in sorted(data_path("examples", "anomaly").glob("*.png")):
        arr, meta = load_medical_image(f)
        r = det.analyse(to_unit_range(arr, meta), meta=meta)
        panels.append((f.stem, r, None))
    ds = LabelledImageFolder(data_path("cxr", "pneumoniamnist_28px"), "val", det.size)
    les, masks = insert_lesions(ds.images[ds.is_normal][:n_lesions], seed=seed)
    for i in range(n_lesions):
        panels.append((f"synthetic lesion {i}", det.analyse(les[i, 0].numpy(), gate=False), masks[i].numpy()))
    fig, axes = plt.subplots(2, len(panels), figsize=(1.9 * len(panels), 4.1))
    for j, (name, r, m) in enumerate(panels):
        axes[0, j].imshow(r.image, cmap="gray", vmin=0, vmax=1)
        if m is not None:
            axes[0, j].contour(m, levels=[0.5], colors="w", linewidths=0.8)
        axes[0, j].set_title(name.replace("_val_", "\nval_"), fontsize=7)
        axes[1, j].imshow(overlay(r.image, r.heatmap, r.pixel_threshold, 0.6, size=112))
        axes[1, j].set_title(f"z = {r.z:+.2f}" + (" (flagged)" if r.anomalous else ""), fontsize=7)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()  # not set_grad_enabled(False): entries also run in-process (tests)
def scoring_selection(weights: str | Path, out: str | Path | None = None, sigma: float = 0.5) -> dict:
    """Choose the scoring without touching the reported split: AUROC of held-out training normals
    vs the *training-split* abnormal images (never trained on: training uses normals only), for
    every error map x standardisation x reduction. Wrote ``docs/medical/anomaly_scoring_selection.json``."""
    from maskworks.core.datasets import LabelledImageFolder
    from maskworks.core.io import resolve_shipped
    from maskworks.core.training.task import load_trained

    task, model = load_trained(weights, "cpu")
    d = task.cfg["data"]
    train, calib = task.build_dataset("train").images, task.build_dataset("calib").images
    full = LabelledImageFolder(resolve_shipped(d["root"]), d.get("split"), model.input_size[0])
    x = torch.cat([calib, full.images[~full.is_normal]])
    y = np.r_[np.zeros(len(calib)), np.ones(int((~full.is_normal).sum()))]
    res = {"weights": str(weights), "normals (held-out train)": len(calib),
           "abnormal (train split, unused)": int(y.sum()), "auroc": {}}
    for err in ("pixel", "ssim", "feature"):
        for std in ("none", "abs", "signed"):
            s = AnomalyScorer(model, error=err, sigma=sigma, standardise=std, reduce="mean")
            if std != "none":
                s.fit_normal(train)
            heat = s.score(x, progress=False).heatmaps
            for red in ("mean", "topk"):
                s.reduce = red
                res["auroc"][f"{err} / {std} / {red}"] = round(auroc(y, s.reduce_map(heat).numpy()), 3)
    if out:
        Path(out).write_text(json.dumps(res, indent=2))
    return res
