"""Small ``.ply`` vertex reader/writer (ascii, binary little/big endian) in numpy.

Only the ``vertex`` element is read (faces and other elements after it are ignored), which is
all a point-cloud pipeline needs. ``nx/ny/nz`` become ``normal`` [N, 3]; ``red/green/blue``
become ``rgb`` uint8 [N, 3]; other vertex properties keep their name.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from maskworks.core.io import InputError

from .cloud import DEFAULT_MAX_POINTS, NanPolicy, PointCloud, finalize

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply(path: str | Path, *, nan_policy: NanPolicy = "drop",
             max_points: int | None = DEFAULT_MAX_POINTS) -> PointCloud:
    """Read the vertices of a PLY file as a point cloud (units as stored in the file)."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw.startswith(b"ply"):
        raise InputError(path, "not a PLY file (it does not start with 'ply')", "check the file type")
    end = raw.find(b"end_header")
    if end < 0:
        raise InputError(path, "no 'end_header' line (truncated header)", "re-export the file")
    body_start = raw.find(b"\n", end) + 1
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in lines:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == "property" and elements:
            if tok[1] == "list":
                elements[-1][2].append((tok[-1], "list"))
            elif tok[1] in _PLY_TYPES:
                elements[-1][2].append((tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise InputError(path, f"unknown PLY property type {tok[1]!r}", "use standard PLY types")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InputError(path, f"unknown PLY format {fmt!r}", "use ascii or binary_little/big_endian")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise InputError(path, "no 'vertex' element", "the file holds no points")
    vi = names.index("vertex")
    _, n, props = elements[vi]
    if any(t == "list" for e in elements[:vi + 1] for _, t in e[2]):
        raise InputError(path, "list properties before/in the vertex element are not supported",
                              "store vertices first with scalar properties")
    if max_points is not None and n > max_points:
        raise InputError(path, f"{n:,} points exceed the cap of {max_points:,}",
                              "pass max_points=None (or a larger cap), or downsample the file first")
    order = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(p, order + t) for p, t in props])
    if fmt == "ascii":
        text = raw[body_start:].decode("ascii", errors="replace").splitlines()
        skip = sum(e[1] for e in elements[:vi])
        rows = text[skip:skip + n]
        try:
            vals = np.loadtxt(io.StringIO("\n".join(rows)), dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise InputError(path, f"vertex data is not numeric ({e})", "the file may be corrupt") from None
        if vals.shape != (n, len(props)):
            raise InputError(path, f"vertex data has shape {list(vals.shape)}, header says {n} x {len(props)}",
                                  "the file is truncated or the header is wrong")
        rec = np.empty(n, dtype=dtype)
        for i, (p, _) in enumerate(props):
            rec[p] = vals[:, i]
    else:
        offset = body_start + sum(e[1] * np.dtype([(p, order + t) for p, t in e[2]]).itemsize
                                  for e in elements[:vi])
        need = n * dtype.itemsize
        if len(raw) - offset < need:
            raise InputError(path, f"vertex data is truncated: {max(0, len(raw) - offset):,} of {need:,} bytes",
                                  "re-export or re-download the file")
        rec = np.frombuffer(raw, dtype=dtype, count=n, offset=offset)
    pnames = [p for p, _ in props]
    if not all(a in pnames for a in "xyz"):
        raise InputError(path, f"vertex properties {pnames} lack x, y, z", "this reader needs x, y, z")
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float32)
    feats: dict[str, np.ndarray] = {}
    used = {"x", "y", "z"}
    if all(a in pnames for a in ("nx", "ny", "nz")):
        feats["normal"] = np.stack([rec[a] for a in ("nx", "ny", "nz")], axis=1).astype(np.float32)
        used |= {"nx", "ny", "nz"}
    if all(a in pnames for a in ("red", "green", "blue")):
        feats["rgb"] = np.stack([rec[a] for a in ("red", "green", "blue")], axis=1).astype(np.uint8)
        used |= {"red", "green", "blue"}
    for p in pnames:
        if p not in used:
            feats[p] = np.array(rec[p])
    return finalize(xyz, feats, path, nan_policy=nan_policy, max_points=max_points)


def write_ply(path: str | Path, cloud: PointCloud, *, binary: bool = True) -> Path:
    """Write the cloud's points (+ normals, rgb and 1-D numeric features) as a PLY vertex list."""
    path = Path(path)
    cols: list[tuple[str, np.ndarray]] = [(a, cloud.xyz[:, i]) for i, a in enumerate("xyz")]
    for name, arr in cloud.features.items():
        if name == "normal" and arr.shape[1:] == (3,):
            cols += [(a, arr[:, i].astype(np.float32)) for i, a in enumerate(("nx", "ny", "nz"))]
        elif name == "rgb" and arr.shape[1:] == (3,):
            cols += [(a, arr[:, i].astype(np.uint8)) for i, a in enumerate(("red", "green", "blue"))]
        elif arr.ndim == 1 and arr.dtype.kind in "fiu":
            cols.append((name, arr.astype(np.float32) if arr.dtype.kind == "f" else arr))
    inv = {v: k for k, v in _PLY_TYPES.items() if k in ("char", "uchar", "short", "ushort", "int", "uint",
                                                        "float", "double")}
    dtype = np.dtype([(name, "<" + arr.dtype.str[1:]) for name, arr in cols])
    rec = np.empty(len(cloud), dtype=dtype)
    for name, arr in cols:
        rec[name] = arr
    head = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", "comment written by maskworks",
            f"element vertex {len(cloud)}"]
    head += [f"property {inv[arr.dtype.str[1:]]} {name}" for name, arr in cols]
    head.append("end_header")
    data = rec.tobytes() if binary else "".join(
        " ".join(repr(v.item()) if isinstance(v, np.floating) else str(v) for v in row) + "\n"
        for row in rec).encode("ascii")
    path.write_bytes(("\n".join(head) + "\n").encode("ascii") + data)
    return path
