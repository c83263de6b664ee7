"""Point-cloud file I/O: one entry point, ``read_points``, for every format we ship or meet.

Formats: ``.pcd`` (ascii / binary / binary_compressed), ``.ply``, ``.npy`` / ``.npz``,
``.xyz`` / ``.txt`` / ``.pts`` (whitespace or comma separated), KITTI ``.bin``
(float32 x, y, z, reflectance in [0, 1]) and nuScenes ``.pcd.bin`` (float32 x, y, z,
intensity 0-255, ring index). Coordinates are returned as stored: metres for LiDAR and PCL
scans; KITTI/nuScenes LiDAR frame is x forward, y left, z up with the origin at the sensor.
Every failure is a :class:`InputError` (a ``ValueError``) naming the file and a fix.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
from maskworks.core.io import InputError

from .cloud import DEFAULT_MAX_POINTS, NanPolicy, PointCloud, finalize
from .pcd import PcdEncoding, read_pcd, write_pcd
from .ply import read_ply, write_ply

Format = Literal["pcd", "ply", "npy", "npz", "text", "kitti", "nuscenes"]

__all__ = ["PointCloud", "InputError", "read_points", "read_pcd", "read_ply", "read_npy", "read_npz",
           "read_text", "read_kitti_bin", "read_nuscenes_bin", "write_pcd", "write_ply", "write_npy",
           "write_npz", "write_points", "detect_format"]


def detect_format(path: str | Path) -> Format:
    """Guess the format from the file name (``.pcd.bin`` is nuScenes, other ``.bin`` KITTI)."""
    name = Path(path).name.lower()
    if name.endswith(".pcd.bin"):
        return "nuscenes"
    suffix = Path(name).suffix
    table: dict[str, Format] = {".pcd": "pcd", ".ply": "ply", ".npy": "npy", ".npz": "npz", ".xyz": "text",
                                ".txt": "text", ".pts": "text", ".csv": "text", ".bin": "kitti"}
    if suffix not in table:
        raise InputError(path, f"unknown point-cloud extension {suffix!r}",
                              f"use one of {sorted(table)} or '.pcd.bin', or pass fmt=...")
    return table[suffix]


def _columns_to_cloud(arr: np.ndarray, path: Path, feature_names: list[str] | None,
                      nan_policy: NanPolicy, max_points: int | None) -> PointCloud:
    """[N, 3 + C] numbers -> cloud; extra columns are named by ``feature_names`` or ``extra``."""
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise InputError(path, f"expected an [N, >=3] array of x, y, z (+ features), got shape {list(arr.shape)}",
                              "save points as rows with x, y, z in the first three columns")
    if arr.dtype.kind not in "fiu":
        raise InputError(path, f"array dtype {arr.dtype} is not numeric", "store float32/float64 points")
    extra = arr[:, 3:]
    feats: dict[str, np.ndarray] = {}
    if extra.shape[1]:
        if feature_names is not None:
            if len(feature_names) != extra.shape[1]:
                raise InputError(path, f"{extra.shape[1]} extra columns but feature_names={feature_names}",
                                      "give one name per column after x, y, z")
            feats = {n: np.ascontiguousarray(extra[:, i]) for i, n in enumerate(feature_names)}
        else:
            feats = {"extra": np.ascontiguousarray(extra)}
    return finalize(arr[:, :3], feats, path, nan_policy=nan_policy, max_points=max_points)


def read_npy(path: str | Path, *, feature_names: list[str] | None = None, nan_policy: NanPolicy = "drop",
             max_points: int | None = DEFAULT_MAX_POINTS) -> PointCloud:
    """Read an [N, 3 + C] ``.npy`` array (memory-mapped first so the size cap costs nothing)."""
    path = Path(path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(path, f"not a readable .npy array ({e})", "re-save it with numpy.save") from None
    if max_points is not None and arr.ndim >= 1 and arr.shape[0] > max_points:
        raise InputError(path, f"{arr.shape[0]:,} points exceed the cap of {max_points:,}",
                              "pass max_points=None (or a larger cap), or downsample the file first")
    return _columns_to_cloud(np.array(arr), path, feature_names, nan_policy, max_points)  # copy: no open memmap


def read_npz(path: str | Path, *, nan_policy: NanPolicy = "drop",
             max_points: int | None = DEFAULT_MAX_POINTS) -> PointCloud:
    """Read an ``.npz`` with an ``xyz`` (or ``points``) array; other arrays with N rows become features."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(path, f"not a readable .npz archive ({e})", "re-save it with numpy.savez") from None
    key = "xyz" if "xyz" in arrays else "points" if "points" in arrays else None
    if key is None:
        raise InputError(path, f"no 'xyz' or 'points' array (found {sorted(arrays)})",
                              "save the coordinates under the name 'xyz'")
    xyz = arrays.pop(key)
    if xyz.ndim != 2 or xyz.shape[1] < 3:
        raise InputError(path, f"'{key}' has shape {list(xyz.shape)}, expected [N, 3]",
                              "store x, y, z as an [N, 3] array")
    n = xyz.shape[0]
    feats = {k: v for k, v in arrays.items() if v.ndim >= 1 and v.shape[0] == n}
    if xyz.shape[1] > 3 and "extra" not in feats:
        feats["extra"] = xyz[:, 3:]
    return finalize(xyz[:, :3], feats, path, nan_policy=nan_policy, max_points=max_points)


