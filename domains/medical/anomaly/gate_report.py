"""Figures of the out-of-distribution gate: which unusual inputs it refuses, and how many real chest
radiographs it wrongly refuses (false rejections), on any folder of the shipped layout.

    python -c "from maskworks.domains.medical.anomaly.gate_report import *; \
               print(summary(gate_figures(json_path='docs/medical/anomaly_gate.json')))"

Unusual inputs are the shipped CT DICOMs and brain NIfTI plus files written here from shipped images
(:func:`write_unusual_inputs`); the real radiographs are the shipped examples, PneumoniaMNIST's ``val``
split and NIH ChestX-ray14's ``valid`` split (the gate's margins were chosen on NIH's ``train`` split).
Every file goes through :meth:`AnomalyDetector.analyse_file`, the path of the tab and the CLI.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np


def write_unusual_inputs(folder: str | Path, radiograph: str | Path | None = None) -> dict[str, Path]:
    """PNG files no chest-radiograph model can judge, written into ``folder``: all black, uniform gray,
    uniform noise, a 1 x 1 px image, a 3:1 strip, and ``radiograph`` (default: an NIH validation image)
    turned by 90, 180 and 270 degrees and inverted."""
    from PIL import Image

    from maskworks.data import data_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = Path(radiograph) if radiograph else data_path("cxr", "nih_64px", "images", "00000231_013.png")
    cxr = np.asarray(Image.open(src).convert("L"))
    rng = np.random.default_rng(0)
    arrays = {
        "black.png": np.zeros((256, 256), np.uint8),
        "gray.png": np.full((256, 256), 128, np.uint8),
        "noise.png": rng.integers(0, 256, (256, 256), dtype=np.uint8),
        "one_pixel.png": np.full((1, 1), 200, np.uint8),
        "strip.png": np.tile(cxr, (1, 3)),
        "cxr_turned_90.png": np.rot90(cxr, 1),
        "cxr_upside_down.png": np.rot90(cxr, 2),
        "cxr_turned_270.png": np.rot90(cxr, 3),
        "cxr_inverted.png": 255 - cxr,
    }
    out = {}
    for name, a in arrays.items():
        Image.fromarray(np.ascontiguousarray(a)).save(folder / name)
        out[name] = folder / name
    return out


def shipped_unusual_inputs() -> dict[str, Path]:
    """The shipped CT DICOMs (not RG1_UNCI.dcm, a real chest CR) and the brain MR NIfTI."""
    from maskworks.data import data_path

    files = {p.name: p for p in sorted(data_path("medical", "dicom").glob("*.dcm")) if p.name != "RG1_UNCI.dcm"}
    nii = data_path("medical", "nifti", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    files[nii.name] = nii
    return files


def acceptance(det, files: list[Path]) -> dict:
    """How many of ``files`` the gate lets through to a verdict; the refused ones with their reasons."""
    refused, reasons = [], collections.Counter()
    for f in files:
        res = det.analyse_file(f)
        if not res.in_distribution:
            refused.append({"file": Path(f).name, "reasons": res.reasons})
            for r in res.reasons:
                reasons[r.split(" (")[0].split(";")[0]] += 1
    n = len(files)
    return {"n": n, "accepted": n - len(refused), "refused": len(refused),
            "refusal_rate": round(len(refused) / n, 4) if n else None, "refused_files": refused,
            "reasons": dict(reasons.most_common())}


def folder_files(root: str | Path, split: str | None) -> list[Path]:
    from maskworks.core.datasets import read_labels

    root = Path(root)
    return [root / "images" / r["file"] for r in read_labels(root, split)]


def gate_figures(weights: str | Path | None = None, json_path: str | Path | None = None) -> dict:
    """Every figure of the module's docstring as a dict (written to ``json_path`` too)."""
    import tempfile

    from maskworks.data import data_path
    from maskworks.domains.medical.anomaly.detector import AnomalyDetector

    det = AnomalyDetector.load(weights, device="cpu")
    out: dict = {"gate": {k: v for k, v in det.gate.to_dict().items() if k != "template"}}
    with tempfile.TemporaryDirectory() as tmp:
        unusual = {**shipped_unusual_inputs(), **write_unusual_inputs(tmp)}
        per_file = {}
        for name, f in unusual.items():
            res = det.analyse_file(f)
            per_file[name] = {"in_distribution": res.in_distribution, "reasons": res.reasons}
        out["unusual_inputs"] = per_file
    out["shipped_examples"] = acceptance(det, sorted(data_path("examples", "anomaly").glob("*.png")) +
                                         [data_path("medical", "dicom", "RG1_UNCI.dcm")])
    out["pneumoniamnist_val"] = acceptance(det, folder_files(data_path("cxr", "pneumoniamnist_28px"), "val"))
    out["nih_valid"] = acceptance(det, folder_files(data_path("cxr", "nih_64px"), "valid"))
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out


def summary(figures: dict) -> str:
    """The figures as lines of text: each unusual input with its reasons, then the refusal rates."""
    lines = [f"{name:50s} {'VERDICT' if r['in_distribution'] else 'refused'}: {'; '.join(r['reasons'])}"
             for name, r in figures["unusual_inputs"].items()]
    for key in ("shipped_examples", "pneumoniamnist_val", "nih_valid"):
        r = figures[key]
        lines.append(f"{key}: {r['refused']} of {r['n']} refused ({r['refusal_rate']:.1%}) {r['reasons']}")
    return "\n".join(lines)
