"""Joint layouts (NTU RGB+D 25, COCO 17, MediaPipe Pose 33), their bone graphs and conversions.

A layout names its joints, its bones (the graph a GCN runs on, as a PyG ``edge_index``) and its
body parts (what SkeletonMAE masks whole). "Left" is always the subject's own left.

Conversions map joints that correspond (a shoulder is a shoulder in every layout) and derive the
others where the anatomy allows (NTU's base of spine is the mid-point of the hips). A joint with no
counterpart gets the position of a stated fallback joint and a score of 0, so graphs stay complete
and the missing joints are known: :func:`convert` returns which joints were ``exact``, ``derived``
or ``missing``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Layout:
    """A skeleton layout: joint names (0-based order), bones as ``(joint, parent)`` pairs, body parts."""

    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    parts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    centre: tuple[int, ...] = (0,)  # joints whose mean normalisation moves to the origin (pelvis / mid-hip)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, name: str) -> int:
        return self.joint_names.index(name)

    def edge_index(self, self_loops: bool = False) -> Tensor:
        """Bones as a PyG ``edge_index`` ``[2, E]`` (long), both directions (GIN aggregates neighbours)."""
        pairs = [(a, b) for a, b in self.bones] + [(b, a) for a, b in self.bones]
        if self_loops:
            pairs += [(i, i) for i in range(self.num_joints)]
        return torch.tensor(sorted(pairs), dtype=torch.long).t().contiguous()

    def side_pairs(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(left hip, right hip), (left shoulder, right shoulder): what facing and scale are measured on."""
        i = self.index
        return (i("left_hip"), i("right_hip")), (i("left_shoulder"), i("right_shoulder"))

    def part_of(self) -> np.ndarray:
        """``[V]`` index of each joint's part (in ``parts`` order)."""
        out = np.full(self.num_joints, -1, np.int64)
        for p, joints in enumerate(self.parts.values()):
            out[list(joints)] = p
        return out

    def __post_init__(self) -> None:
        v = len(self.joint_names)
        if any(not (0 <= a < v and 0 <= b < v) for a, b in self.bones):
            raise ValueError(f"{self.name}: a bone names a joint outside 0..{v - 1}")
        covered = sorted(j for js in self.parts.values() for j in js)
        if self.parts and covered != list(range(v)):
            raise ValueError(f"{self.name}: parts must cover every joint exactly once")


def _pairs_1based(text: str) -> tuple[tuple[int, int], ...]:
    return tuple((int(a) - 1, int(b) - 1) for a, b in (p.split("-") for p in text.split()))


# NTU RGB+D 25 (Kinect v2). Bones as in pyskl's graph.py (1-based, joint-parent); centre is the base of spine.
NTU25 = Layout(
    name="ntu25",
    joint_names=("base_of_spine", "middle_of_spine", "neck", "head", "left_shoulder", "left_elbow", "left_wrist",
                 "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip", "left_knee",
                 "left_ankle", "left_foot", "right_hip", "right_knee", "right_ankle", "right_foot", "spine_shoulder",
                 "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb"),
    bones=_pairs_1based("1-2 2-21 3-21 4-3 5-21 6-5 7-6 8-7 9-21 10-9 11-10 12-11 13-1 14-13 15-14 16-15 "
                        "17-1 18-17 19-18 20-19 22-8 23-8 24-12 25-12"),
    parts={"head": (2, 3), "torso": (0, 1, 20), "left_arm": (4, 5, 6, 7, 21, 22),
           "right_arm": (8, 9, 10, 11, 23, 24), "left_leg": (12, 13, 14, 15), "right_leg": (16, 17, 18, 19)},
    centre=(0,),
)

# COCO 17 keypoints (MMPose / pyskl order). Bones as pyskl's 'coco' layout; no torso joints, so the
# shoulders belong to the arms and the hips to the legs.
COCO17 = Layout(
    name="coco17",
    joint_names=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                 "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                 "right_knee", "left_ankle", "right_ankle"),
    bones=((15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6), (5, 0),
           (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)),
    parts={"head": (0, 1, 2, 3, 4), "left_arm": (5, 7, 9), "right_arm": (6, 8, 10), "left_leg": (11, 13, 15),
           "right_leg": (12, 14, 16)},
    centre=(11, 12),  # no pelvis joint: the hips' mid-point
)

# MediaPipe Pose 33 landmarks; bones are mediapipe's POSE_CONNECTIONS (a test checks them against the wheel).
MEDIAPIPE33 = Layout(
    name="mediapipe33",
    joint_names=("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
                 "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
                 "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
                 "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
                 "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
                 "left_foot_index", "right_foot_index"),
    bones=((0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (13, 15),
           (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
           (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30), (29, 31),
           (30, 32), (27, 31), (28, 32)),
    parts={"head": tuple(range(11)), "left_arm": (11, 13, 15, 17, 19, 21), "right_arm": (12, 14, 16, 18, 20, 22),
           "left_leg": (23, 25, 27, 29, 31), "right_leg": (24, 26, 28, 30, 32)},
    centre=(23, 24),
)

LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (NTU25, COCO17, MEDIAPIPE33)}
BY_JOINT_COUNT: dict[int, Layout] = {lay.num_joints: lay for lay in LAYOUTS.values()}


def get_layout(name_or_layout: str | Layout) -> Layout:
    if isinstance(name_or_layout, Layout):
        return name_or_layout
    key = str(name_or_layout).lower().replace("-", "").replace("_", "")
    for lay in LAYOUTS.values():
        if lay.name == key:
            return lay
    raise ValueError(f"unknown layout {name_or_layout!r}; choose one of {sorted(LAYOUTS)}")


# --------------------------------------------------------------------------------------------- conversion

# target joint -> source joints averaged ("exact" when one), or ("missing", fallback source joint)
Rule = tuple[int, ...] | tuple[str, int]


def _rules(src: Layout, dst: Layout, table: Mapping[str, Sequence[str] | tuple[str, str]]) -> list[Rule]:
    out: list[Rule] = []
    for name in dst.joint_names:
        r = table[name]
        if isinstance(r, tuple) and len(r) == 2 and r[0] == "missing":
            out.append(("missing", src.index(r[1])))
        else:
            out.append(tuple(src.index(s) for s in r))
    return out


_SAME = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
         "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")

