"""BVH motion capture: parse the hierarchy, run forward kinematics, map the rig to NTU-25.

Forward kinematics follows the BVH convention: a joint's local transform is a translation by its
``OFFSET`` (plus position channels) then the rotation channels composed in the order they are
declared (``Zrotation Yrotation Xrotation`` -> ``Rz @ Ry @ Rx``, intrinsic), degrees. World
transforms chain from the root. End sites become joints named ``<parent>_end``.

Rigs are mapped to the NTU-25 layout by bone names (:data:`NTU_NAMES`: Reallusion CC_Base,
the CMU / cgspeed and Mixamo rigs); the bones chosen for CC_Base are the ones the shipped CMU
sequences were derived from (a test reproduces them from a real CC_Base BVH).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskworks.core.io import InputError

from .layouts import NTU25
from .sequence import MAX_FRAMES, Skeleton, make_skeleton

MAX_BVH_JOINTS = 1024
MAX_BVH_FRAMES = 8 * MAX_FRAMES  # BVH runs at up to 240 fps; resampled to 30 fps afterwards
_AXES = {"X": 0, "Y": 1, "Z": 2}


@dataclass
class BVHMotion:
    """Joint names, parents (-1 for the root), world positions ``[T, J, 3]`` in the file's units."""

    names: list[str]
    parents: list[int]
    positions: np.ndarray
    frame_time: float

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time if self.frame_time > 0 else 0.0


def axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    """``[T, 3, 3]`` right-handed rotations about ``axis`` by ``degrees`` ``[T]``."""
    a = np.deg2rad(np.asarray(degrees, np.float64))
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    if axis == "X":
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == "Y":
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def parse_bvh(text: str, source: object = "<bvh>") -> tuple[list[str], list[int], np.ndarray, list[list[str]],
                                                            np.ndarray, float]:
    """-> names, parents, offsets ``[J, 3]``, channels per joint, motion ``[T, C]``, frame time."""
    tokens = text.split()
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise InputError(source, "ends inside the hierarchy", "give a complete BVH file")
        pos += 1
        return tokens[pos - 1]

    def number(what: str) -> float:
        t = take()
        try:
            v = float(t)
        except ValueError:
            raise InputError(source, f"expected {what}, found {t[:30]!r}", "give a valid BVH file") from None
        if not math.isfinite(v):
            raise InputError(source, f"{what} is {t}", "give a valid BVH file")
        return v

    if not tokens or tokens[0] != "HIERARCHY":
        raise InputError(source, "does not start with HIERARCHY", "give a BVH motion-capture file")
    pos = 1
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []
    pending: tuple[str, int] | None = None
    while True:
        t = take()
        if t in ("ROOT", "JOINT"):
            if t == "ROOT" and names:
                raise InputError(source, "more than one ROOT", "give a BVH with one skeleton")
            pending = (take(), stack[-1] if stack else -1)
        elif t == "End":
            take()  # "Site"
            pending = (f"{names[stack[-1]]}_end" if stack else "end", stack[-1] if stack else -1)
        elif t == "{":
            if pending is None:
                raise InputError(source, "a '{' without a joint", "give a valid BVH file")
            if len(names) >= MAX_BVH_JOINTS:
                raise InputError(source, f"more than {MAX_BVH_JOINTS} joints", "give a BVH of one body")
            names.append(pending[0])
            parents.append(pending[1])
            offsets.append([0.0, 0.0, 0.0])
            channels.append([])
            stack.append(len(names) - 1)
            pending = None
        elif t == "}":
            if not stack:
                raise InputError(source, "unbalanced braces", "give a valid BVH file")
            stack.pop()
        elif t in ("OFFSET", "CHANNELS") and not stack:
            raise InputError(source, f"{t} outside a joint's braces", "give a valid BVH file")
        elif t == "OFFSET":
            offsets[stack[-1]] = [number("an offset") for _ in range(3)]
        elif t == "CHANNELS":
            n = int(number("a channel count"))
            if not 0 <= n <= 6:
                raise InputError(source, f"a joint with {n} channels (BVH has at most 6)", "give a valid BVH file")
            chans = [take() for _ in range(n)]
            if any(c[1:] not in ("position", "rotation") or c[0] not in _AXES for c in chans):
                raise InputError(source, f"unknown channels {chans}", "use X/Y/Z position and rotation channels")
            channels[stack[-1]] = chans
        elif t == "MOTION":
            if stack:
                raise InputError(source, "MOTION inside an open joint", "give a valid BVH file")
            break
        else:
            raise InputError(source, f"unexpected {t[:30]!r} in the hierarchy", "give a valid BVH file")
    if not names:
        raise InputError(source, "no joints", "give a BVH with a skeleton")
    if take() != "Frames:":
        raise InputError(source, "no 'Frames:' line after MOTION", "give a valid BVH file")
    frames = int(number("the frame count"))
    if frames <= 0:
        raise InputError(source, "zero frames", "give a BVH with motion")
    if frames > MAX_BVH_FRAMES:
        raise InputError(source, f"{frames:,} frames, over the cap of {MAX_BVH_FRAMES:,}",
                         "cut the motion into shorter clips")
    if take() != "Frame" or take() != "Time:":
        raise InputError(source, "no 'Frame Time:' line", "give a valid BVH file")
    frame_time = number("the frame time")
    width = sum(len(c) for c in channels)
    values = tokens[pos:pos + frames * width]
    if len(values) < frames * width:
        raise InputError(source, f"{len(values) // max(width, 1)} complete frames, the header says {frames}",
                         "re-export the file (it may be truncated)")
    try:
        motion = np.array(values, dtype=np.float64).reshape(frames, width)
    except ValueError:
        raise InputError(source, "a motion value is not a number", "re-export the file") from None
    if not np.isfinite(motion).all():
        raise InputError(source, "NaN or infinite motion values", "re-export the file")
    return names, parents, np.array(offsets, np.float64), channels, motion, frame_time


