"""The anomaly job: a trained MemMC-MAE with its scorer and calibration, and the one path from a file to a
report that the tab, ``maskworks predict medical/anomaly``, the latency bench and Python users share, so all
score an image exactly the same way:

    from maskworks.domains.medical.anomaly.detector import AnomalyDetector
    result = AnomalyDetector.load().analyse_file("scan.dcm")       # PNG/JPEG, DICOM (any name), NIfTI
    result.to_json()["z_score"]; result.write(Path("out/scan"))    # out/scan_heatmap.png

The record beside the weights (``memmc-cxr.json``, written as ``anomaly.json`` by training)
holds the recipe, the data, the scorer settings, the normal-score statistics and the bounds of the
out-of-distribution gate (:mod:`~maskworks.domains.medical.anomaly.ood`): an image the model cannot judge (a
CT slice, an MR, noise, a turned or inverted radiograph) gets ``in_distribution: false`` with the reasons
and no verdict (``anomalous: null``), in the tab, the CLI and Python alike.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from maskworks.domains.medical.anomaly.ood import DistributionGate, GateResult, fallback_gate
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

    Volumes give slice ``slice_index`` (default: the middle). PNG/JPEG are divided by the bits that
    hold data (``meta['bit_depth']``: 8, or 10/12/14/16 for 16-bit files, see
    :func:`maskworks.core.io.guards.significant_bits`); DICOM uses the chosen HU window (``auto``: the
    header's window, else the 0.5-99.5 % percentiles), as does NIfTI (percentiles of the volume, from the
    reader's ``meta['percentiles']``, so slices compare). This is input display scaling only; anomaly
    scores are never normalised per image.
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
        bits = meta.get("bit_depth")
        if bits is None:  # an array from elsewhere: guess from the mode and values, as before
            bits = 16 if str(meta.get("mode", "")).startswith("I") or img.max() > 255 else 8
        return np.clip(img / float(2 ** int(bits) - 1), 0, 1)
    if window != "auto":
        from maskworks.domains.medical.imaging.windows import apply_window

        return apply_window(img, window)
    c, w = meta.get("window_center"), meta.get("window_width")
    if fmt == "dicom" and c is not None and w:
        from maskworks.domains.medical.imaging.windows import apply_window

        return apply_window(img, (float(c), float(w)))
    if fmt == "nifti" and meta.get("percentiles") is not None:
        lo, hi = meta["percentiles"]
    else:
        lo, hi = np.percentile(vol if fmt == "nifti" else img, [0.5, 99.5])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


#: what the job reads (DICOM is also recognised by its first bytes whatever the name)
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".ima", ".nii", ".nii.gz")


@dataclass
class MedicalInput:
    image: np.ndarray  # [H, W] in [0, 1], the slice the model scores
    depth: int         # number of slices (1 for a 2-D image)
    meta: dict
    source: str
    channels: int = 1
    colour_spread: float = 0.0  # mean |channel - channel mean| of a colour image, in [0, 1] units


def read_input(path: str | Path, window: str = "auto", slice_index: int | None = None) -> MedicalInput:
    """A medical image file as the detector takes it: one 2-D image in [0, 1] (the middle slice of a volume
    unless ``slice_index``); :class:`InputError` naming the file when it cannot be scored. A NIfTI volume is
    read lazily: only the chosen slice and the slices its intensity window is taken from."""
    from maskworks.core.io import InputError
    from maskworks.domains.medical.imaging.io import NIFTI_SUFFIXES, load_medical_image, nifti_shape, read_nifti

    p = Path(path)
    if p.is_dir():
        raise InputError(p, "is a folder", "give one image file (for a DICOM series, one slice)")
    if p.name.lower().endswith(NIFTI_SUFFIXES):
        depth = nifti_shape(p)[2]
        k = depth // 2 if slice_index is None else int(np.clip(slice_index, 0, depth - 1))
        arr, meta = read_nifti(p, slices=[k])
        slice_index = 0
    else:
        arr, meta = load_medical_image(p)
        depth = int(arr.shape[1]) if arr.ndim == 4 else 1
    if not np.isfinite(arr).all():  # the readers refuse these; arrays from elsewhere may still hold them
        raise InputError(p, "contains NaN or infinite values", "re-export the image; a score of such data means nothing")
    spread = 0.0
    if arr.shape[0] == 3 and meta.get("format") == "image":
        scale = float(2 ** int(meta.get("bit_depth", 8)) - 1)
        spread = float(np.abs(arr - arr.mean(0, keepdims=True)).mean() / scale)
    try:
        img = to_unit_range(arr, meta, window, slice_index)
    except ValueError as e:
        raise InputError(p, str(e), "give a 2-D image or a volume") from None
    return MedicalInput(img, depth, meta, str(p), int(arr.shape[0]), spread)


@dataclass
class Analysis:
    """One image's result. When the gate refused the image (``in_distribution`` False) there is no verdict:
    ``anomalous``, ``score``, ``z``, ``percentile``, ``heatmap`` and ``recon`` are None and ``reasons`` says why."""

    score: float | None      # raw image score
    z: float | None          # z-score against held-out normal images
    percentile: float | None  # fraction of normal images scoring lower
    threshold: float         # z threshold used
    specificity: float       # the specificity that threshold was chosen at
    anomalous: bool | None
    heatmap: np.ndarray | None  # [h, w] at model resolution (raw error units)
    pixel_threshold: float   # heatmap value above which a pixel is "abnormal" at that specificity
    image: np.ndarray        # [h, w] model input in [0, 1]
    recon: np.ndarray | None  # [h, w] reconstruction

    source: str = "<array>"
    sha256: str | None = None
    model_version: str = "unknown"
    depth: int = 1
    reasons: list[str] = field(default_factory=list)  # why the model cannot judge this image (empty: it can)
    checks: dict = field(default_factory=dict)        # what the gate measured

    @property
    def in_distribution(self) -> bool:
        return not self.reasons

    @property
    def size(self) -> int:
        return int(self.image.shape[-1])

    def message(self) -> str:
        """``NOT_JUDGED: reasons.`` for a refused image, else empty."""
        return GateResult(self.reasons).message()

    def report(self, **extra: Any) -> dict:
        return {"in_distribution": self.in_distribution, "score": self.score, "z_score": self.z,
                "normal_percentile": self.percentile, "threshold_z": self.threshold, "specificity": self.specificity,
                "anomalous": self.anomalous, "pixel_threshold": self.pixel_threshold,
                "ood_reasons": list(self.reasons), "ood_message": self.message() or None, "ood_checks": self.checks,
                "model_input_px": self.size, **extra}

    def to_json(self) -> dict:
        return self.report(file=Path(self.source).name, sha256=self.sha256, model_version=self.model_version,
                           note="research use only, not for diagnosis")

    def overlay(self, opacity: float = 0.5, cmap: str = "jet") -> np.ndarray:
        """The heatmap over the image; for a refused image the image alone (gray, no colours)."""
        if self.heatmap is None:
            return overlay(self.image, np.zeros_like(self.image), None, 0.0, cmap)
        return overlay(self.image, self.heatmap, self.pixel_threshold, opacity, cmap)

    def write(self, base: Path) -> list[Path]:
        """``base_heatmap.png``: the heatmap over the image with the above-threshold contour (nothing for an
        image the model cannot judge: its JSON says why)."""
        from PIL import Image

        if not self.in_distribution:
            return []
        path = Path(str(base) + "_heatmap.png")
        Image.fromarray(self.overlay()).save(path)
        return [path]


class AnomalyDetector:
    """Model + scorer + calibration + gate. ``analyse(image)`` scores one 2-D image in [0, 1] when the gate
    says the model can judge it."""

    def __init__(self, model: torch.nn.Module, scorer: AnomalyScorer, calibration: Calibration,
                 record: dict, weights: Path | None = None, gate: DistributionGate | None = None) -> None:
        self.model, self.scorer, self.calibration, self.record, self.weights = model, scorer, calibration, record, weights
        self.gate = gate if gate is not None else fallback_gate(self.size)

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | torch.device | None = None) -> "AnomalyDetector":
        """The shipped model by default. A record without an ``ood`` section (written before the gate
        existed) gets one fitted now from its held-out normals, when its data can be found."""
        from maskworks.core.training.task import load_trained

        weights = Path(weights) if weights else shipped_weights()
        device = default_device(device)
        rec_path = record_path(weights)
        if not rec_path.is_file():
            raise FileNotFoundError(f"{weights}: no record {rec_path.name} beside it (written by `maskworks train "
                                    "medical/memmc-cxr` as anomaly.json); it holds the normal-score statistics")
        record = json.loads(rec_path.read_text())
        task, model = load_trained(weights, device)
        scorer = AnomalyScorer.from_config(model, {**record["scoring"], "batch_size": 64}, record.get("pixel_stats"))
        calibration = Calibration.from_dict(record["calibration"])
        if record.get("ood"):
            gate = DistributionGate.from_dict(record["ood"])
        else:
            gate = fit_gate(task, scorer, calibration)
        return cls(model, scorer, calibration, record, Path(weights), gate)

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

    def analyse(self, image: np.ndarray, specificity: float | None = None, *, meta: dict | None = None,
                depth: int = 1, channels: int = 1, colour_spread: float = 0.0, gate: bool = True) -> Analysis:
        """Score one 2-D image in [0, 1]. With ``gate`` (default), an image the model cannot judge (see
        :mod:`~maskworks.domains.medical.anomaly.ood`; ``meta`` adds the DICOM header's checks) gets no
        verdict, only the reasons; ``gate=False`` scores anything (research use: the score is then only
        "how unlike the training normals")."""
        pre = self._check(image, meta, depth, channels, colour_spread, gate)
        return self._score([pre], specificity, gate)[0]

    def _check(self, image: np.ndarray, meta: dict | None, depth: int, channels: int, colour_spread: float,
               gate: bool) -> tuple[torch.Tensor, GateResult, int]:
        """The model input and the gate's verdict before scoring (header, size, intensities, layout)."""
        x = self.prepare(image)
        checked = GateResult()
        if gate:
            checked.reasons += self.gate.check_header(meta or {}, depth)
            img_check = self.gate.check_image(np.asarray(image, dtype=np.float32), x, channels, colour_spread)
            checked.reasons += img_check.reasons
            checked.checks.update(img_check.checks)
        return x, checked, depth

    def _score(self, items: list[tuple[torch.Tensor, GateResult, int]], specificity: float | None,
               gate: bool = True) -> list[Analysis]:
        """Score every item the gate let through in one batch (the scorer's result does not depend on the
        batch: tested), then finish each: verdict, or the reasons it is not judged."""
        spec = self.calibration.specificity if specificity is None else float(specificity)
        thr = self.calibration.threshold_at(spec)
        pthr = self.calibration.pixel_threshold_at(spec) if self.calibration.pixel_quantiles else float("inf")
        todo = [i for i, (_, checked, _) in enumerate(items) if not checked.reasons]
        res = self.scorer.score_batch(torch.cat([items[i][0] for i in todo])) if todo else None
        out = []
        for i, (x, checked, depth) in enumerate(items):
            refused = Analysis(None, None, None, thr, spec, None, None, pthr, x[0, 0].numpy(), None,
                               model_version=self.version, depth=depth, reasons=checked.reasons, checks=checked.checks)
            if checked.reasons:  # not scored at all: nothing the model says about it would mean anything
                out.append(refused)
                continue
            k = todo.index(i)
            score = float(res.scores[k])
            z = float(self.calibration.normalise(score))
            if gate:
                checked.checks["z_score"] = round(z, 4)
                checked.reasons += self.gate.check_score(z)
            if checked.reasons:
                out.append(refused)
                continue
            out.append(Analysis(score, z, self.calibration.percentile(z), thr, spec, z > thr, res.heatmaps[k].numpy(),
                                pthr, x[0, 0].numpy(), res.recon[k, 0].clamp(0, 1).numpy(), model_version=self.version,
                                depth=depth, checks=checked.checks))
        return out

    def analyse_file(self, path: str | Path, window: str = "auto", slice_index: int | None = None,
                     specificity: float | None = None) -> Analysis:
        """Read (:func:`read_input`), check, score and describe one file."""
        res = self.analyse_files([path], window, slice_index, specificity)[0]
        if isinstance(res, Exception):
            raise res
        return res

    def analyse_files(self, paths: Sequence[str | Path], window: str = "auto", slice_index: int | None = None,
                      specificity: float | None = None) -> list["Analysis | InputError"]:
        """:meth:`analyse_file` of many files with one model call for all of them (what a server does with
        concurrent requests); a file that cannot be read gets its :class:`InputError` in its place."""
        from maskworks.core.io import InputError

        inputs: list = []
        for path in paths:
            try:
                inputs.append(read_input(path, window, slice_index))
            except InputError as e:
                inputs.append(e)
        readable = [inp for inp in inputs if not isinstance(inp, InputError)]
        scored = iter(self._score([self._check(inp.image, inp.meta, inp.depth, inp.channels, inp.colour_spread, True)
                                   for inp in readable], specificity))
        out: list = []
        for inp in inputs:
            if isinstance(inp, InputError):
                out.append(inp)
                continue
            res = next(scored)
            res.source, res.sha256 = inp.source, file_sha256(inp.source)
            out.append(res)
        return out


def fit_gate(task, scorer: AnomalyScorer, calibration: Calibration) -> DistributionGate:
    """The gate's bounds from a trained run's held-out normals (``task.build_dataset("calib")``), scored with
    ``scorer`` and normalised with ``calibration``; header/size/intensity checks only when the data are gone."""
    import warnings

    size = int(scorer.model.input_size[0])
    try:
        calib = task.build_dataset("calib").images
    except Exception as e:  # noqa: BLE001 - the training data moved: the gate still checks what it can
        warnings.warn(f"the record has no 'ood' section and its held-out normals cannot be read ({e}); the "
                      "out-of-distribution gate checks headers, size and intensities only", stacklevel=2)
        return fallback_gate(size)
    z = calibration.normalise(scorer.score(calib, progress=False).scores.numpy())
    return DistributionGate.fit(calib, np.asarray(z), fitted_on=f"{len(calib)} held-out normal images of "
                                                                f"{task.cfg['data'].get('root')}")


def store_gate(weights: str | Path | None = None) -> Path:
    """Fit the gate of ``weights`` (default: the shipped model) on its held-out normals and write it into
    the record's ``ood`` section (records written before the gate existed); returns the record's path."""
    weights = Path(weights) if weights else shipped_weights()
    path = record_path(weights)
    record = json.loads(path.read_text())
    record.pop("ood", None)
    path.write_text(json.dumps(record, indent=2))
    det = AnomalyDetector.load(weights, device="cpu")
    record["ood"] = det.gate.to_dict()
    path.write_text(json.dumps(record, indent=2))
    return path


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
