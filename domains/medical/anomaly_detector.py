"""A trained MemMC-MAE with its scorer and calibration: what the app, ``maskworks predict
medical/anomaly`` and the latency bench use, so all three score an image exactly the same way.

The record beside the weights (``memmc-cxr.json``, written as ``anomaly.json`` by training)
holds the recipe, the data, the scorer settings and the normal-score statistics.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskworks.domains.medical.anomaly_scoring import AnomalyScorer, Calibration

#: input windows offered for DICOM: "auto" (header window, else 0.5-99.5 % percentiles) + HU presets
WINDOW_CHOICES = ("auto", "lung", "mediastinum", "soft_tissue", "bone", "brain")


def shipped_weights() -> Path:
    from maskworks.data import data_path

    return data_path("weights", "memmc-cxr.safetensors")


def record_path(weights: Path) -> Path:
    """``X.safetensors`` -> ``X.json``; a run's ``model.safetensors`` -> the run's ``anomaly.json``."""
    weights = Path(weights)
    if weights.is_dir():
        weights = weights / "model.safetensors"
    cand = weights.with_suffix(".json")
    return cand if cand.is_file() else weights.parent / "anomaly.json"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_unit_range(array: np.ndarray, meta: dict, window: str = "auto", slice_index: int | None = None) -> np.ndarray:
    """A reader's ``[C, H, W]`` / ``[C, D, H, W]`` array -> one 2-D image in [0, 1].

    Volumes give slice ``slice_index`` (default: the middle). 8/16-bit PNG/JPEG are divided by
    their bit depth; DICOM uses the chosen HU window (``auto``: the header's window, else the
    0.5-99.5 % percentiles), as does NIfTI (percentiles of the whole volume, so slices compare).
    This is input display scaling only; anomaly scores are never normalised per image.
    """
    a = np.asarray(array, dtype=np.float32)
    vol = a
    if a.ndim == 4:
        d = a.shape[1]
        i = d // 2 if slice_index is None else int(np.clip(slice_index, 0, d - 1))
        a = a[:, i]
    if a.ndim != 3:
        raise ValueError(f"expected a [C, H, W] image, got shape {a.shape}")
    img = a.mean(0) if a.shape[0] > 1 else a[0]
    fmt = meta.get("format", "image")
    if fmt == "image":
        scale = 65535.0 if str(meta.get("mode", "")).startswith("I") or img.max() > 255 else 255.0
        return np.clip(img / scale, 0, 1)
    if window != "auto":
        from maskworks.domains.medical.windows import apply_window

        return apply_window(img, window)
    c, w = meta.get("window_center"), meta.get("window_width")
    if fmt == "dicom" and c is not None and w:
        from maskworks.domains.medical.windows import apply_window

        return apply_window(img, (float(c), float(w)))
    ref = vol if fmt == "nifti" else img
    lo, hi = np.percentile(ref, [0.5, 99.5])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


@dataclass
class Analysis:
    score: float            # raw image score
    z: float                # z-score against held-out normal images
    percentile: float       # fraction of normal images scoring lower
    threshold: float        # z threshold used
    specificity: float      # the specificity that threshold was chosen at
    anomalous: bool
    heatmap: np.ndarray     # [h, w] at model resolution (raw error units)
    pixel_threshold: float  # heatmap value above which a pixel is "abnormal" at that specificity
    image: np.ndarray       # [h, w] model input in [0, 1]
    recon: np.ndarray       # [h, w] reconstruction

    def report(self, **extra: Any) -> dict:
        return {"score": self.score, "z_score": self.z, "normal_percentile": self.percentile,
                "threshold_z": self.threshold, "specificity": self.specificity, "anomalous": self.anomalous,
                "pixel_threshold": self.pixel_threshold, **extra}


class AnomalyDetector:
    """Model + scorer + calibration. ``analyse(image)`` scores one 2-D image in [0, 1]."""

    def __init__(self, model: torch.nn.Module, scorer: AnomalyScorer, calibration: Calibration,
                 record: dict, weights: Path | None = None) -> None:
        self.model, self.scorer, self.calibration, self.record, self.weights = model, scorer, calibration, record, weights

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | torch.device | None = None) -> "AnomalyDetector":
        from maskworks.core.training.task import load_trained

        weights = Path(weights) if weights else shipped_weights()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        rec_path = record_path(weights)
        if not rec_path.is_file():
            raise FileNotFoundError(f"{weights}: no record {rec_path.name} beside it (written by `maskworks train "
                                    "medical/memmc-cxr` as anomaly.json); it holds the normal-score statistics")
        record = json.loads(rec_path.read_text())
        _, model = load_trained(weights, device)
        scorer = AnomalyScorer.from_config(model, {**record["scoring"], "batch_size": 64}, record.get("pixel_stats"))
        return cls(model, scorer, Calibration.from_dict(record["calibration"]), record, Path(weights))

    @property
    def size(self) -> int:
        return int(self.model.input_size[0])

    @property
    def version(self) -> str:
        return str(self.record.get("version", "unknown"))

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """``[H, W]`` in [0, 1] -> ``[1, 1, size, size]`` (PIL bilinear with antialiasing, as the
        training data were made)."""
        from PIL import Image

        img = np.asarray(image, dtype=np.float32)
        if img.ndim != 2:
            raise ValueError(f"expected a 2-D image, got shape {img.shape}")
        u8 = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
        if u8.size != (self.size, self.size):
            u8 = u8.resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(u8, dtype=np.float32) / 255.0)[None, None]

    def analyse(self, image: np.ndarray, specificity: float | None = None) -> Analysis:
        spec = self.calibration.specificity if specificity is None else float(specificity)
        x = self.prepare(image)
        res = self.scorer.score_batch(x)
        score = float(res.scores[0])
        z = float(self.calibration.normalise(score))
        thr = self.calibration.threshold_at(spec)
        pthr = self.calibration.pixel_threshold_at(spec) if self.calibration.pixel_quantiles else float("inf")
        return Analysis(score, z, self.calibration.percentile(z), thr, spec, z > thr, res.heatmaps[0].numpy(), pthr,
                        x[0, 0].numpy(), res.recon[0, 0].clamp(0, 1).numpy())


# ----------------------------------------------------------------------------- pictures

def overlay(image: np.ndarray, heatmap: np.ndarray, pixel_threshold: float | None = None, opacity: float = 0.5,
            cmap: str = "jet", size: int = 256, vmax: float | None = None) -> np.ndarray:
    """RGB uint8 ``[size, size, 3]``: the image in gray, the heatmap in ``cmap`` on top, and the
    contour of the region above ``pixel_threshold`` in white. The colour scale is fixed by
    ``vmax`` (default: 2x the threshold), not by the image, so colours compare across images."""
    import matplotlib

    from PIL import Image

    up = lambda a, mode: np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), mode))
    img = np.clip(up(image, Image.BILINEAR), 0, 1)
    heat = up(heatmap, Image.BILINEAR)
    top = vmax if vmax else (2 * pixel_threshold if pixel_threshold and np.isfinite(pixel_threshold) else float(heat.max()) or 1.0)
    colours = matplotlib.colormaps[cmap](np.clip(heat / top, 0, 1))[..., :3]
    alpha = float(opacity) * np.clip(heat / top, 0.15, 1)[..., None]
    rgb = img[..., None] * (1 - alpha) + colours * alpha
    if pixel_threshold is not None and np.isfinite(pixel_threshold):
        region = heat > pixel_threshold
        edge = region & ~_erode(region)
        rgb[edge] = 1.0
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _erode(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:] &= m[:-1]
    out[:-1] &= m[1:]
    out[:, 1:] &= m[:, :-1]
    out[:, :-1] &= m[:, 1:]
    return out


def score_plot(calibration: Calibration, z: float, threshold: float, path: str | Path | None = None):
    """Small figure: the distribution of normal z-scores (from the stored quantiles), the
    threshold, and this image's z-score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = np.asarray(calibration.quantiles)
    levels = np.linspace(0, 1, len(q))
    samples = np.interp(np.linspace(0.0025, 0.9975, 400), levels, q)
    fig, ax = plt.subplots(figsize=(4.6, 2.2))
    ax.hist(samples, bins=30, color="#8fa8c8", density=True, label=f"normal images (n={calibration.n})")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold z={threshold:.2f}")
    ax.axvline(z, color="#d62728", lw=2, label=f"this image z={z:.2f}")
    ax.set_xlabel("anomaly score (z vs. normal images)")
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


