"""Folders of labelled images in the layout of the shipped data: ``images/`` + ``labels.csv``.

``labels.csv`` has at least ``file,label``; a ``split`` (or ``patient_split``) column, when present,
selects a split. Any folder of this layout works, including withheld test splits.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from maskworks.core.io.errors import InputError
from PIL import Image
from torch.utils.data import Dataset

SPLIT_COLUMNS = ("split", "patient_split")


def read_labels(root: str | Path, split: str | None = None) -> list[dict[str, str]]:
    root = Path(root)
    path = root / "labels.csv"
    if not path.is_file():
        raise InputError(root, "no labels.csv", "give a folder with images/ and labels.csv (columns file,label[,split])")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise InputError(path, "no header with 'file' and 'label' columns", "make the first line file,label[,split]")
    if split is not None:
        col = next((c for c in SPLIT_COLUMNS if c in rows[0]), None)
        if col is None:
            raise InputError(path, f"asked for split {split!r} but there is no split column {SPLIT_COLUMNS}",
                             "add a split column or do not ask for a split")
        rows = [r for r in rows if r[col] == split]
        if not rows:
            raise InputError(path, f"split {split!r} is empty", "check the split names in the split column")
    return rows


def load_image(path: str | Path, channels: int = 1, size: int | None = None,
               max_pixels: int | None = None) -> torch.Tensor:
    """PNG/JPEG -> float tensor ``[C, H, W]`` in [0, 1]; grayscale stays one channel.

    The pixel count is checked from the header before decoding (``max_pixels``, default
    :data:`maskworks.core.io.guards.MAX_PIXELS`). 16-bit files are scaled by the bits that hold data
    (:func:`~maskworks.core.io.guards.significant_bits`: 12-bit radiographs saved as 16-bit PNGs are divided
    by 4095, not 65535, and never clipped at 255 as Pillow's ``convert("L")`` does).
    """
    from maskworks.core.io.guards import MAX_PIXELS, WIDE_MODES, open_image, png_sbit, require_finite, significant_bits

    with open_image(path, MAX_PIXELS if max_pixels is None else max_pixels) as im:
        if im.mode in WIDE_MODES:
            a = require_finite(path, np.asarray(im, dtype=np.float32))
            sbit = png_sbit(path)
            bits = significant_bits(float(a.max(initial=0.0)), WIDE_MODES[im.mode], sbit[0] if sbit else None)
            a = np.clip(a / (2.0 ** bits - 1), 0.0, 1.0)
            if size is not None and a.shape != (size, size):
                a = np.asarray(Image.fromarray(a, mode="F").resize((size, size), Image.BILINEAR))
            if channels != 1:
                a = np.repeat(a[..., None], channels, axis=-1)
        else:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


class LabelledImageFolder(Dataset):
    """Images of one split, loaded once into memory (the shipped sets are a few MB)."""

    def __init__(self, root: str | Path, split: str | None = None, size: int | None = None, channels: int = 1,
                 normal_label: str = "normal") -> None:
        self.root = Path(root)
        self.rows = read_labels(self.root, split)
        self.classes = sorted({r["label"] for r in self.rows})
        self.images = torch.stack([load_image(self.root / "images" / r["file"], channels, size) for r in self.rows])
        self.labels = torch.tensor([self.classes.index(r["label"]) for r in self.rows])
        self.is_normal = torch.tensor([r["label"] == normal_label for r in self.rows])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i], "index": torch.tensor(i)}
