"""Radiance grids from meshes (``.ply``, ``.obj``, ``.glb``/``.gltf``, ``.stl``, ``.off`` via trimesh).

The surface is sampled area-uniformly at twice the grid's resolution; a voxel's occupancy is the fraction
of its 2x2x2 sub-voxels the surface (or, for a closed shell, the filled interior) touches, and its colour
the mean surface colour there (texture looked up at the sample's UV, or vertex colours interpolated, or
grey when the mesh has none). Density is ``OPTICAL_DEPTH`` per voxel at full occupancy, so a surface voxel
is opaque when rendered at any resolution. Face counts are read from the file's header before trimesh
decodes it.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from maskworks.core.io import InputError

from .grid import RadianceGrid

MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl", ".off")
MAX_MESH_BYTES = 64 * 1024 ** 2
MAX_FACES = 2_000_000
OPTICAL_DEPTH = 5.0  # sigma * voxel length of a fully occupied voxel
GREY = np.array([0.7, 0.7, 0.7], dtype=np.float32)
FIX = "give a triangle mesh as .ply, .obj, .glb, .stl or .off"


def count_faces(path: Path) -> int | None:
    """Faces declared by the file, from its header (PLY, binary STL, GLB) or by counting ``f`` lines
    (OBJ, streamed); None when the format does not say."""
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(65536)
    if suffix == ".ply":
        if not head.startswith(b"ply"):
            raise InputError(path, "no 'ply' magic at the start", FIX)
        end = head.find(b"end_header")
        if end < 0:
            raise InputError(path, "PLY header has no end_header in its first 64 KB", FIX)
        for line in head[:end].decode("latin-1").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "element" and parts[1] == "face":
                return int(parts[2])
        return 0
    if suffix == ".stl" and not head[:5].lower().startswith(b"solid") and len(head) >= 84:
        return struct.unpack("<I", head[80:84])[0]
    if suffix == ".obj":
        n = 0
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"f ") or line.startswith(b"f\t"):
                    n += max(1, len(line.split()) - 3)  # an n-gon is n - 2 triangles
        return n
    if suffix == ".glb":
        if head[:4] != b"glTF" or len(head) < 20:
            raise InputError(path, "not a binary glTF (no 'glTF' magic)", FIX)
        length, kind = struct.unpack("<I4s", head[12:20])
        if kind != b"JSON":
            raise InputError(path, "first GLB chunk is not JSON", FIX)
        with open(path, "rb") as f:
            f.seek(20)
            raw = f.read(min(length, 16 * 1024 ** 2))
        try:  # a corrupt header can break the JSON or any of the types below
            doc = json.loads(raw)
            acc = doc.get("accessors", [])
            n = 0
            for mesh in doc.get("meshes", []):
                for prim in mesh.get("primitives", []):
                    i = prim.get("indices", prim.get("attributes", {}).get("POSITION"))
                    if isinstance(i, int) and 0 <= i < len(acc):
                        n += int(acc[i].get("count", 0)) // 3
        except (ValueError, TypeError, AttributeError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise InputError(path, f"its glTF JSON header is not valid ({type(e).__name__}: {str(e)[:80]})", FIX) from None
        return n
    return None


def load_mesh(path: str | Path, max_faces: int = MAX_FACES):
    """A trimesh ``Trimesh`` (scenes merged), after the size and face-count caps."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file", "check the path")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(path, f"unsupported mesh extension {path.suffix!r}", FIX)
    size = path.stat().st_size
    if size > MAX_MESH_BYTES:
        raise InputError(path, f"{size / 1e6:.0f} MB is larger than the cap of {MAX_MESH_BYTES / 1e6:.0f} MB",
                         "decimate the mesh first")
    faces = count_faces(path)
    if faces is not None and faces > max_faces:
        raise InputError(path, f"{faces:,} faces, more than the cap of {max_faces:,}", "decimate the mesh first")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as e:  # noqa: BLE001 - trimesh raises many kinds on bad files
        raise InputError(path, f"trimesh cannot read it ({type(e).__name__}: {e})", FIX) from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(path, "no triangles in the file (a point cloud or an empty scene?)", FIX)
    if len(mesh.faces) > max_faces:
        raise InputError(path, f"{len(mesh.faces):,} faces, more than the cap of {max_faces:,}", "decimate the mesh first")
    lo, hi = int(mesh.faces.min()), int(mesh.faces.max())
    if lo < 0 or hi >= len(mesh.vertices):
        bad = lo if lo < 0 else hi
        raise InputError(path, f"a face refers to vertex {bad:,}, but the mesh has {len(mesh.vertices):,} vertices "
                         "(a corrupt or truncated file)", "re-export the mesh")
    if not np.isfinite(mesh.vertices).all():
        raise InputError(path, "vertices hold NaN or infinite values", "repair the mesh")
    uv = getattr(mesh.visual, "uv", None)
    if uv is not None and not np.isfinite(np.asarray(uv, dtype=np.float64)).all():
        raise InputError(path, "texture coordinates hold NaN or infinite values", "re-export the mesh")
    if float(np.ptp(mesh.vertices, axis=0).max()) <= 0:
        raise InputError(path, "all vertices coincide", "give a mesh with extent")
    return mesh


