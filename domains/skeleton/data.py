"""Labelled skeleton collections (a folder or a pyskl ``.pkl``) and the windows the models see.

A folder has ``labels.csv`` (columns ``file`` and ``label``; optional ``label_idx``, ``subject``,
``split``, ``fps``) and optionally ``classes.txt`` (label names in index order) beside the files it names (``.npy``, ``.npz``, ``.skeleton``, ``.bvh``): the
layout of ``data/skeleton/cmu`` and of the CMU set it was cut from. A pyskl file brings its own
labels, splits and (NTU ``P###`` / CMU ``cmu_SS_TT`` names) subjects.

Model input: sequences go to NTU-25 at 30 fps, scaled to unit torso length; every window of
``frames`` frames is moved so that its first frame has the pelvis at the origin and the subject
facing +z, then cut into ``frames // frames_per_node`` segments. A node is one joint in one
segment; its feature is the joint's *bone* (its position minus its parent's, in the tree rooted at
the pelvis) in each of the ``frames_per_node`` frames, so a node carries a short piece of motion.
The pelvis has no parent: its feature is its position relative to a point one torso length below
where it started the window (the body's travel, never a zero vector). Bones suit the scaled cosine
error: a bone keeps its length, so its direction is the whole of it, and a window's joints follow
from its bones exactly (:func:`features_to_joints`). Positions relative to the window's start were
tried first: their direction is dominated by the body's travel, and a low cosine error there still
left hidden arms tens of centimetres off.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from maskworks.core.io import InputError, resolve_shipped

from .io import read_pyskl, read_skeleton
from .layouts import NTU25
from .sequence import Skeleton, normalize, resample, take_window, torso_length, window_starts

FPS = 30.0


@dataclass
class Sample:
    skeleton: Skeleton
    name: str
    label: int | None = None
    subject: str | None = None
    split: str | None = None


@dataclass
class Collection:
    """Labelled sequences with their label names; ``source`` is the folder or file they came from."""

    samples: list[Sample]
    label_names: list[str]
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return sum(s.skeleton.num_frames for s in self.samples)

    def describe(self) -> str:
        subjects = {s.subject for s in self.samples if s.subject is not None}
        return (f"{len(self.samples)} sequences, {self.num_frames:,} frames, {len(self.label_names)} labels"
                + (f", {len(subjects)} subjects" if subjects else ""))


def _subject_from_name(name: str) -> str | None:
    m = re.search(r"P(\d{3})", name) or re.search(r"cmu_(\d+)_", name) or re.match(r"(\d+)_\d+", Path(name).stem)
    return m.group(1) if m else None


def read_folder(root: str | Path) -> Collection:
    """``labels.csv`` + the files it names (see the module docstring)."""
    root = resolve_shipped(root)
    table = root / "labels.csv"
    if not table.is_file():
        raise InputError(root, "no labels.csv", "give a folder with labels.csv (columns file, label; optional "
                         "subject, split, fps) beside the skeleton files, or a pyskl .pkl")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "file" not in rows[0] or "label" not in rows[0]:
        raise InputError(table, "no 'file' and 'label' columns", "add columns file and label")
    if (root / "classes.txt").is_file():  # label names in index order (a subset may not use them all)
        names = [n.strip() for n in (root / "classes.txt").read_text().splitlines() if n.strip()]
    elif "label_idx" in rows[0]:
        pairs = {(int(r["label_idx"]), r["label"]) for r in rows}
        n = max(i for i, _ in pairs) + 1
        names = [""] * n
        for i, name in pairs:
            names[i] = name
        names = [nm or f"class_{i}" for i, nm in enumerate(names)]
    else:
        names = sorted({r["label"] for r in rows})
    samples = []
    for r in rows:
        path = (root / r["file"]).resolve()
        if root.resolve() not in path.parents:
            raise InputError(table, f"{r['file']!r} points outside the folder", "name files inside the folder")
        skel = read_skeleton(path)
        if r.get("fps"):
            skel.fps = float(r["fps"])
        label = int(r["label_idx"]) if "label_idx" in r and r["label_idx"] != "" else names.index(r["label"])
        samples.append(Sample(skel, r["file"], label, r.get("subject") or _subject_from_name(r["file"]),
                              r.get("split") or None))
    return Collection(samples, names, str(root))


def read_collection(path: str | Path) -> Collection:
    """A labelled folder or a pyskl ``.pkl``."""
    path = resolve_shipped(path)
    if path.is_dir():
        return read_folder(path)
    if path.suffix.lower() != ".pkl":
        raise InputError(path, "neither a folder with labels.csv nor a pyskl .pkl", "give one of those")
    pk = read_pyskl(path)
    split_of = {name: split for split, names in pk.split.items() for name in names}
    n = max((s.label for s in pk.samples if s.label is not None), default=-1) + 1
    names = pk.label_names if pk.label_names and len(pk.label_names) >= n else [f"class_{i}" for i in range(n)]
    samples = [Sample(s, name, s.label, _subject_from_name(name), split_of.get(name))
               for s, name in zip(pk.samples, pk.names)]
    return Collection(samples, names, str(path))


# ----------------------------------------------------------------------------------------- preparation

@dataclass
class Prepared:
    """A sequence ready for windows: NTU-25, 30 fps, unit torso, ``[M, T, 25, 3]`` plus per-person validity."""

    joints: np.ndarray
    valid: np.ndarray  # [M] bool: person present in some frame
    scale: float       # metres per unit (the torso length)
    notes: list[str]


def prepare(skel: Skeleton, max_persons: int = 2) -> Prepared:
    """Skeleton -> NTU-25, 30 fps, unit torso length (not yet centred: windows are)."""
    if skel.dims != 3:
        raise InputError(skel.source, "2-D keypoints; the action models work on 3-D joints",
                         "give 3-D joints (x, y, z in metres): mocap (.bvh/.npy), NTU .skeleton, or a video")
    s = skel.to_layout(NTU25)
    joints, _ = resample(s.joints, skel.fps or FPS, FPS, None)
    joints = joints[:max_persons]
    present = np.abs(joints).reshape(joints.shape[0], -1).max(axis=1) > 0
    if not present.any():
        raise InputError(skel.source, "every joint is at (0, 0, 0)", "give a sequence with tracked joints")
    first = int(np.argmax(present))
    if first:
        joints = np.concatenate([joints[first:], joints[:first]])
        present = np.concatenate([present[first:], present[:first]])
    scale = torso_length(joints, NTU25)
    if scale < 1e-4:
        raise InputError(skel.source, "the torso has no length (hips and shoulders coincide)",
                         "check the joint order: give NTU-25, COCO-17 or MediaPipe-33 joints")
    return Prepared((joints / scale).astype(np.float32), present, scale, list(s.notes))


def tree_parents(layout=NTU25) -> np.ndarray:
    """``[V]`` parent of each joint in the bone tree rooted at the layout's centre joint (-1 for the root)."""
    root = layout.centre[0]
    parent = np.full(layout.num_joints, -2, np.int64)
    parent[root] = -1
    frontier = [root]
    while frontier:
        nxt = []
        for j in frontier:
            for a, b in layout.bones:
                for u, w in ((a, b), (b, a)):
                    if u == j and parent[w] == -2:
                        parent[w] = j
                        nxt.append(w)
        frontier = nxt
    if (parent == -2).any():
        raise ValueError(f"{layout.name}: joints {np.flatnonzero(parent == -2).tolist()} are not connected to the root")
    return parent


