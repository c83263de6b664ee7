"""A skeleton sequence in memory, its checks, normalisation, resampling and windows.

Every reader returns a :class:`Skeleton`: joints ``[M, T, V, C]`` (persons, frames, joints, 2 or 3
coordinates) in one of the layouts of :mod:`.layouts`, optional per-joint scores ``[M, T, V]`` and
the frame rate. 3-D coordinates are metres with y up (mocap and Kinect conventions); readers of
other conventions convert on reading and say so in ``notes``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from maskworks.core.io import InputError

from .layouts import BY_JOINT_COUNT, Layout, convert, get_layout

MAX_FRAMES = 20_000   # 11 minutes at 30 fps: longer sequences are refused before decoding
MAX_PERSONS = 4       # more bodies than this in one sequence is not a skeleton file we understand
MAX_COORD = 1e5       # |coordinate| above this is garbage (pixels of an 8K frame are < 1e4)


@dataclass
class Skeleton:
    """Joints ``[M, T, V, C]`` float32 in ``layout``; ``scores`` ``[M, T, V]`` in [0, 1] (1 when unknown)."""

    joints: np.ndarray
    layout: Layout
    scores: np.ndarray | None = None
    fps: float | None = None
    source: str = "<array>"
    label: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_persons(self) -> int:
        return self.joints.shape[0]

    @property
    def num_frames(self) -> int:
        return self.joints.shape[1]

    @property
    def dims(self) -> int:
        return self.joints.shape[3]

    def score_array(self) -> np.ndarray:
        return self.scores if self.scores is not None else np.ones(self.joints.shape[:3], np.float32)

    def to_layout(self, layout: str | Layout) -> "Skeleton":
        """The same sequence in another layout (see :func:`.layouts.convert`); notes say what is missing."""
        dst = get_layout(layout)
        if dst.name == self.layout.name:
            return self
        c = convert(self.joints, self.layout, dst, self.score_array())
        notes = list(self.notes)
        if c.missing:
            names = ", ".join(dst.joint_names[i] for i in c.missing)
            notes.append(f"{self.layout.name} has no {names}: placed on neighbouring joints with score 0")
        return replace(self, joints=c.joints, scores=c.scores, layout=dst, notes=notes)


def layout_for(num_joints: int, source: object) -> Layout:
    if num_joints not in BY_JOINT_COUNT:
        raise InputError(source, f"{num_joints} joints per frame, a layout maskworks does not know",
                         "give NTU RGB+D 25, COCO 17 or MediaPipe 33 joints per frame")
    return BY_JOINT_COUNT[num_joints]


def check_shape(shape: tuple[int, ...], source: object) -> tuple[int, int, int, int]:
    """``[T, V, C]`` or ``[M, T, V, C]`` -> (M, T, V, C), refusing what no reader should decode."""
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4:
        raise InputError(source, f"an array of shape {list(shape)}",
                         "give joints as [frames, joints, coords] or [persons, frames, joints, coords]")
    m, t, v, c = (int(s) for s in shape)
    if t == 0:
        raise InputError(source, "zero frames", "give a sequence with at least one frame")
    if t > MAX_FRAMES:
        raise InputError(source, f"{t:,} frames, more than the cap of {MAX_FRAMES:,}",
                         "cut the sequence into shorter pieces (e.g. one action each)")
    if not 1 <= m <= MAX_PERSONS:
        raise InputError(source, f"{m} persons", f"give 1 to {MAX_PERSONS} persons per sequence")
    if c not in (2, 3):
        raise InputError(source, f"{c} values per joint", "give 2 (x, y) or 3 (x, y, z) coordinates per joint")
    layout_for(v, source)
    return m, t, v, c


def make_skeleton(joints: np.ndarray, source: object, scores: np.ndarray | None = None,
                  layout: Layout | str | None = None, **kw) -> Skeleton:
    """Check and wrap an array ``[T, V, C]`` / ``[M, T, V, C]``: shape, caps, finite values."""
    joints = np.asarray(joints)
    m, t, v, c = check_shape(joints.shape, source)
    if joints.dtype.kind not in "fiu":
        raise InputError(source, f"joint values of type {joints.dtype}", "store joints as float32 numbers")
    joints = joints.reshape(m, t, v, c).astype(np.float32, copy=False)
    bad = ~np.isfinite(joints)
    if bad.any():
        f = int(np.argwhere(bad.any(axis=(0, 2, 3)))[0, 0])
        raise InputError(source, f"{int(bad.sum()):,} NaN or infinite coordinates (first in frame {f})",
                         "fill or drop the frames with missing joints (or give a score of 0 with any finite value)")
    if np.abs(joints).max() > MAX_COORD:
        raise InputError(source, f"coordinates up to {float(np.abs(joints).max()):.3g}, not joint positions",
                         "give positions in metres (3-D) or pixels (2-D)")
    if scores is not None:
        scores = np.asarray(scores, np.float32).reshape(m, t, v)
        if not np.isfinite(scores).all():
            raise InputError(source, "NaN scores", "give joint scores in [0, 1]")
        scores = np.clip(scores, 0.0, 1.0)
    lay = get_layout(layout) if layout is not None else layout_for(v, source)
    if lay.num_joints != v:
        raise InputError(source, f"{v} joints, but the {lay.name} layout has {lay.num_joints}",
                         f"give {lay.num_joints} joints per frame")
    return Skeleton(joints, lay, scores, source=str(source), **kw)


# ------------------------------------------------------------------------------------------ normalisation

def centre_points(joints: np.ndarray, layout: Layout) -> np.ndarray:
    """``[..., C]`` the layout's centre (pelvis or mid-hip) of every frame."""
    return joints[..., list(layout.centre), :].mean(axis=-2)


