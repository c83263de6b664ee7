"""Skeleton files: pyskl / mmaction2 ``.pkl``, NTU RGB+D ``.skeleton`` text, ``.npy`` / ``.npz``, BVH.

Every reader checks sizes before decoding (file bytes, frame counts, array headers) and raises
:class:`maskworks.core.io.InputError` naming the file, the problem and the fix. A ``.pkl`` is read
by :class:`NumpyOnlyUnpickler`, which builds numpy arrays and plain Python containers and refuses
any other object (a pickle can otherwise run arbitrary code when loaded).
"""
from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskworks.core.io import InputError

from .sequence import MAX_FRAMES, MAX_PERSONS, Skeleton, check_shape, make_skeleton

SUFFIXES = (".pkl", ".skeleton", ".npy", ".npz", ".bvh")
MAX_FILE_BYTES = {".pkl": 1 << 30, ".skeleton": 200 << 20, ".npy": 1 << 30, ".npz": 1 << 30, ".bvh": 200 << 20}
MAX_ANNOTATIONS = 200_000
NPZ_KEYS = ("keypoint", "joints", "skeleton", "poses", "positions", "arr_0")


def _check_file(path: Path, suffix: str) -> None:
    if not path.is_file():
        raise InputError(path, "no such file", "check the path")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "the file is empty", "give a non-empty skeleton file")
    cap = MAX_FILE_BYTES[suffix]
    if size > cap:
        raise InputError(path, f"{size / 2**20:,.0f} MiB, over the {cap / 2**20:,.0f} MiB cap for {suffix} files",
                         "split it into smaller files")


# --------------------------------------------------------------------------------------------- pickle

class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and scalars and builtin containers only; anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol-2 pickles carry array bytes as latin-1 text
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def load_pickle_safely(path: str | Path) -> object:
    """A pickle of numpy arrays and containers (pyskl, mmaction2), without running any other code."""
    path = Path(path)
    _check_file(path, ".pkl")
    try:
        with open(path, "rb") as f:
            return NumpyOnlyUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise InputError(path, f"not a plain pickle of arrays ({e})",
                         "save annotations as dicts/lists of numpy arrays (pyskl format), or as .npy/.npz") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, OverflowError) as e:
        raise InputError(path, f"a broken pickle ({type(e).__name__}: {e})", "re-export the file") from None


@dataclass
class PysklFile:
    """A pyskl / mmaction2 skeleton annotation file: samples, named splits, optional label names."""

    samples: list[Skeleton]
    names: list[str]  # frame_dir of each sample
    split: dict[str, list[str]] = field(default_factory=dict)
    label_names: list[str] | None = None


def read_pyskl(path: str | Path, max_samples: int | None = None) -> PysklFile:
    """``{'split': {name: [frame_dir, ...]}, 'annotations': [{'frame_dir', 'label', 'keypoint' [M, T, V, C],
    'keypoint_score' [M, T, V], 'total_frames', ...}]}`` (or a bare list of annotations)."""
    path = Path(path)
    obj = load_pickle_safely(path)
    if isinstance(obj, list):
        obj = {"annotations": obj}
    if not isinstance(obj, dict) or not isinstance(obj.get("annotations"), list):
        raise InputError(path, "no 'annotations' list", "give a pyskl file: {'split': ..., 'annotations': [...]}")
    anns = obj["annotations"]
    if not anns:
        raise InputError(path, "no annotations", "give a file with at least one annotated sequence")
    if len(anns) > MAX_ANNOTATIONS:
        raise InputError(path, f"{len(anns):,} annotations, over the cap of {MAX_ANNOTATIONS:,}", "split the file")
    split = obj.get("split") or {}
    if not isinstance(split, dict) or not all(isinstance(v, (list, tuple)) for v in split.values()):
        raise InputError(path, "'split' is not a mapping of names to lists", "give {'train': [...], 'val': [...]}")
    label_names = obj.get("label_names")
    samples, names = [], []
    for i, a in enumerate(anns[:max_samples] if max_samples else anns):
        where = f"{path} [annotation {i}]"
        if not isinstance(a, dict) or "keypoint" not in a:
            raise InputError(where, "no 'keypoint' array", "each annotation needs keypoint [M, T, V, C]")
        kp = a["keypoint"]
        if not isinstance(kp, np.ndarray):
            raise InputError(where, f"'keypoint' is a {type(kp).__name__}", "store keypoint as a numpy array")
        score = a.get("keypoint_score")
        if score is not None and (not isinstance(score, np.ndarray) or score.shape != kp.shape[:-1]):
            raise InputError(where, f"keypoint_score {getattr(score, 'shape', None)} does not match keypoint "
                             f"{kp.shape}", "give keypoint_score as [M, T, V]")
        label = a.get("label")
        skel = make_skeleton(kp, where, scores=score, label=None if label is None else int(label))
        skel.fps = float(a["fps"]) if isinstance(a.get("fps"), (int, float)) else None
        if skel.dims == 2:
            skel.notes.append("2-D keypoints (pixels)")
        samples.append(skel)
        names.append(str(a.get("frame_dir", i)))
    return PysklFile(samples, names, {k: [str(x) for x in v] for k, v in split.items()},
                     [str(x) for x in label_names] if isinstance(label_names, (list, tuple)) else None)


