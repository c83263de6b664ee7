"""One HTTP API endpoint per job, for scripts (``gradio_client``): a file in, the job's JSON out.

Each endpoint is ``/predict_<name>`` and calls the same job as the tab and ``maskworks predict``, with the
model the tab has already loaded. Domains add theirs in ``apps/entries/<domain>.py`` as
``APIS = {"name": "module:function"}`` where ``function(path: str, options: dict) -> dict``.

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    client.predict(handle_file("scan.dcm"), {"specificity": 0.95}, api_name="/predict_medical_anomaly")
"""
from __future__ import annotations

from typing import Any


def _opts(options: dict | None, allowed: dict[str, type]) -> dict[str, Any]:
    from maskworks.core.io import InputError

    options = dict(options or {})
    unknown = set(options) - set(allowed)
    if unknown:
        raise InputError("options", f"unknown options {sorted(unknown)}", f"use only {sorted(allowed)}")
    try:
        return {k: allowed[k](v) for k, v in options.items() if v is not None}
    except (TypeError, ValueError) as e:
        raise InputError("options", str(e), f"give {', '.join(f'{k}: {t.__name__}' for k, t in allowed.items())}") from None


def image_mae(path: str, options: dict | None = None) -> dict:
    """``{"ratio": float, "seed": int}`` -> the image MAE's reconstruction report."""
    from maskworks.apps.tabs.image_mae import reconstructor

    o = _opts(options, {"ratio": float, "seed": int})
    return reconstructor().predict_file(path, o.get("ratio"), o.get("seed", 0)).to_json()


def medical_anomaly(path: str, options: dict | None = None) -> dict:
    """``{"window": str, "slice": int, "specificity": float}`` -> the anomaly report."""
    from maskworks.apps.tabs.anomaly import detector

    o = _opts(options, {"window": str, "slice": int, "specificity": float})
    return detector().analyse_file(path, o.get("window", "auto"), o.get("slice"), o.get("specificity")).to_json()


def lidar_detection(path: str, options: dict | None = None) -> dict:
    """``{"threshold": float}`` -> the detection report (boxes in the LiDAR frame, notes)."""
    from maskworks.apps.tabs.lidar import detector
    from maskworks.domains.lidar.detection.inference import DEFAULT_SCORE_THRESHOLD

    o = _opts(options, {"threshold": float})
    return detector().predict_file(path, o.get("threshold", DEFAULT_SCORE_THRESHOLD)).to_json()