def torso_length(joints: np.ndarray, layout: Layout) -> float:
    """Mean distance from the centre to the shoulders' mid-point over frames of the first person (the
    unit :func:`normalize` scales to; joints that correspond in every layout, unlike NTU's spine joints)."""
    (_, _), (ls, rs) = layout.side_pairs()
    p = joints[0]
    d = np.linalg.norm((p[:, ls] + p[:, rs]) / 2 - centre_points(p, layout), axis=-1)
    d = d[d > 1e-6]
    return float(d.mean()) if len(d) else 0.0


def heading(joints: np.ndarray, layout: Layout, frame: int = 0) -> float | None:
    """Angle about y (radians) of the subject's left-pointing hip + shoulder vector at ``frame`` (first
    person), or None when it is degenerate."""
    (lh, rh), (ls, rs) = layout.side_pairs()
    p = joints[0, frame]
    v = (p[lh] - p[rh]) + (p[ls] - p[rs])
    if math.hypot(v[0], v[2]) < 1e-6:
        return None
    return math.atan2(float(v[2]), float(v[0]))


def rotate_y(joints: np.ndarray, angle: float) -> np.ndarray:
    """Rotate 3-D points about the y axis so that a vector at ``angle`` (atan2(z, x)) lands on +x."""
    c, s = math.cos(angle), math.sin(angle)
    r = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], np.float32)
    return joints @ r.T


@dataclass
class Normalisation:
    """What :func:`normalize` did, so it can be undone for display: ``x = rotate_y(n * scale, -angle) + origin``."""

    origin: np.ndarray
    angle: float
    scale: float


def normalize(joints: np.ndarray, layout: Layout, *, centre: bool = True, facing: bool = True, scale: bool = True,
              frame: int = 0) -> tuple[np.ndarray, Normalisation]:
    """Centre joint of ``frame`` at the origin, subject's left along +x (facing +z, y up), torso length 1.

    ``joints`` is ``[M, T, V, 3]``; one transform for all persons and frames (first person's
    reference), so motion and the persons' relative positions are kept.
    """
    out = np.asarray(joints, np.float32).copy()
    origin = centre_points(out[0, frame], layout) if centre else np.zeros(out.shape[-1], np.float32)
    out -= origin
    angle = 0.0
    if facing and out.shape[-1] == 3:
        a = heading(out, layout, frame)
        if a is not None:
            angle = a
            out = rotate_y(out, angle)
    s = 1.0
    if scale:
        t = torso_length(out, layout)
        if t > 1e-6:
            s = t
            out /= s
    return out.astype(np.float32), Normalisation(np.asarray(origin, np.float32), angle, s)


def denormalize(joints: np.ndarray, norm: Normalisation) -> np.ndarray:
    out = np.asarray(joints, np.float32) * norm.scale
    if out.shape[-1] == 3 and norm.angle:
        out = rotate_y(out, -norm.angle)
    return out + norm.origin


# ---------------------------------------------------------------------------------------- time

def resample(joints: np.ndarray, fps: float, target_fps: float, scores: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Linear interpolation in time from ``fps`` to ``target_fps`` (``joints`` ``[M, T, V, C]``)."""
    t = joints.shape[1]
    if not fps or abs(fps - target_fps) < 1e-3 or t < 2:
        return joints, scores
    n = max(1, int(round((t - 1) * target_fps / fps)) + 1)
    src = np.arange(n) * (fps / target_fps)
    lo = np.clip(np.floor(src).astype(np.int64), 0, t - 1)
    hi = np.clip(lo + 1, 0, t - 1)
    w = (src - lo).astype(np.float32)[None, :, None, None]
    out = joints[:, lo] * (1 - w) + joints[:, hi] * w
    if scores is not None:
        scores = np.minimum(scores[:, lo], scores[:, hi])
    return out.astype(np.float32), scores


def window_starts(num_frames: int, length: int, stride: int) -> list[int]:
    """Starts of windows of ``length`` frames every ``stride`` frames, the last one flush with the end
    (a sequence shorter than a window gives one window, padded by :func:`take_window`)."""
    if num_frames <= length:
        return [0]
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] != num_frames - length:
        starts.append(num_frames - length)
    return starts


def take_window(joints: np.ndarray, start: int, length: int) -> np.ndarray:
    """``joints[:, start:start+length]``, the last frame held when the sequence ends early."""
    idx = np.clip(np.arange(start, start + length), 0, joints.shape[1] - 1)
    return joints[:, idx]