def _sample_colours(mesh, faces: np.ndarray, bary: np.ndarray) -> tuple[np.ndarray, bool]:
    """Colours ``[N, 3]`` in [0, 1] at surface samples, and whether the mesh had real colour."""
    vis = mesh.visual
    if getattr(vis, "kind", None) == "texture" and getattr(vis, "uv", None) is not None:
        img = getattr(getattr(vis, "material", None), "baseColorTexture", None) or getattr(vis.material, "image", None)
        tex = None if img is None else np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        if tex is not None and np.ptp(tex) > 0:  # trimesh puts a flat 2x2 image where a material is missing
            uv = np.einsum("nk,nkj->nj", bary, vis.uv[mesh.faces[faces]])
            h, w = tex.shape[:2]
            u = np.clip((uv[:, 0] % 1.0) * w, 0, w - 1).astype(int)
            v = np.clip((1.0 - uv[:, 1] % 1.0) * h, 0, h - 1).astype(int)
            return tex[v, u], True
    if getattr(vis, "kind", None) == "vertex":
        vc = np.asarray(vis.vertex_colors, dtype=np.float32)[:, :3] / 255.0
        if np.ptp(vc, axis=0).max() > 0:  # a constant default colour is no colour
            return np.einsum("nk,nkj->nj", bary, vc[mesh.faces[faces]]), True
    if getattr(vis, "kind", None) == "face":
        fc = np.asarray(vis.face_colors, dtype=np.float32)[:, :3] / 255.0
        if np.ptp(fc, axis=0).max() > 0:
            return fc[faces], True
    return np.tile(GREY, (len(faces), 1)), False


def y_up_to_z_up(v: np.ndarray) -> np.ndarray:
    """Rotate +90 degrees about x: graphics' y-up becomes NeRF-MAE's z-up (right-handed kept)."""
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], -1)


