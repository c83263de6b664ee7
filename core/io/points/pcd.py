"""PCL ``.pcd`` reader/writer in numpy: ``ascii``, ``binary`` and ``binary_compressed`` (LZF).

Our own parser rather than open3d because open3d keeps only xyz/rgb/normals (no intensity or
arbitrary fields), and we want organised clouds with NaNs and exact error messages.
Packed ``rgb``/``rgba`` fields become ``rgb`` uint8 [N, 3] (+ ``alpha`` for rgba);
``normal_x/y/z`` become ``normal`` [N, 3]; other fields keep their name.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Literal

import numpy as np
from maskworks.core.io import InputError

from .cloud import DEFAULT_MAX_POINTS, NanPolicy, PointCloud, finalize
from .lzf import LZFError, lzf_compress, lzf_decompress

PcdEncoding = Literal["ascii", "binary", "binary_compressed"]
_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4",
          ("U", 8): "<u8", ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8"}
_MAX_HEADER_BYTES = 1 << 16


def _parse_header(raw: bytes, path: Path) -> tuple[dict[str, list[str]], int]:
    """Header keyword -> values, and the byte offset where the data starts."""
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0 or end > _MAX_HEADER_BYTES:
            raise InputError(path, "no 'DATA' line found in the PCD header (not a PCD file, "
                                  "or the header is truncated)", "check the file is a PCL .pcd file")
        line = raw[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *vals = line.split()
        header[key.upper()] = vals
        if key.upper() == "DATA":
            return header, pos


def _layout(header: dict[str, list[str]], path: Path) -> tuple[np.dtype, list[str], int, int, int, str]:
    """Structured dtype, field names, width, height, point count and data encoding."""
    try:
        names = header["FIELDS"]
        sizes = [int(s) for s in header["SIZE"]]
        types = [t.upper() for t in header["TYPE"]]
        counts = [int(c) for c in header.get("COUNT", ["1"] * len(names))]
        width = int(header["WIDTH"][0])
        height = int(header.get("HEIGHT", ["1"])[0])
        points = int(header.get("POINTS", [str(width * height)])[0])
        encoding = header["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as e:
        raise InputError(path, f"malformed PCD header ({type(e).__name__}: {e})",
                              "the header needs FIELDS, SIZE, TYPE, WIDTH and DATA lines") from None
    if not (len(names) == len(sizes) == len(types) == len(counts)):
        raise InputError(path, f"FIELDS/SIZE/TYPE/COUNT lengths differ ({len(names)}/{len(sizes)}/"
                              f"{len(types)}/{len(counts)})", "repair the PCD header")
    if points != width * height:
        raise InputError(path, f"POINTS {points} != WIDTH*HEIGHT {width}*{height}", "repair the PCD header")
    fields = []
    unique: list[str] = []
    for i, (n, s, t, c) in enumerate(zip(names, sizes, types, counts)):
        if (t, s) not in _TYPES:
            raise InputError(path, f"field {n!r} has unsupported TYPE {t} SIZE {s}",
                                  "use F (4/8 bytes), U or I (1/2/4/8 bytes)")
        name = f"_pad{i}" if n == "_" or n in unique else n
        unique.append(name)
        fields.append((name, _TYPES[(t, s)], (c,)) if c != 1 else (name, _TYPES[(t, s)]))
    if encoding not in ("ascii", "binary", "binary_compressed"):
        raise InputError(path, f"unknown DATA encoding {encoding!r}",
                              "use ascii, binary or binary_compressed")
    return np.dtype(fields), unique, width, height, points, encoding


def _read_records(raw: bytes, offset: int, dtype: np.dtype, points: int, encoding: str, path: Path) -> np.ndarray:
    body = raw[offset:]
    if encoding == "binary":
        need = points * dtype.itemsize
        if len(body) < need:
            raise InputError(path, f"binary data is truncated: {len(body):,} bytes for {points:,} points "
                                  f"of {dtype.itemsize} bytes ({need:,} needed)", "re-export or re-download the file")
        return np.frombuffer(body, dtype=dtype, count=points).copy()
    if encoding == "binary_compressed":
        if len(body) < 8:
            raise InputError(path, "binary_compressed data is truncated (no size words)",
                                  "re-export or re-download the file")
        csize, usize = struct.unpack("<II", body[:8])
        if usize != points * dtype.itemsize:
            raise InputError(path, f"uncompressed size {usize:,} != {points:,} points x {dtype.itemsize} bytes",
                                  "the header and data disagree; re-export the file")
        if len(body) - 8 < csize:
            raise InputError(path, f"compressed data is truncated: {len(body) - 8:,} of {csize:,} bytes",
                                  "re-export or re-download the file")
        try:
            flat = lzf_decompress(body[8:8 + csize], usize)
        except LZFError as e:
            raise InputError(path, f"LZF decompression failed: {e}", "re-export or re-download the file") from None
        # binary_compressed stores each field as one contiguous column (structure of arrays)
        rec = np.empty(points, dtype=dtype)
        pos = 0
        for name in dtype.names:
            sub = dtype.fields[name][0]
            nbytes = sub.itemsize * points
            rec[name] = np.frombuffer(flat, dtype=sub.base, count=points * max(1, int(np.prod(sub.shape))),
                                      offset=pos).reshape((points,) + sub.shape)
            pos += nbytes
        return rec
    # ascii
    text = body.decode("ascii", errors="replace")
    ncols = sum(int(np.prod(dtype.fields[n][0].shape)) or 1 for n in dtype.names)
    try:
        vals = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, comments="#")
    except ValueError as e:
        raise InputError(path, f"ascii data is not a table of numbers ({e})",
                              "the file may be truncated or corrupt; re-export it") from None
    if points == 0 and vals.size == 0:
        vals = np.zeros((0, ncols))
    if vals.shape != (points, ncols):
        raise InputError(path, f"ascii data has shape {list(vals.shape)}, header says {points:,} points x "
                              f"{ncols} values", "the file is truncated or the header is wrong")
    rec = np.empty(points, dtype=dtype)
    col = 0
    for name in dtype.names:
        sub = dtype.fields[name][0]
        width = int(np.prod(sub.shape)) if sub.shape else 1
        block = vals[:, col:col + width]
        if sub.base.kind == "f":
            rec[name] = block.reshape((points,) + sub.shape).astype(sub.base)
        else:
            rec[name] = np.rint(block).astype(np.int64).reshape((points,) + sub.shape).astype(sub.base)
        col += width
    return rec


def _features(rec: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    feats: dict[str, np.ndarray] = {}
    skip = {"x", "y", "z"}
    if all(f"normal_{a}" in names for a in "xyz"):
        feats["normal"] = np.stack([rec[f"normal_{a}"] for a in "xyz"], axis=1).astype(np.float32)
        skip |= {"normal_x", "normal_y", "normal_z"}
    for col in ("rgb", "rgba"):
        if col in names:
            packed = np.ascontiguousarray(rec[col]).view(np.uint32) if rec[col].dtype.itemsize == 4 \
                else rec[col].astype(np.uint32)
            feats["rgb"] = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
            if col == "rgba":
                feats["alpha"] = ((packed >> 24) & 255).astype(np.uint8)
            skip.add(col)
    for n in names:
        if n not in skip and not n.startswith("_pad"):
            feats[n] = np.ascontiguousarray(rec[n])
    return feats


def read_pcd(path: str | Path, *, nan_policy: NanPolicy = "drop",
             max_points: int | None = DEFAULT_MAX_POINTS) -> PointCloud:
    """Read a PCL ``.pcd`` file (any of the three encodings); coordinates as stored (PCL: metres).

    Organised clouds (HEIGHT > 1) keep all WIDTH*HEIGHT rows with ``nan_policy='keep'``;
    the default drops NaN points and reports how many in ``num_nan_dropped``.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw:
        raise InputError(path, "the file is empty (0 bytes)", "re-export or re-download the file")
    header, offset = _parse_header(raw, path)
    dtype, names, width, height, points, encoding = _layout(header, path)
    if not all(a in names for a in "xyz"):
        raise InputError(path, f"fields {names} lack x, y and z", "this reader needs x, y, z fields")
    if max_points is not None and points > max_points:
        raise InputError(path, f"{points:,} points exceed the cap of {max_points:,}",
                              "pass max_points=None (or a larger cap), or downsample the file first")
    rec = _read_records(raw, offset, dtype, points, encoding, path)
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float32)
    organized = (height, width) if height > 1 else None
    return finalize(xyz, _features(rec, names), path, nan_policy=nan_policy, max_points=max_points,
                    organized_shape=organized)