def forward_kinematics(parents: list[int], offsets: np.ndarray, channels: list[list[str]],
                       motion: np.ndarray) -> np.ndarray:
    """World positions ``[T, J, 3]`` (parents are listed before their children, as in any BVH)."""
    t = motion.shape[0]
    j = len(parents)
    rot = np.zeros((j, t, 3, 3))
    pos = np.zeros((j, t, 3))
    col = 0
    for k in range(j):
        local_r = np.broadcast_to(np.eye(3), (t, 3, 3)).copy()
        local_t = np.broadcast_to(offsets[k], (t, 3)).copy()
        for ch in channels[k]:
            v = motion[:, col]
            col += 1
            if ch.endswith("position"):
                local_t[:, _AXES[ch[0]]] += v
            else:
                local_r = local_r @ axis_rotation(ch[0], v)
        p = parents[k]
        if p < 0:
            rot[k], pos[k] = local_r, local_t
        else:
            rot[k] = rot[p] @ local_r
            pos[k] = pos[p] + np.einsum("tij,tj->ti", rot[p], local_t)
    return pos.transpose(1, 0, 2)


def read_bvh(path: str | Path) -> BVHMotion:
    """Parse and run forward kinematics; positions are in the file's units (see :func:`bvh_units`)."""
    from .io import _check_file

    path = Path(path)
    _check_file(path, ".bvh")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InputError(path, "not text", "give a BVH text file") from None
    names, parents, offsets, channels, motion, frame_time = parse_bvh(text, path)
    return BVHMotion(names, parents, forward_kinematics(parents, offsets, channels, motion).astype(np.float32),
                     frame_time)


# ------------------------------------------------------------------------------------- rig -> NTU-25

def _norm(name: str) -> str:
    name = name.split(":")[-1]  # mixamorig:Hips
    name = re.sub(r"^(CC_Base_|RL_|Bip0?1_?|mixamorig_?)", "", name, flags=re.I)
    return re.sub(r"[^a-z0-9]", "", name.lower())