def grid_from_mesh(path: str | Path, resolution: int = 64, up: str = "y", margin: float = 0.05,
                   fill: bool = True, seed: int = 0, samples_per_cell: float = 16.0,
                   normals: bool = False) -> RadianceGrid:
    """Occupancy (as density) and surface colour of a mesh on a grid of ``resolution`` voxels along the
    longest side of its (``margin``-padded) bounding box. ``up`` is the mesh's up axis ("y" for most
    graphics files, "z" to keep it); interiors of closed shells are filled when ``fill``. With ``normals``
    the grid's ``extras["normal_sum"]`` ``[X, Y, Z, 3]`` holds the summed unit face normals of the surface
    samples in each voxel and ``extras["samples"]`` their count (voxel labels for the downstream task)."""
    from scipy import ndimage

    mesh = load_mesh(path)
    if up not in ("y", "z"):
        raise ValueError(f"up must be 'y' or 'z', got {up!r}")
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    if up == "y":
        verts = y_up_to_z_up(verts)
    lo, hi = verts.min(0), verts.max(0)
    pad = margin * (hi - lo).max()
    lo, hi = lo - pad, hi + pad
    extent = hi - lo
    shape = np.maximum(4, np.round(resolution * extent / extent.max())).astype(int)
    fine = shape * 2
    cell = extent.max() / fine.max()
    area = float(mesh.area)
    n = int(np.clip(samples_per_cell * area / cell ** 2, 20_000, 4_000_000))
    pts, faces, bary = _sample(mesh, n, seed)
    if up == "y":
        pts = y_up_to_z_up(pts)
    cols, coloured = _sample_colours(mesh, faces, bary)
    idx = np.clip(((pts - lo) / (extent / fine)).astype(int), 0, fine - 1)
    flat = np.ravel_multi_index(idx.T, fine)
    count = np.bincount(flat, minlength=int(np.prod(fine))).reshape(fine)
    csum = np.stack([np.bincount(flat, weights=cols[:, k], minlength=int(np.prod(fine))) for k in range(3)], -1)
    csum = csum.reshape(*fine, 3)
    surface = count > 0
    occ = ndimage.binary_fill_holes(surface) if fill else surface
    filled_inside = bool(fill and occ.sum() > surface.sum())
    col = np.where(surface[..., None], csum / np.maximum(count, 1)[..., None], 0.0)
    # 2x2x2 -> 1: occupancy fraction, colour averaged over the surface sub-voxels (interior: surface mean)
    occ_c = occ.reshape(shape[0], 2, shape[1], 2, shape[2], 2).mean((1, 3, 5))
    s_c = surface.reshape(shape[0], 2, shape[1], 2, shape[2], 2).sum((1, 3, 5))
    c_c = col.reshape(shape[0], 2, shape[1], 2, shape[2], 2, 3).sum((1, 3, 5)) / np.maximum(s_c, 1)[..., None]
    mean_col = cols.mean(0)
    rgb = np.where((s_c > 0)[..., None], c_c, mean_col).astype(np.float32)
    rgb[occ_c == 0] = 0.0
    sigma = (occ_c * OPTICAL_DEPTH * shape.max()).astype(np.float32)  # per unit of the normalised box
    g = RadianceGrid(rgb, sigma, lo, hi, source=str(path))
    if normals:
        fn = np.asarray(mesh.face_normals, dtype=np.float64)[faces]
        fn = y_up_to_z_up(fn) if up == "y" else fn
        cidx = np.clip(((pts - lo) / (extent / shape)).astype(int), 0, shape - 1)
        cflat = np.ravel_multi_index(cidx.T, shape)
        nsum = np.stack([np.bincount(cflat, weights=fn[:, k], minlength=int(np.prod(shape))) for k in range(3)], -1)
        g.extras["normal_sum"] = nsum.reshape(*shape, 3).astype(np.float32)
        g.extras["samples"] = np.bincount(cflat, minlength=int(np.prod(shape))).reshape(shape)
    g.notes.append(f"{len(mesh.faces):,} faces, {'coloured' if coloured else 'no colour (grey)'}"
                   f"{', interior filled' if filled_inside else ', surface shell only (not closed)'}")
    return g


def _sample(mesh, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-uniform surface samples: points, their faces and barycentric coordinates."""
    import trimesh

    pts, faces = trimesh.sample.sample_surface(mesh, n, seed=seed)
    tri = mesh.triangles[faces]
    bary = trimesh.triangles.points_to_barycentric(tri, pts)
    return np.asarray(pts), np.asarray(faces), np.clip(np.nan_to_num(bary), 0.0, 1.0)