PARENTS = tree_parents(NTU25)
ROOT = NTU25.centre[0]
ROOT_OFFSET = np.array([0.0, 1.0, 0.0], np.float32)  # the root's feature is measured from 1 unit below its start


def _order(parents: np.ndarray) -> list[int]:
    order, seen = [], set()
    while len(order) < len(parents):
        for j, p in enumerate(parents):
            if j not in seen and (p < 0 or p in seen):
                order.append(j)
                seen.add(j)
    return order


ORDER = _order(PARENTS)


def to_bones(pos: np.ndarray) -> np.ndarray:
    """Joint positions ``[..., V, 3]`` (window frame) -> bone features ``[..., V, 3]`` (see module docstring)."""
    out = pos - pos[..., np.maximum(PARENTS, 0), :]
    out[..., ROOT, :] = pos[..., ROOT, :] + ROOT_OFFSET
    return out


def from_bones(bones):
    """Inverse of :func:`to_bones` (numpy or torch): chain each bone onto its parent from the root out."""
    lib = torch if isinstance(bones, torch.Tensor) else np
    offset = torch.as_tensor(ROOT_OFFSET).to(bones) if lib is torch else ROOT_OFFSET
    pos = [None] * bones.shape[-2]
    for j in ORDER:
        pos[j] = bones[..., j, :] - offset if PARENTS[j] < 0 else pos[PARENTS[j]] + bones[..., j, :]
    return lib.stack(pos, -2) if lib is torch else np.stack(pos, axis=-2)


