"""Chest X-ray folders for pre-training and label-fraction studies: splits, stratified subsets.

Any folder of the ``images/`` + ``labels.csv`` layout works. When ``labels.csv`` has a split
column (``split`` or ``patient_split``) its train split is used for training and its val/valid/test
split for evaluation; without one a stratified 20 % is held out with a fixed seed, so that
pre-training (which must never see evaluation images) and fine-tuning agree on the same partition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from maskworks.core.datasets import SPLIT_COLUMNS, LabelledImageFolder, read_labels
from maskworks.core.io import InputError, resolve_shipped
from torch.utils.data import Dataset

#: Inputs are standardised with fixed constants (not data statistics) so pre-training, fine-tuning
#: and exported backbones all see the same scale on any folder.
CXR_MEAN, CXR_STD = 0.5, 0.25
EVAL_SPLIT_NAMES = ("val", "valid", "validation", "test")


def standardize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> roughly zero-mean unit-scale network input."""
    return (x - CXR_MEAN) / CXR_STD


def stratified_subset(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified random ``fraction`` of ``labels`` (sorted).

    Class ``c`` with ``n_c`` members contributes ``max(1, floor(fraction * n_c + 0.5))`` of them, so
    class ratios are kept up to rounding and no class disappears at small fractions. For one seed
    the subsets are nested (each class is permuted once; smaller fractions take a prefix), which
    makes differences between fractions less noisy.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = max(1, int(math.floor(fraction * len(idx) + 0.5)))
        out.append(idx[:k])
    return np.sort(np.concatenate(out))


@dataclass
class SplitInfo:
    """How a folder was split: which column/values, or a stratified hold-out."""

    train: np.ndarray  # row indices
    eval: np.ndarray
    how: str


def split_rows(rows: list[dict[str, str]], train_split: str | None = None, eval_split: str | None = None,
               holdout: float = 0.2, seed: int = 0) -> SplitInfo:
    """Train/eval row indices of a ``labels.csv`` (see the module docstring)."""
    col = next((c for c in SPLIT_COLUMNS if c in rows[0]), None)
    if col is None:
        if not 0.0 < holdout < 1.0:
            raise InputError("labels.csv", f"no split column {SPLIT_COLUMNS} and hold-out fraction {holdout}",
                             "give a hold-out fraction in (0, 1) or add a split column")
        labels = np.array([r["label"] for r in rows])
        ev = stratified_subset(np.unique(labels, return_inverse=True)[1], holdout, seed)
        tr = np.setdiff1d(np.arange(len(rows)), ev)
        return SplitInfo(tr, ev, f"no split column: stratified {holdout:.0%} hold-out (seed {seed})")
    values = [r[col] for r in rows]
    present = sorted(set(values))
    train_split = train_split or "train"
    if eval_split is None:
        eval_split = next((s for s in EVAL_SPLIT_NAMES if s in present), None)
        if eval_split is None:
            raise InputError("labels.csv", f"column {col!r} has splits {present} but none of {EVAL_SPLIT_NAMES}",
                             "pass the evaluation split explicitly (--eval-split)")
    for s in (train_split, eval_split):
        if s not in present:
            raise InputError("labels.csv", f"column {col!r} has no split {s!r}", f"use one of {present}")
    arr = np.array(values)
    return SplitInfo(np.flatnonzero(arr == train_split), np.flatnonzero(arr == eval_split),
                     f"column {col!r}: train={train_split!r}, eval={eval_split!r}")


class LabelledSplit:
    """All images of a folder loaded once at ``size`` px, with its train/eval partition."""

    def __init__(self, root: str | Path, size: int, train_split: str | None = None, eval_split: str | None = None,
                 holdout: float = 0.2, channels: int = 1) -> None:
        self.root = resolve_shipped(root)
        folder = LabelledImageFolder(self.root, split=None, size=size, channels=channels)
        self.classes = folder.classes
        self.images = folder.images
        self.labels = folder.labels
        self.split = split_rows(folder.rows, train_split, eval_split, holdout)

    def part(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(self.split.train if which == "train" else self.split.eval, dtype=torch.long)
        return self.images[idx], self.labels[idx]


class UnlabelledImages(Dataset):
    """Training images of one or more folders, labels dropped (self-supervised pre-training)."""

    def __init__(self, roots: Sequence[str | Path], size: int, which: str = "train", holdout: float = 0.2,
                 channels: int = 1, train_split: str | None = None, eval_split: str | None = None) -> None:
        if isinstance(roots, (str, Path)):
            roots = [roots]
        parts = []
        for root in roots:
            root = resolve_shipped(root)
            read_labels(root)  # layout errors name the folder before any image is decoded
            parts.append(LabelledSplit(root, size, train_split, eval_split, holdout, channels).part(which)[0])
        if not parts:
            raise InputError("data.roots", "is empty", "list at least one images/ + labels.csv folder")
        self.images = torch.cat(parts)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i]}
