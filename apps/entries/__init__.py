"""Registries of the command line and the demo, one module per domain (core.py, medical.py, lidar.py, ...).

Each module may define ``EVALS``, ``PREDICTS``, ``BENCHES`` (name -> "module:function(argv)"),
``TABS`` (title -> "module:build_tab") and ``APIS`` (name -> "module:function(path, options) -> dict", served
as ``/predict_<name>``). Modules are read in ``ORDER`` and then alphabetically, so the
core's tabs come first; nothing heavy is imported until an entry is used. A name registered twice (in
one module or two) is an error, not a silent overwrite.
"""
from __future__ import annotations

import importlib
import pkgutil

ORDER = ["core"]
KINDS = ("EVALS", "PREDICTS", "BENCHES", "TABS", "APIS")


class DuplicateEntryError(RuntimeError):
    """Two entry modules register the same name."""


def collect(kind: str) -> dict[str, str]:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    names = [m.name for m in pkgutil.iter_modules(__path__)]
    names = [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)
    out: dict[str, str] = {}
    where: dict[str, str] = {}
    for n in names:
        for key, target in getattr(importlib.import_module(f"{__name__}.{n}"), kind, {}).items():
            if key in out:
                raise DuplicateEntryError(f"{kind} {key!r} is registered by both apps/entries/{where[key]}.py and "
                                          f"apps/entries/{n}.py: rename one")
            out[key], where[key] = target, n
    return out