# ----------------------------------------------------------------------------- maskworks predict

def predict_main(argv: list[str]) -> int:
    """``maskworks predict medical/anomaly FILES... --out DIR``."""
    import argparse

    from maskworks.domains.medical.io import MedicalImageError, load_medical_image

    p = argparse.ArgumentParser(prog="maskworks predict medical/anomaly", description=
                                "Anomaly heatmap and score of each chest X-ray (PNG/JPEG, DICOM, NIfTI slice) with "
                                "the MemMC-MAE: writes <name>_heatmap.png (overlay with the above-threshold contour) "
                                "and <name>.json (score, z-score against normal images, threshold, model version, "
                                "input SHA-256). Research use only, not for diagnosis.")
    p.add_argument("files", nargs="+", help="image files (PNG/JPEG, DICOM, NIfTI)")
    p.add_argument("--out", default="predictions", help="output folder")
    p.add_argument("--weights", help="weights (default: shipped data/weights/memmc-cxr.safetensors)")
    p.add_argument("--specificity", type=float, default=None,
                   help="threshold at this specificity on held-out normals (default: the model's, 0.95)")
    p.add_argument("--window", default="auto", choices=WINDOW_CHOICES, help="DICOM/NIfTI intensity window")
    p.add_argument("--slice", type=int, default=None, help="slice of a volume (default: middle)")
    a = p.parse_args(argv)
    det = AnomalyDetector.load(a.weights)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for f in a.files:
        try:
            arr, meta = load_medical_image(f)
            img = to_unit_range(arr, meta, a.window, a.slice)
        except (MedicalImageError, ValueError) as e:
            print(f"skipped: {e}")
            failed += 1
            continue
        res = det.analyse(img, a.specificity)
        stem = Path(f).name.split(".")[0]
        from PIL import Image

        Image.fromarray(overlay(res.image, res.heatmap, res.pixel_threshold)).save(out / f"{stem}_heatmap.png")
        rep = res.report(file=str(f), sha256=file_sha256(f), model_version=det.version,
                         note="research use only, not for diagnosis")
        (out / f"{stem}.json").write_text(json.dumps(rep, indent=2))
        print(f"{f}: score {res.score:.4f} (z {res.z:+.2f}, threshold {res.threshold:.2f}) "
              f"{'ABOVE' if res.anomalous else 'below'} threshold -> {out / (stem + '_heatmap.png')}")
    return 1 if failed == len(a.files) else 0