def window(prep: Prepared, start: int, frames: int, frames_per_node: int) -> np.ndarray:
    """``[M, S, V, frames_per_node * 3]`` node features of the window at ``start`` (see module docstring)."""
    w = take_window(prep.joints, start, frames)
    w, _ = normalize(w, NTU25, centre=True, facing=True, scale=False, frame=0)
    w = to_bones(w)
    w[~prep.valid] = 0.0
    m, t, v, c = w.shape
    s = t // frames_per_node
    w = w[:, : s * frames_per_node].reshape(m, s, frames_per_node, v, c).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(w.reshape(m, s, v, frames_per_node * c))


def features_to_joints(x: np.ndarray | torch.Tensor, frames_per_node: int) -> np.ndarray | torch.Tensor:
    """Inverse of :func:`window`: node features ``[..., S, V, L*3]`` -> joint positions ``[..., S*L, V, 3]``
    (window frame, torso units)."""
    *lead, s, v, f = x.shape
    y = x.reshape(*lead, s, v, frames_per_node, f // frames_per_node)
    y = y.swapaxes(-3, -2) if isinstance(y, np.ndarray) else y.transpose(-3, -2)
    return from_bones(y.reshape(*lead, s * frames_per_node, v, f // frames_per_node))


class WindowDataset(Dataset):
    """Windows of the chosen sequences: ``x`` ``[M, S, V, F]``, ``valid`` ``[M]``, ``label``, ``seq``.

    ``persons="each"`` yields one item per present person (``x`` ``[S, V, F]``; pre-training),
    ``"all"`` the persons together (classification). ``max_windows`` keeps at most that many evenly
    spaced windows per sequence, so that a long sequence does not outweigh a short one.
    """

    def __init__(self, collection: Collection, indices: list[int] | None = None, frames: int = 32,
                 frames_per_node: int = 4, stride: int = 16, max_persons: int = 2, persons: str = "all",
                 max_windows: int | None = None) -> None:
        self.collection = collection
        self.indices = list(range(len(collection.samples))) if indices is None else list(indices)
        self.frames, self.fpn, self.persons = frames, frames_per_node, persons
        self.prepared = {i: prepare(collection.samples[i].skeleton, max_persons) for i in self.indices}
        self.max_persons = max_persons
        self.items: list[tuple[int, int, int]] = []  # (sequence, start, person or -1)
        for i in self.indices:
            p = self.prepared[i]
            starts = window_starts(p.joints.shape[1], frames, stride)
            if max_windows and len(starts) > max_windows:  # long sequences would outweigh short ones
                starts = [starts[int(round(k))] for k in np.linspace(0, len(starts) - 1, max_windows)]
            for st in starts:
                if persons == "each":
                    self.items += [(i, st, m) for m in np.flatnonzero(p.valid)]
                else:
                    self.items.append((i, st, -1))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i, start, person = self.items[k]
        p = self.prepared[i]
        x = window(p, start, self.frames, self.fpn)
        label = self.collection.samples[i].label
        out = {"label": torch.tensor(-1 if label is None else label), "seq": torch.tensor(i)}
        if person >= 0:
            out["x"] = torch.from_numpy(x[person])
            return out
        m = x.shape[0]
        pad = np.zeros((self.max_persons, *x.shape[1:]), np.float32)
        pad[:m] = x
        valid = np.zeros(self.max_persons, bool)
        valid[:m] = p.valid
        out["x"], out["valid"] = torch.from_numpy(pad), torch.from_numpy(valid)
        return out


def augment(x: torch.Tensor, u: torch.Tensor, max_angle_deg: float = 30.0, scale: tuple[float, float] = (0.9, 1.1)
            ) -> torch.Tensor:
    """Random turn about the vertical axis and size change per sample (``u`` ``[B, 2]`` uniform), on
    node features ``[B, ..., F]`` whose last axis holds (x, y, z) triples."""
    b = x.shape[0]
    ang = (u[:, 0] * 2 - 1) * np.deg2rad(max_angle_deg)
    s = scale[0] + u[:, 1] * (scale[1] - scale[0])
    c, sn = torch.cos(ang), torch.sin(ang)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    r = torch.stack([torch.stack([c, zero, sn], -1), torch.stack([zero, one, zero], -1),
                     torch.stack([-sn, zero, c], -1)], -2).to(x)  # [B, 3, 3]
    pts = x.reshape(b, -1, 3) @ r.transpose(1, 2)
    return (pts * s.to(x)[:, None, None]).reshape(x.shape)