def _to_columns(cloud: PointCloud) -> list[tuple[str, np.ndarray]]:
    """Flatten a cloud into named PCD columns ([N] or [N, C] arrays)."""
    cols: list[tuple[str, np.ndarray]] = [(a, cloud.xyz[:, i]) for i, a in enumerate("xyz")]
    for name, arr in cloud.features.items():
        if name == "normal" and arr.ndim == 2 and arr.shape[1] == 3:
            cols += [(f"normal_{a}", arr[:, i].astype(np.float32)) for i, a in enumerate("xyz")]
        elif name == "rgb" and arr.ndim == 2 and arr.shape[1] == 3:
            c = arr.astype(np.uint32)
            packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
            if "alpha" in cloud.features:
                packed |= cloud.features["alpha"].astype(np.uint32) << 24
            cols.append(("rgba" if "alpha" in cloud.features else "rgb", packed))
        elif name == "alpha" and "rgb" in cloud.features:
            continue
        else:
            if arr.dtype.kind not in "fiub":
                raise InputError(cloud.source, f"feature {name!r} has dtype {arr.dtype}",
                                      "only numeric features can be written to PCD")
            if arr.dtype.kind == "b":
                arr = arr.astype(np.uint8)
            if arr.dtype.kind == "f" and arr.dtype.itemsize not in (4, 8):
                arr = arr.astype(np.float32)
            cols.append((name, arr))
    return cols