def read_text(path: str | Path, *, feature_names: list[str] | None = None, nan_policy: NanPolicy = "drop",
              max_points: int | None = DEFAULT_MAX_POINTS) -> PointCloud:
    """Read an ``.xyz``/``.txt`` table: one point per line, x y z first, ``#`` comments allowed."""
    path = Path(path)
    text = path.read_text(errors="replace")
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    delimiter = "," if "," in first else None
    try:
        arr = np.loadtxt(path, dtype=np.float64, ndmin=2, comments="#", delimiter=delimiter)
    except ValueError as e:
        raise InputError(path, f"not a table of numbers ({e})",
                              "every line needs the same number of numeric columns (x y z ...)") from None
    if arr.size == 0:
        raise InputError(path, "the cloud is empty", "check that the file holds points")
    return _columns_to_cloud(arr.astype(np.float32), path, feature_names, nan_policy, max_points)


def _read_float_records(path: Path, ncols: int, what: str, max_points: int | None) -> np.ndarray:
    size = path.stat().st_size
    rec = 4 * ncols
    if size == 0:
        raise InputError(path, "the file is empty (0 bytes)", "re-export or re-download the scan")
    if size % rec:
        other = ("nuScenes .pcd.bin (5 floats)" if ncols == 4 and size % 20 == 0
                 else "KITTI .bin (4 floats)" if ncols == 5 and size % 16 == 0 else None)
        hint = f"it may be a {other}: pass fmt='{'nuscenes' if ncols == 4 else 'kitti'}'" if other \
            else "the file is truncated or not a float32 scan"
        raise InputError(path, f"{size:,} bytes is not a multiple of {rec} ({what})", hint)
    if max_points is not None and size // rec > max_points:
        raise InputError(path, f"{size // rec:,} points exceed the cap of {max_points:,}",
                              "pass max_points=None (or a larger cap), or crop the scan first")
    return np.fromfile(path, dtype="<f4").reshape(-1, ncols)


#: raw LiDAR layouts a ``.bin`` may hold: (what, dtype, columns)
LAYOUTS = (("KITTI .bin (float32 x, y, z, reflectance 0-1)", "<f4", 4),
           ("nuScenes .pcd.bin (float32 x, y, z, intensity 0-255, ring)", "<f4", 5),
           ("float64 x, y, z, reflectance", "<f8", 4), ("float64 x, y, z", "<f8", 3), ("float32 x, y, z", "<f4", 3))


def layout_score(arr: np.ndarray, what: str) -> float:
    """How plausible ``arr`` (rows of one layout, a sample) is as a LiDAR scan in metres: the share of rows
    whose coordinates are finite and within 500 m and whose extra columns hold what the layout says."""
    if len(arr) == 0:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        xyz = arr[:, :3].astype(np.float64)
        ok = np.isfinite(xyz).all(1) & (np.abs(xyz) < 500).all(1) & (np.abs(xyz).max(1) > 1e-3)
        if "reflectance" in what:
            r = arr[:, 3].astype(np.float64)
            ok &= (r >= 0) & (r <= 1)
        if "ring" in what:
            ring, inten = arr[:, 4].astype(np.float64), arr[:, 3].astype(np.float64)
            ok &= (ring >= 0) & (ring < 256) & (ring == np.round(ring)) & (inten >= 0) & (inten <= 255)
    return float(ok.mean())


def guess_layout(path: Path, sample: int = 20_000) -> list[tuple[str, float]]:
    """Every layout the file's size allows, best first, with its plausibility."""
    size = path.stat().st_size
    out = []
    with open(path, "rb") as f:
        head = f.read(min(size, 8 * 5 * sample))
    for what, dtype, cols in LAYOUTS:
        rec = np.dtype(dtype).itemsize * cols
        if size % rec:
            continue
        n = len(head) // rec
        arr = np.frombuffer(head[: n * rec], dtype=dtype).reshape(n, cols)
        out.append((what, layout_score(arr, what)))
    return sorted(out, key=lambda kv: -kv[1])