# NTU joint -> candidate bone names (normalised by _norm), first found wins. CC_Base is the
# Reallusion rig of the CMU conversions in the shipped data; cgspeed's CMU rig; Mixamo.
NTU_NAMES: dict[str, list[str]] = {
    "base_of_spine": ["hip", "hips", "pelvis"],
    "middle_of_spine": ["spine01", "spine"],
    "neck": ["necktwist01", "neck"],
    "head": ["head"],
    "left_shoulder": ["lupperarm", "leftarm"],
    "left_elbow": ["lforearm", "leftforearm"],
    "left_wrist": ["lhand", "lefthand"],
    "left_hand": ["lmid1", "lefthandmiddle1", "leftfingerbase"],
    "right_shoulder": ["rupperarm", "rightarm"],
    "right_elbow": ["rforearm", "rightforearm"],
    "right_wrist": ["rhand", "righthand"],
    "right_hand": ["rmid1", "righthandmiddle1", "rightfingerbase"],
    "left_hip": ["lthigh", "leftupleg"],
    "left_knee": ["lcalf", "leftleg"],
    "left_ankle": ["lfoot", "leftfoot"],
    "left_foot": ["ltoebase", "lefttoebase"],
    "right_hip": ["rthigh", "rightupleg"],
    "right_knee": ["rcalf", "rightleg"],
    "right_ankle": ["rfoot", "rightfoot"],
    "right_foot": ["rtoebase", "righttoebase"],
    "spine_shoulder": ["spine02", "spine2", "spine1"],
    "left_hand_tip": ["lmid3", "lefthandmiddle3", "lefthandindex1", "lfingerbaseend"],
    "left_thumb": ["lthumb3", "lefthandthumb3", "lthumb"],
    "right_hand_tip": ["rmid3", "righthandmiddle3", "righthandindex1", "rfingerbaseend"],
    "right_thumb": ["rthumb3", "righthandthumb3", "rthumb"],
}


def ntu_joint_indices(names: list[str], source: object = "<bvh>") -> list[int]:
    """For each NTU-25 joint, the index of the rig bone that plays it (by name)."""
    norm = {}
    for i, n in enumerate(names):
        norm.setdefault(_norm(n), i)
    out, missing = [], []
    for joint in NTU25.joint_names:
        idx = next((norm[c] for c in NTU_NAMES[joint] if c in norm), None)
        if idx is None:
            missing.append(joint)
        out.append(-1 if idx is None else idx)
    if missing:
        raise InputError(source, f"no bones found for NTU joints {', '.join(missing)} (rig bones: "
                         f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''})",
                         "use a CC_Base (Reallusion), CMU/cgspeed or Mixamo rig, or convert the motion to "
                         "joints [T, 25, 3] in .npy")
    return out


def bvh_units(positions: np.ndarray) -> tuple[float, str]:
    """(factor to metres, unit name) from the rig's height in the first frame."""
    height = float(np.ptp(positions[0], axis=0).max())
    if height > 300:
        return 0.001, "mm"
    if height > 20:
        return 0.01, "cm"
    if height > 5:
        return 0.0254, "inches"
    return 1.0, "m"


def read_bvh_skeleton(path: str | Path, up: str = "y") -> Skeleton:
    """A BVH as an NTU-25 :class:`Skeleton` in metres, y up (a z-up rig is turned y-up)."""
    path = Path(path)
    motion = read_bvh(path)
    idx = ntu_joint_indices(motion.names, path)
    factor, unit = bvh_units(motion.positions)
    joints = motion.positions[:, idx] * factor
    notes = [f"BVH {len(motion.names)} bones -> NTU-25, {unit} -> m"]
    extent = np.ptp(joints[0], axis=0)
    if up == "y" and extent[2] > 1.5 * extent[1]:  # taller along z than y: a z-up export
        joints = joints[..., [0, 2, 1]] * np.array([1, 1, -1], np.float32)
        notes.append("z-up rig turned y-up")
    skel = make_skeleton(joints, path, fps=motion.fps or None)
    skel.notes += notes
    return skel
