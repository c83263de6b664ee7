"""The anomaly job: a trained MemMC-MAE with its scorer and calibration, and the one path from a file to a
report that the tab, ``maskworks predict medical/anomaly``, the latency bench and Python users share, so all
score an image exactly the same way:

    from maskworks.domains.medical.anomaly.detector import AnomalyDetector
    result = AnomalyDetector.load().analyse_file("scan.dcm")       # PNG/JPEG, DICOM (any name), NIfTI
    result.to_json()["z_score"]; result.write(Path("out/scan"))    # out/scan_heatmap.png

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
from maskworks.domains.medical.anomaly.scoring import AnomalyScorer, Calibration
from maskworks.core.device import default_device

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
        from maskworks.domains.medical.imaging.windows import apply_window

        return apply_window(img, window)
    c, w = meta.get("window_center"), meta.get("window_width")
    if fmt == "dicom" and c is not None and w:
        from maskworks.domains.medical.imaging.windows import apply_window

        return apply_window(img, (float(c), float(w)))
    ref = vol if fmt == "nifti" else img
    lo, hi = np.percentile(ref, [0.5, 99.5])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


#: what the job reads (DICOM is also recognised by its 'DICM' prefix whatever the name)
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".ima", ".nii", ".nii.gz")


@dataclass
class MedicalInput:
    image: np.ndarray  # [H, W] in [0, 1], the slice the model scores
    depth: int         # number of slices (1 for a 2-D image)
    meta: dict
    source: str


def read_input(path: str | Path, window: str = "auto", slice_index: int | None = None) -> MedicalInput:
    """A medical image file as the detector takes it: one 2-D image in [0, 1] (the middle slice of a volume
    unless ``slice_index``); :class:`InputError` naming the file when it cannot be scored."""
    from maskworks.core.io import InputError
    from maskworks.domains.medical.imaging.io import load_medical_image

    p = Path(path)
    if p.is_dir():
        raise InputError(p, "is a folder", "give one image file (for a DICOM series, one slice)")
    arr, meta = load_medical_image(p)
    if not np.isfinite(arr).all():
        raise InputError(p, "contains NaN or infinite values", "re-export the image; a score of such data means nothing")
    depth = int(arr.shape[1]) if arr.ndim == 4 else 1
    try:
        img = to_unit_range(arr, meta, window, slice_index)
    except ValueError as e:
        raise InputError(p, str(e), "give a 2-D image or a volume") from None
    return MedicalInput(img, depth, meta, str(p))


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

    source: str = "<array>"
    sha256: str | None = None
    model_version: str = "unknown"
    depth: int = 1

    def report(self, **extra: Any) -> dict:
        return {"score": self.score, "z_score": self.z, "normal_percentile": self.percentile,
                "threshold_z": self.threshold, "specificity": self.specificity, "anomalous": self.anomalous,
                "pixel_threshold": self.pixel_threshold, **extra}

    def to_json(self) -> dict:
        return self.report(file=Path(self.source).name, sha256=self.sha256, model_version=self.model_version,
                           note="research use only, not for diagnosis")

    def overlay(self, opacity: float = 0.5, cmap: str = "jet") -> np.ndarray:
        return overlay(self.image, self.heatmap, self.pixel_threshold, opacity, cmap)

    def write(self, base: Path) -> list[Path]:
        """``base_heatmap.png``: the heatmap over the image with the above-threshold contour."""
        from PIL import Image

        path = Path(str(base) + "_heatmap.png")
        Image.fromarray(self.overlay()).save(path)
        return [path]


class AnomalyDetector:
    """Model + scorer + calibration. ``analyse(image)`` scores one 2-D image in [0, 1]."""

    def __init__(self, model: torch.nn.Module, scorer: AnomalyScorer, calibration: Calibration,
                 record: dict, weights: Path | None = None) -> None:
        self.model, self.scorer, self.calibration, self.record, self.weights = model, scorer, calibration, record, weights

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | torch.device | None = None) -> "AnomalyDetector":
        from maskworks.core.training.task import load_trained

        weights = Path(weights) if weights else shipped_weights()
        device = default_device(device)
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
                        x[0, 0].numpy(), res.recon[0, 0].clamp(0, 1).numpy(), model_version=self.version)

    def analyse_file(self, path: str | Path, window: str = "auto", slice_index: int | None = None,
                     specificity: float | None = None) -> Analysis:
        """Read (:func:`read_input`), score and describe one file."""
        inp = read_input(path, window, slice_index)
        res = self.analyse(inp.image, specificity)
        res.source, res.sha256, res.depth = inp.source, file_sha256(path), inp.depth
        return res


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
