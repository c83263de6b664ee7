"""Can the anomaly model judge this image at all? The out-of-distribution gate in front of every verdict.

The detector learned *normal frontal chest radiographs*; asked about a CT slice, a brain MR, an all-black
file, noise or a radiograph turned on its side, it would still produce a score, and a far-off score
reads as "very abnormal". The gate answers first, from what can be checked, in this order:

1. the DICOM header, where present: Modality (CT, MR, ... are not projection radiographs), Body Part
   Examined (not the chest), View Position (lateral and oblique views); a volume (several slices);
2. the image: size (smaller than the model's input), aspect ratio, colour, intensity statistics
   (all black, all white, uniform) and noise (neighbouring pixels that do not correlate);
3. the layout: correlation of the image, as the model sees it, with the average held-out normal
   radiograph (a 14 x 14 template), upright and turned by 90, 180 and 270 degrees; an image that
   matches a turned template better, matches it negatively (inverted) or not at all is refused;
4. the score: a z-score far above anything a chest radiograph reached (``max_z``, a multiple of the
   highest held-out normal z-score).

Every bound is stored in the model's record (``ood`` section), fitted on the held-out normal images
that also calibrate the score (:meth:`DistributionGate.fit`); the margins were chosen on NIH
ChestX-ray14's *train* split (another population and size than the training data) and on rotated and
inverted copies of it, never on the split the false-rejection rate is reported on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: the sentence a refused image gets (tab, JSON, CLI)
NOT_JUDGED = "This does not look like a frontal chest radiograph; the score is not meaningful"

#: DICOM modalities of projection radiographs (RG: radiographic film, DR: used by some vendors)
RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "DR"}
#: modalities that say nothing about the content (secondary capture, other)
UNJUDGED_MODALITIES = {"", "OT", "SC"}
MODALITY_NAMES = {
    "CT": "computed tomography", "MR": "magnetic resonance", "PT": "PET", "NM": "nuclear medicine",
    "US": "ultrasound", "MG": "mammography", "XA": "X-ray angiography", "RF": "fluoroscopy",
    "IO": "intra-oral radiography", "PX": "panoramic dental X-ray", "OP": "ophthalmic photography",
    "SM": "slide microscopy", "ES": "endoscopy", "XC": "photography", "OCT": "optical coherence tomography",
    "BMD": "bone densitometry", "SEG": "segmentation", "RTIMAGE": "radiotherapy image",
}
CHEST_WORDS = ("CHEST", "THORAX", "LUNG", "CXR", "TORAX", "THORAC")
NON_FRONTAL_VIEWS = {"LL": "left lateral", "RL": "right lateral", "LLD": "left lateral decubitus",
                     "RLD": "right lateral decubitus", "LAT": "lateral", "LATERAL": "lateral",
                     "RLO": "right oblique", "LLO": "left oblique", "RAO": "right oblique", "LAO": "left oblique"}

LAYOUT_GRID = 14  # the template's side: coarse enough for anatomy, not for detail


def layout_grid(x: torch.Tensor | np.ndarray, grid: int = LAYOUT_GRID) -> torch.Tensor:
    """``[B, 1, H, W]`` (or one ``[H, W]``) image(s) in [0, 1] -> ``[B, grid, grid]`` by area averaging."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x, dtype=torch.float32)
    if t.ndim == 2:
        t = t[None, None]
    return F.adaptive_avg_pool2d(t, grid)[:, 0]


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each ``a[i]`` (``[B, g, g]``) with ``b`` (``[g, g]``); 0 for a flat image."""
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten() - b.flatten().mean()
    den = a.norm(dim=1) * b.norm()
    return torch.where(den > 1e-8, (a @ b) / den.clamp_min(1e-8), torch.zeros_like(den))


def orientation_correlations(images: torch.Tensor | np.ndarray, template: torch.Tensor) -> torch.Tensor:
    """``[B, 4]``: correlation of each image's layout with the template turned by 0, 90, 180, 270 degrees
    (counter-clockwise, ``torch.rot90``)."""
    g = layout_grid(images, template.shape[-1])
    return torch.stack([_corr(g, torch.rot90(template, k)) for k in range(4)], 1)


def neighbour_correlation(image: np.ndarray, max_side: int = 256) -> float:
    """Mean correlation of horizontally and vertically neighbouring pixels (after area-downsampling to at
    most ``max_side``): about 0.9 and more for radiographs, about 0 for noise."""
    a = np.asarray(image, dtype=np.float32)
    h, w = a.shape
    f = int(np.ceil(max(h, w) / max_side))
    if f > 1:
        a = a[: h - h % f, : w - w % f].reshape(h // f, f, w // f, f).mean((1, 3))
    out = []
    for x, y in ((a[:, :-1], a[:, 1:]), (a[:-1], a[1:])):
        x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
        den = float(np.sqrt((x * x).sum() * (y * y).sum()))
        if x.size and den > 1e-12:
            out.append(float((x * y).sum() / den))
    return float(np.mean(out)) if out else 0.0


@dataclass
class GateResult:
    """``reasons`` empty: the model can judge the image. ``checks``: what was measured (JSON-able)."""

    reasons: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def in_distribution(self) -> bool:
        return not self.reasons

    def message(self) -> str:
        return f"{NOT_JUDGED}: " + "; ".join(self.reasons) + "." if self.reasons else ""


@dataclass
class DistributionGate:
    """The bounds of what the detector can judge; see the module's docstring. ``template`` is the mean
    layout of the held-out normals; the rest are thresholds with their provenance in ``fitted_on``."""

    template: list[list[float]]
    min_layout: float = 0.25          # upright correlation with the template, at least
    max_z: float = float("inf")       # anomaly z-score, at most
    normal_max_z: float | None = None
    normal_min_layout: float | None = None
    min_neighbour_corr: float = 0.5
    min_std: float = 0.01             # of the [0, 1] image
    dark_mean: float = 0.02           # mean below: all black; above 1 - this: all white
    max_aspect: float = 1.5
    min_side: int = 28
    fitted_on: str = ""

    # ------------------------------------------------------------------ fitting and storing

    @classmethod
    def fit(cls, normals: torch.Tensor, normal_z: np.ndarray, *, layout_margin: float = 0.3,
            z_factor: float = 3.0, fitted_on: str = "") -> "DistributionGate":
        """Bounds from held-out normal images ``[N, 1, S, S]`` at the model's size and their z-scores:
        ``min_layout`` = lowest normal layout correlation - ``layout_margin``; ``max_z`` = ``z_factor`` x
        the highest normal z-score (at least 5)."""
        if len(normals) < 2:
            raise ValueError("the gate needs at least 2 normal images")
        template = layout_grid(normals).mean(0)
        layout = orientation_correlations(normals, template)[:, 0]
        nz = float(np.max(normal_z))
        return cls(template=[[round(float(v), 5) for v in row] for row in template.tolist()],
                   min_layout=round(float(layout.min()) - layout_margin, 4), max_z=round(z_factor * max(nz, 5 / z_factor), 4),
                   normal_max_z=round(nz, 4), normal_min_layout=round(float(layout.min()), 4),
                   min_side=int(normals.shape[-1]), fitted_on=fitted_on or f"{len(normals)} held-out normal images")

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "DistributionGate":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def template_tensor(self) -> torch.Tensor:
        return torch.tensor(self.template, dtype=torch.float32)

    # ------------------------------------------------------------------ checks

    def check_header(self, meta: dict, depth: int = 1) -> list[str]:
        """What the file's own description rules out."""
        reasons = []
        modality = str(meta.get("modality", "") or "").strip().upper()
        if modality and modality not in RADIOGRAPH_MODALITIES | UNJUDGED_MODALITIES:
            name = MODALITY_NAMES.get(modality)
            reasons.append(f"its DICOM Modality is {modality}{f' ({name})' if name else ''}, not a projection "
                           "radiograph (CR/DX)")
        part = str(meta.get("body_part", "") or "").strip().upper()
        if part and not any(w in part for w in CHEST_WORDS):
            reasons.append(f"its DICOM Body Part Examined is {part}, not the chest")
        view = str(meta.get("view_position", "") or "").strip().upper()
        if view in NON_FRONTAL_VIEWS:
            reasons.append(f"its DICOM View Position is {view} ({NON_FRONTAL_VIEWS[view]}); the model knows frontal "
                           "(PA/AP) views only")
        if depth > 1:
            reasons.append(f"it is a volume of {depth} slices (CT, MR or similar); a radiograph is one 2-D projection")
        return reasons

    def check_image(self, image: np.ndarray, model_input: torch.Tensor, channels: int = 1,
                    colour_spread: float = 0.0) -> GateResult:
        """``image``: the 2-D image in [0, 1] at its own size; ``model_input``: ``[1, 1, S, S]`` as the model sees
        it. Size, aspect, colour, intensity, noise and layout."""
        res = GateResult()
        h, w = image.shape
        res.checks.update(height=int(h), width=int(w))
        if min(h, w) < self.min_side:
            res.reasons.append(f"it is only {w} x {h} px; the model needs at least {self.min_side} x {self.min_side} px")
            return res  # too small for the statistics below to mean anything
        aspect = max(h, w) / min(h, w)
        res.checks["aspect_ratio"] = round(aspect, 3)
        if aspect > self.max_aspect:
            res.reasons.append(f"its aspect ratio is {aspect:.2f}:1; chest radiographs are within "
                               f"{self.max_aspect:.1f}:1")
        if channels > 1 and colour_spread > 0.05:
            res.reasons.append(f"it is a colour image (channels differ by {colour_spread:.2f} of the range on "
                               "average); radiographs are grayscale")
        mean, std = float(image.mean()), float(image.std())
        res.checks.update(mean=round(mean, 4), std=round(std, 4))
        if mean < self.dark_mean:
            res.reasons.append(f"it is almost all black (mean {mean:.3f} of the range)")
        elif mean > 1 - self.dark_mean:
            res.reasons.append(f"it is almost all white (mean {mean:.3f} of the range)")
        elif std < self.min_std:
            res.reasons.append(f"it is almost uniform (standard deviation {std:.4f} of the range)")
        if std >= self.min_std:
            nc = neighbour_correlation(image)
            res.checks["neighbour_correlation"] = round(nc, 4)
            if nc < self.min_neighbour_corr:
                res.reasons.append(f"it looks like noise (neighbouring pixels correlate {nc:.2f}; radiographs "
                                   f"above {self.min_neighbour_corr:.2f})")
        if res.reasons or not self.template:
            return res
        corr = orientation_correlations(model_input[:, :1], self.template_tensor)[0].numpy()
        res.checks["layout_correlation"] = {f"{k * 90}deg": round(float(c), 4) for k, c in enumerate(corr)}
        up, best = float(corr[0]), int(np.argmax(corr))
        if -up > max(float(corr.max()), self.min_layout):
            res.reasons.append(f"it looks inverted (correlation {up:+.2f} with the average normal chest radiograph: "
                               "lungs bright, bones dark)")
        elif best != 0 and corr[best] >= self.min_layout:
            turned = {1: "turned 90 degrees anticlockwise", 2: "upside down", 3: "turned 90 degrees clockwise"}[best]
            res.reasons.append(f"it looks {turned}, or is not a chest radiograph (it matches the average normal chest "
                               f"radiograph {turned} with correlation {corr[best]:+.2f}, upright {up:+.2f})")
        elif up < self.min_layout or best != 0:
            res.reasons.append(f"its layout is unlike a chest radiograph (correlation {up:+.2f} with the average "
                               f"normal one; at least {self.min_layout:.2f} expected)")
        return res

    def check_score(self, z: float) -> list[str]:
        if z > self.max_z:
            return [f"its anomaly score is far outside anything a chest radiograph reached (z = {z:.1f}; held-out "
                    f"normals up to {self.normal_max_z:.1f}, refused above {self.max_z:.1f})"]
        return []


def fallback_gate(size: int) -> DistributionGate:
    """A gate without a template (a record written before the gate existed and no data to fit one): header,
    size, intensity and noise checks only."""
    return DistributionGate(template=[], min_side=size, fitted_on="")