def write_pcd(path: str | Path, cloud: PointCloud, *, encoding: PcdEncoding = "binary") -> Path:
    """Write ``cloud`` as PCD v0.7 in the given encoding (organised shape kept if it still fits)."""
    path = Path(path)
    if encoding not in ("ascii", "binary", "binary_compressed"):
        raise ValueError(f"encoding must be ascii, binary or binary_compressed, got {encoding!r}")
    n = len(cloud)
    cols = _to_columns(cloud)
    fields = [(name, arr.dtype.newbyteorder("<"), arr.shape[1:]) for name, arr in cols]
    dtype = np.dtype([(name, dt, shape) if shape else (name, dt) for name, dt, shape in fields])
    rec = np.empty(n, dtype=dtype)
    for name, arr in cols:
        rec[name] = arr
    tchar = {"f": "F", "u": "U", "i": "I"}
    h, w = cloud.organized_shape if cloud.organized_shape and np.prod(cloud.organized_shape) == n else (1, n)
    header = ["# .PCD v0.7 - Point Cloud Data file format (written by maskworks)", "VERSION 0.7",
              "FIELDS " + " ".join(f[0] for f in fields),
              "SIZE " + " ".join(str(f[1].itemsize) for f in fields),
              "TYPE " + " ".join(tchar[f[1].kind] for f in fields),
              "COUNT " + " ".join(str(int(np.prod(f[2])) if f[2] else 1) for f in fields),
              f"WIDTH {w}", f"HEIGHT {h}", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {n}", f"DATA {encoding}"]
    head = ("\n".join(header) + "\n").encode("ascii")
    if encoding == "binary":
        body = rec.tobytes()
    elif encoding == "binary_compressed":
        flat = b"".join(np.ascontiguousarray(rec[name]).tobytes() for name in dtype.names)
        comp = lzf_compress(flat)
        body = struct.pack("<II", len(comp), len(flat)) + comp
    else:
        parts = []
        for name, arr in cols:
            a = arr.reshape(n, -1)
            fmt = "%.9g" if a.dtype == np.float32 else "%.17g" if a.dtype.kind == "f" else "%d"
            parts.append((a, fmt))
        buf = io.StringIO()
        table = np.concatenate([a.astype(object) for a, _ in parts], axis=1) if n else np.zeros((0, 0))
        fmts = [f for a, f in parts for _ in range(a.shape[1])]
        np.savetxt(buf, table, fmt=fmts, delimiter=" ")
        body = buf.getvalue().encode("ascii")
    path.write_bytes(head + body)
    return path