_MP_TO_NTU = {
    "base_of_spine": ("left_hip", "right_hip"),
    "middle_of_spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "neck": ("left_shoulder", "right_shoulder", "left_ear", "right_ear"),
    "head": ("left_ear", "right_ear"),
    "left_hand": ("left_pinky", "left_index"), "right_hand": ("right_pinky", "right_index"),
    "left_foot": ("left_foot_index",), "right_foot": ("right_foot_index",),
    "spine_shoulder": ("left_shoulder", "right_shoulder"),
    "left_hand_tip": ("left_index",), "left_thumb": ("left_thumb",),
    "right_hand_tip": ("right_index",), "right_thumb": ("right_thumb",),
    **{n: (n,) for n in _SAME},
}
_COCO_TO_NTU = {
    "base_of_spine": ("left_hip", "right_hip"),
    "middle_of_spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "neck": ("left_shoulder", "right_shoulder", "left_ear", "right_ear"),
    "head": ("left_ear", "right_ear"),
    "left_hand": ("missing", "left_wrist"), "right_hand": ("missing", "right_wrist"),
    "left_foot": ("missing", "left_ankle"), "right_foot": ("missing", "right_ankle"),
    "spine_shoulder": ("left_shoulder", "right_shoulder"),
    "left_hand_tip": ("missing", "left_wrist"), "left_thumb": ("missing", "left_wrist"),
    "right_hand_tip": ("missing", "right_wrist"), "right_thumb": ("missing", "right_wrist"),
    **{n: (n,) for n in _SAME},
}
_NTU_TO_COCO = {
    **{n: ("missing", "head") for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")},
    **{n: (n,) for n in _SAME},
}
_MP_TO_COCO = {n: (n,) for n in COCO17.joint_names}
_COCO_TO_MP = {n: ((n,) if n in COCO17.joint_names else ("missing", _nearest))
               for n, _nearest in zip(MEDIAPIPE33.joint_names,
                                      ["nose"] * 11 + [None] * 6 + ["left_wrist", "right_wrist"] * 3 +
                                      [None] * 6 + ["left_ankle", "right_ankle"] * 2)}

CONVERSIONS: dict[tuple[str, str], list[Rule]] = {
    ("mediapipe33", "ntu25"): _rules(MEDIAPIPE33, NTU25, _MP_TO_NTU),
    ("coco17", "ntu25"): _rules(COCO17, NTU25, _COCO_TO_NTU),
    ("ntu25", "coco17"): _rules(NTU25, COCO17, _NTU_TO_COCO),
    ("mediapipe33", "coco17"): _rules(MEDIAPIPE33, COCO17, _MP_TO_COCO),
    ("coco17", "mediapipe33"): _rules(COCO17, MEDIAPIPE33, _COCO_TO_MP),
}


@dataclass
class Converted:
    joints: np.ndarray  # [..., V_dst, C]
    scores: np.ndarray  # [..., V_dst]
    kind: list[str]     # per target joint: "exact", "derived" or "missing"

    @property
    def missing(self) -> list[int]:
        return [i for i, k in enumerate(self.kind) if k == "missing"]


def convert(joints: np.ndarray, src: str | Layout, dst: str | Layout, scores: np.ndarray | None = None) -> Converted:
    """Joints ``[..., V_src, C]`` of layout ``src`` -> ``[..., V_dst, C]`` of ``dst``.

    Derived joints are means of their sources and score the lowest source score; missing joints sit
    on their fallback joint with score 0. Going through a conversion that is not defined (e.g.
    NTU-25 -> MediaPipe-33) raises ``ValueError``; compose two instead.
    """
    src, dst = get_layout(src), get_layout(dst)
    joints = np.asarray(joints, np.float32)
    if joints.shape[-2] != src.num_joints:
        raise ValueError(f"{src.name} has {src.num_joints} joints, got an array with {joints.shape[-2]}")
    if scores is None:
        scores = np.ones(joints.shape[:-1], np.float32)
    if src.name == dst.name:
        return Converted(joints.copy(), np.asarray(scores, np.float32).copy(), ["exact"] * src.num_joints)
    key = (src.name, dst.name)
    if key not in CONVERSIONS:
        raise ValueError(f"no conversion {src.name} -> {dst.name}; defined: {sorted(CONVERSIONS)}")
    out_j, out_s, kind = [], [], []
    for rule in CONVERSIONS[key]:
        if rule and rule[0] == "missing":
            out_j.append(joints[..., rule[1], :])
            out_s.append(np.zeros(joints.shape[:-2], np.float32))
            kind.append("missing")
        else:
            idx = list(rule)
            out_j.append(joints[..., idx, :].mean(axis=-2))
            out_s.append(scores[..., idx].min(axis=-1))
            kind.append("exact" if len(idx) == 1 else "derived")
    return Converted(np.stack(out_j, axis=-2), np.stack(out_s, axis=-1).astype(np.float32), kind)
