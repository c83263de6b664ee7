"""Small real data shipped with maskworks (see DATA_LICENSES.md): training sets, app examples, fixtures."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def data_path(*parts: str) -> Path:
    """Path of a shipped data item, e.g. ``data_path("cxr", "nih_64px")``; raises if it is missing."""
    p = ROOT.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"shipped data {'/'.join(parts)!r} not found under {ROOT}; "
                                "reinstall maskworks or pass your own folder")
    return p
