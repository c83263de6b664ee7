"""``shipped:`` paths: data and weights packaged with maskworks (``maskworks.data``).

Recipes and options name shipped items as ``shipped:cxr/nih_64px`` or
``shipped:weights/lidar-rmae.safetensors`` so a recipe works on any machine; every other string is
an ordinary path (``~`` expanded).
"""
from __future__ import annotations

from pathlib import Path

PREFIX = "shipped:"


def resolve_shipped(path: str | Path) -> Path:
    """``shipped:a/b`` -> the packaged ``a/b`` (FileNotFoundError when it is not shipped); others unchanged."""
    s = str(path)
    if s.startswith(PREFIX):
        from maskworks.data import data_path

        return data_path(*[p for p in s[len(PREFIX):].split("/") if p])
    return Path(s).expanduser()