# ---------------------------------------------------------------------------------------- NTU .skeleton

def read_ntu_skeleton(path: str | Path, max_bodies: int = 2) -> Skeleton:
    """NTU RGB+D ``.skeleton`` text (Kinect v2 camera space, metres, y up). Bodies are followed by
    their tracking id; the ``max_bodies`` seen in most frames are kept (most motion breaks ties).
    A joint's score is its tracking state / 2 (2 tracked, 1 inferred, 0 not tracked)."""
    path = Path(path)
    _check_file(path, ".skeleton")
    try:
        lines = path.read_text(encoding="ascii").split("\n")
    except UnicodeDecodeError:
        raise InputError(path, "not text", "give an NTU RGB+D .skeleton text file") from None
    pos = 0

    def line(what: str) -> list[str]:
        nonlocal pos
        while pos < len(lines) and not lines[pos].strip():
            pos += 1
        if pos >= len(lines):
            raise InputError(path, f"ends early (expected {what} at line {pos + 1})", "re-export the file")
        pos += 1
        return lines[pos - 1].split()

    def count(what: str, cap: int) -> int:
        toks = line(what)
        try:
            n = int(toks[0])
        except (ValueError, IndexError):
            raise InputError(path, f"line {pos}: expected {what}, got {' '.join(toks)[:40]!r}",
                             "give an NTU RGB+D .skeleton text file") from None
        if not 0 <= n <= cap:
            raise InputError(path, f"line {pos}: {what} {n} is out of range (0..{cap:,})",
                             "give an NTU RGB+D .skeleton file (25 joints per body)")
        return n

    frames = count("the frame count", MAX_FRAMES)
    if frames == 0:
        raise InputError(path, "zero frames", "give a sequence with at least one frame")
    bodies: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for f in range(frames):
        for _ in range(count(f"the body count of frame {f}", 16)):
            info = line("a body header")
            n = count("the joint count", 25)
            if n != 25:
                raise InputError(path, f"line {pos}: {n} joints per body, NTU has 25", "give an NTU RGB+D .skeleton file")
            try:
                vals = np.array([[float(x) for x in line("a joint")[:12]] for _ in range(25)], np.float64)
            except ValueError:
                raise InputError(path, f"line {pos}: a joint line is not 12 numbers", "re-export the file") from None
            if vals.shape != (25, 12):
                raise InputError(path, f"line {pos}: a joint line is not 12 numbers", "re-export the file")
            bodies.setdefault(info[0] if info else "?", {})[f] = (vals[:, :3], vals[:, 11] / 2.0)
    if not bodies:
        raise InputError(path, "no body in any frame", "give a sequence in which a person was tracked")
    if len(bodies) > 64:
        raise InputError(path, f"{len(bodies)} tracked bodies", "give a sequence of a few persons")

    def rank(item):
        per = item[1]
        xyz = np.stack([v[0] for v in per.values()])
        return (len(per), float(xyz.std(axis=0).sum()))

    chosen = sorted(bodies.items(), key=rank, reverse=True)[:max(1, min(max_bodies, MAX_PERSONS))]
    joints = np.zeros((len(chosen), frames, 25, 3), np.float32)
    scores = np.zeros((len(chosen), frames, 25), np.float32)
    for m, (_, per) in enumerate(chosen):
        for f, (xyz, state) in per.items():
            joints[m, f], scores[m, f] = xyz, state
    skel = make_skeleton(joints, path, scores=scores, fps=30.0)
    if len(bodies) > len(chosen):
        skel.notes.append(f"{len(bodies)} tracked bodies: kept the {len(chosen)} seen in most frames")
    return skel