def check_layout(path: Path, arr: np.ndarray, what: str, fix_name: str) -> None:
    """Refuse a ``.bin`` whose values do not look like the layout its name promises, saying what it probably is."""
    mine = layout_score(arr[:20_000], what)
    if mine >= 0.9:
        return
    best = [(w, s) for w, s in guess_layout(path) if w != what and s >= 0.9]
    if best:
        other = best[0][0]
        fix = (f"it looks like {other}: rename it *.pcd.bin" if other.startswith("nuScenes") else
               f"it looks like {other}: rename it *.bin" if other.startswith("KITTI") else
               f"it looks like {other}: convert it to float32 x, y, z, reflectance (numpy .astype('float32')) or save it as .npy")
    elif layout_score(np.c_[arr[:20_000, :3] / 1000.0, arr[:20_000, 3:]], what) >= 0.9:
        fix = "its coordinates look like millimetres: divide x, y, z by 1000 (the detector works in metres)"
    else:
        fix = f"it is not a LiDAR scan in any layout we know (tried {'; '.join(w for w, _, _ in LAYOUTS)}); check the file"
    raise InputError(path, f"only {mine:.0%} of its points look like {what} (coordinates within 500 m{', ' + fix_name if fix_name else ''})",
                     fix)


def read_kitti_bin(path: str | Path, *, nan_policy: NanPolicy = "drop",
                   max_points: int | None = DEFAULT_MAX_POINTS) -> PointCloud:
    """KITTI Velodyne scan: float32 (x, y, z, reflectance); metres, x forward, y left, z up."""
    path = Path(path)
    arr = _read_float_records(path, 4, "KITTI records are 4 float32: x, y, z, reflectance", max_points)
    check_layout(path, arr, LAYOUTS[0][0], "reflectance in [0, 1]")
    return finalize(arr[:, :3], {"intensity": arr[:, 3].copy()}, path, nan_policy=nan_policy, max_points=max_points)


def read_nuscenes_bin(path: str | Path, *, nan_policy: NanPolicy = "drop",
                      max_points: int | None = DEFAULT_MAX_POINTS) -> PointCloud:
    """nuScenes LIDAR_TOP sweep: float32 (x, y, z, intensity 0-255, ring); metres, LiDAR frame."""
    path = Path(path)
    arr = _read_float_records(path, 5, "nuScenes records are 5 float32: x, y, z, intensity, ring", max_points)
    check_layout(path, arr, LAYOUTS[1][0], "intensity 0-255, whole ring numbers")
    return finalize(arr[:, :3], {"intensity": arr[:, 3].copy(), "ring": arr[:, 4].astype(np.int16)}, path,
                    nan_policy=nan_policy, max_points=max_points)


def read_points(path: str | Path, *, fmt: Format | None = None, nan_policy: NanPolicy = "drop",
                max_points: int | None = DEFAULT_MAX_POINTS) -> PointCloud:
    """Read any supported point-cloud file.

    ``nan_policy``: ``'drop'`` (default; the count is in ``cloud.num_nan_dropped``), ``'raise'``,
    or ``'keep'`` (organised clouds keep their pixel grid). ``max_points`` caps the size
    (default 2,000,000; ``None`` disables it) so a wrong file cannot exhaust memory.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file", "check the path")
    fmt = fmt or detect_format(path)
    kw = dict(nan_policy=nan_policy, max_points=max_points)
    readers = {"pcd": read_pcd, "ply": read_ply, "npy": read_npy, "npz": read_npz, "text": read_text,
               "kitti": read_kitti_bin, "nuscenes": read_nuscenes_bin}
    if fmt not in readers:
        raise ValueError(f"fmt must be one of {sorted(readers)}, got {fmt!r}")
    return readers[fmt](path, **kw)


def write_npy(path: str | Path, cloud: PointCloud, *, with_features: bool = False) -> Path:
    """Save xyz as float32 [N, 3]; with ``with_features`` append numeric features as columns."""
    path = Path(path)
    cols = [cloud.xyz]
    if with_features:
        cols += [v.reshape(len(cloud), -1).astype(np.float32) for v in cloud.features.values()
                 if v.dtype.kind in "fiub"]
    np.save(path, np.concatenate(cols, axis=1).astype(np.float32))
    return path


def write_npz(path: str | Path, cloud: PointCloud) -> Path:
    """Save xyz and every feature by name (lossless; read back with :func:`read_npz`)."""
    path = Path(path)
    if "xyz" in cloud.features:
        raise InputError(cloud.source, "a feature is named 'xyz'", "rename it before saving")
    np.savez(path, xyz=cloud.xyz, **cloud.features)
    return path


def write_points(path: str | Path, cloud: PointCloud, *, encoding: PcdEncoding = "binary") -> Path:
    """Write by extension: ``.pcd`` (``encoding``), ``.ply``, ``.npy``, ``.npz``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pcd":
        return write_pcd(path, cloud, encoding=encoding)
    if suffix == ".ply":
        return write_ply(path, cloud)
    if suffix == ".npy":
        return write_npy(path, cloud)
    if suffix == ".npz":
        return write_npz(path, cloud)
    raise InputError(path, f"cannot write extension {suffix!r}", "use .pcd, .ply, .npy or .npz")
