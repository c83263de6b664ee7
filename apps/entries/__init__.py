"""Registries of the command line and the demo, one module per area (core.py, medical.py, ...).

Each module may define ``EVALS``, ``PREDICTS``, ``BENCHES`` (name -> "module:function(argv)") and
``TABS`` (title -> "module:build_tab"). Modules are read in ``ORDER`` and then alphabetically, so the
core's tabs come first; nothing heavy is imported until an entry is used.
"""
from __future__ import annotations

import importlib
import pkgutil

ORDER = ["core"]


def collect(kind: str) -> dict[str, str]:
    names = [m.name for m in pkgutil.iter_modules(__path__)]
    names = [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)
    out: dict[str, str] = {}
    for n in names:
        out.update(getattr(importlib.import_module(f"{__name__}.{n}"), kind, {}))
    return out