# -------------------------------------------------------------------------------------------- numpy

def _npy_header(f, source: object) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, EOFError, OSError) as e:
        raise InputError(source, f"not a .npy array ({e})", "save joints with numpy.save") from None
    if dtype.hasobject:
        raise InputError(source, "an array of Python objects", "save joints as float32 numbers")
    return tuple(shape), dtype


def _load_checked(f, source: object, scores: bool = False) -> np.ndarray:
    shape, dtype = _npy_header(f, source)
    if scores:
        if len(shape) not in (2, 3) or np.prod(shape) > MAX_FRAMES * MAX_PERSONS * 33:
            raise InputError(source, f"scores of shape {list(shape)}", "give scores as [T, V] or [M, T, V]")
    else:
        check_shape(shape, source)
    f.seek(0)
    try:
        return np.load(f, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise InputError(source, f"a truncated or broken array ({e})", "re-export the file") from None


def read_npy(path: str | Path) -> Skeleton:
    """``[T, V, C]`` or ``[M, T, V, C]``; the layout from V (25 NTU, 17 COCO, 33 MediaPipe)."""
    path = Path(path)
    _check_file(path, ".npy")
    with open(path, "rb") as f:
        arr = _load_checked(f, path)
    return make_skeleton(arr, path)


def read_npz(path: str | Path) -> Skeleton:
    """An ``.npz`` with the joints under ``keypoint`` (or joints / skeleton / poses / positions / arr_0, or
    its only array), optional ``keypoint_score`` ``[M, T, V]`` and ``fps``."""
    path = Path(path)
    _check_file(path, ".npz")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError(path, "not an .npz (zip) archive", "save joints with numpy.savez") from None
    with zf:
        names = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        if sum(i.file_size for i in zf.infolist()) > MAX_FILE_BYTES[".npz"]:
            raise InputError(path, "more than 1 GiB uncompressed", "split it into smaller files")
        key = next((k for k in NPZ_KEYS if k in names), next(iter(names)) if len(names) == 1 else None)
        if key is None:
            raise InputError(path, f"no joints array among {sorted(names) or 'no arrays'}",
                             f"store the joints under one of: {', '.join(NPZ_KEYS)}")

        def raw_bytes(k: str) -> bytes:
            try:
                with zf.open(names[k]) as raw:
                    return raw.read()
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
                raise InputError(path, f"member {k} is damaged ({type(e).__name__}: {e})", "re-export the file") from None

        def member(k: str, scores: bool = False) -> np.ndarray:
            return _load_checked(io.BytesIO(raw_bytes(k)), f"{path} [{k}]", scores)

        joints = member(key)
        scores = member("keypoint_score", scores=True) if "keypoint_score" in names else None
        fps = None
        if "fps" in names:
            try:
                value = np.load(io.BytesIO(raw_bytes("fps")), allow_pickle=False)
            except (ValueError, EOFError, OSError):
                raise InputError(path, "the fps entry is not a number", "store fps as one number") from None
            ok = value.size == 1 and value.dtype.kind in "fiu" and np.isfinite(value).all() and 0 < float(value) < 1000
            fps = float(value) if ok else None
    if scores is not None and scores.shape != joints.shape[:-1]:
        raise InputError(path, f"keypoint_score {list(scores.shape)} does not match the joints {list(joints.shape)}",
                         "give keypoint_score as [M, T, V] (or [T, V]) matching the joints")
    skel = make_skeleton(joints, path, scores=scores)
    skel.fps = fps
    return skel


# ------------------------------------------------------------------------------------------ dispatch

def read_skeleton(path: str | Path, index: int = 0) -> Skeleton:
    """One skeleton sequence from any supported file (``index`` picks a sample of a ``.pkl``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        pk = read_pyskl(path, max_samples=index + 1)
        if index >= len(pk.samples):
            raise InputError(path, f"no sample {index} (the file has {len(pk.samples)})", "pick an existing sample")
        return pk.samples[index]
    if suffix == ".skeleton":
        return read_ntu_skeleton(path)
    if suffix == ".npy":
        return read_npy(path)
    if suffix == ".npz":
        return read_npz(path)
    if suffix == ".bvh":
        from .bvh import read_bvh_skeleton

        return read_bvh_skeleton(path)
    raise InputError(path, f"unsupported extension {suffix or '(none)'!r}",
                     f"give one of {', '.join(SUFFIXES)} (or a video for pose extraction)")
