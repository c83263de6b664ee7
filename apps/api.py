"""One HTTP API endpoint per job, for scripts (``gradio_client``): a file in, the job's JSON out.

Each endpoint is ``/predict_<name>`` and calls the same job as the tab and ``maskworks predict``, with the
model the tab has already loaded. Domains add theirs in ``apps/entries/<domain>.py`` as
``APIS = {"name": "module:function"}`` where ``function(path: str, options: dict) -> dict``; a function with a
``batch`` attribute (``batch(paths, options) -> list[dict | InputError]``) gets concurrent requests together
(one model call for up to 16). A file the job cannot use answers ``{"error": "<file>: <problem>. Fix: ..."}``.

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


ANOMALY_OPTIONS = {"window": str, "slice": int, "specificity": float}


def medical_anomaly(path: str, options: dict | None = None) -> dict:
    """``{"window": str, "slice": int, "specificity": float}`` -> the anomaly report."""
    from maskworks.apps.tabs.anomaly import detector

    o = _opts(options, ANOMALY_OPTIONS)
    return detector().analyse_file(path, o.get("window", "auto"), o.get("slice"), o.get("specificity")).to_json()


def _anomaly_batch(paths: list[str], options: list[dict | None]) -> list:
    """Requests with the same options are scored in one model call."""
    from maskworks.apps.tabs.anomaly import detector
    from maskworks.core.io import InputError

    out: list = [None] * len(paths)
    groups: dict[tuple, list[int]] = {}
    for i, o in enumerate(options):
        try:
            opts = _opts(o, ANOMALY_OPTIONS)
        except InputError as e:
            out[i] = e
            continue
        groups.setdefault(tuple(sorted(opts.items())), []).append(i)
    for key, idx in groups.items():
        o = dict(key)
        res = detector().analyse_files([paths[i] for i in idx], o.get("window", "auto"), o.get("slice"), o.get("specificity"))
        for i, r in zip(idx, res):
            out[i] = r if isinstance(r, InputError) else r.to_json()
    return out


medical_anomaly.batch = _anomaly_batch  # type: ignore[attr-defined]


def lidar_detection(path: str, options: dict | None = None) -> dict:
    """``{"threshold": float}`` -> the detection report (boxes in the LiDAR frame, notes)."""
    from maskworks.apps.tabs.lidar import detector
    from maskworks.domains.lidar.detection.inference import DEFAULT_SCORE_THRESHOLD

    o = _opts(options, {"threshold": float})
    return detector().predict_file(path, o.get("threshold", DEFAULT_SCORE_THRESHOLD)).to_json()
