"""Posed images: a ``transforms.json`` (NeRF / instant-ngp convention) and its images, from a folder or a zip.

Checks before decoding: zip size and member count, image count and pixel counts from the image headers,
and every pose (a finite 4x4 camera-to-world matrix whose rotation is orthonormal with determinant +1).
A bad pose is an :class:`InputError` naming the transforms file and the frame.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from maskworks.core.io import InputError

from .render import Camera

TRANSFORMS_NAMES = ("transforms.json", "transforms_train.json")
MAX_ZIP_BYTES = 64 * 1024 ** 2
MAX_ZIP_MEMBERS = 1000
MAX_UNZIPPED_BYTES = 512 * 1024 ** 2
MAX_VIEWS = 400
MAX_IMAGE_PIXELS = 2048 * 2048
MAX_TOTAL_PIXELS = 60_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class PosedImages:
    images: np.ndarray  # [N, H, W, 3] float32 in [0, 1] (RGBA composited on white)
    cameras: list[Camera]
    names: list[str]
    white_background: bool  # the images had alpha: renders use a white background
    source: str

    def __len__(self) -> int:
        return len(self.names)

    def split(self, every: int = 10) -> tuple[list[int], list[int]]:
        """Held-out views: every ``every``-th view (from the 5th on) is kept out of the fit."""
        test = [i for i in range(len(self)) if i % every == every // 2]
        return [i for i in range(len(self)) if i not in test], test

    def focus(self) -> np.ndarray:
        """The point nearest to every camera's optical axis (least squares): what the cameras look at."""
        a, b = np.zeros((3, 3)), np.zeros(3)
        for c in self.cameras:
            o, d = c.c2w[:3, 3], -c.c2w[:3, 2] / np.linalg.norm(c.c2w[:3, 2])
            m = np.eye(3) - np.outer(d, d)
            a += m
            b += m @ o
        return np.linalg.lstsq(a, b, rcond=None)[0]


class _Source:
    """Files of a folder or of a zip, by relative posix name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_dir():
            self.names = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file()}
        else:
            if path.stat().st_size > MAX_ZIP_BYTES:
                raise InputError(path, f"zip of {path.stat().st_size / 1e6:.0f} MB is larger than the cap of "
                                 f"{MAX_ZIP_BYTES / 1e6:.0f} MB", "send fewer or smaller images")
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise InputError(path, f"not a zip archive ({e})", "zip transforms.json and its images") from None
            infos = [i for i in self.zip.infolist() if not i.is_dir()]
            if len(infos) > MAX_ZIP_MEMBERS:
                raise InputError(path, f"{len(infos)} files in the zip, more than the cap of {MAX_ZIP_MEMBERS}",
                                 "zip only transforms.json and its images")
            if sum(i.file_size for i in infos) > MAX_UNZIPPED_BYTES:
                raise InputError(path, f"unzips to more than {MAX_UNZIPPED_BYTES / 1e6:.0f} MB", "send smaller images")
            self.names = {i.filename: i for i in infos if not i.filename.startswith("__MACOSX/")}

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(self.names[name])
        return Path(self.names[name]).read_bytes()

    def find_transforms(self) -> str:
        for want in TRANSFORMS_NAMES:
            hits = sorted((n for n in self.names if PurePosixPath(n).name == want), key=lambda n: n.count("/"))
            if hits:
                return hits[0]
        raise InputError(self.path, "no transforms.json (or transforms_train.json) inside",
                         "add the NeRF / instant-ngp transforms.json with one camera-to-world matrix per image")


def check_pose(m, where: str, source: str | Path) -> np.ndarray:
    """A finite 4x4 (or 3x4) rigid camera-to-world matrix, or an InputError naming ``source`` and ``where``."""
    fix = "each frame needs a 4x4 camera-to-world 'transform_matrix' with an orthonormal rotation (as COLMAP / colmap2nerf write)"
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(source, f"{where}: transform_matrix is not a matrix of numbers", fix) from None
    if a.shape == (3, 4):
        a = np.vstack([a, [0, 0, 0, 1]])
    if a.shape != (4, 4):
        raise InputError(source, f"{where}: transform_matrix has shape {list(a.shape)}, expected 4x4", fix)
    if not np.isfinite(a).all():
        raise InputError(source, f"{where}: transform_matrix holds NaN or infinite values", fix)
    if not np.allclose(a[3], [0, 0, 0, 1], atol=1e-4):
        raise InputError(source, f"{where}: last row is {a[3].tolist()}, not [0, 0, 0, 1]", fix)
    r = a[:3, :3]
    err = float(np.abs(r.T @ r - np.eye(3)).max())
    if err > 1e-2 or np.linalg.det(r) < 0:
        raise InputError(source, f"{where}: rotation is not orthonormal with determinant +1 "
                         f"(|R^T R - I| = {err:.3g}, det = {np.linalg.det(r):.3g})", fix)
    return a


def _num(meta: dict, key: str, source: str, default=None) -> float | None:
    v = meta.get(key)
    if v is None:  # absent or JSON null: the default
        v = default
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(source, f"{key} is {v!r}, not a number", f"give {key} as a number") from None
    if not math.isfinite(v):
        raise InputError(source, f"{key} is not finite", f"give {key} as a finite number")
    return v


def _image_name(src: _Source, base: str, file_path: str) -> str | None:
    rel = PurePosixPath(base).parent / PurePosixPath(file_path.replace("\\", "/"))
    parts: list[str] = []
    for p in rel.parts:
        if p in (".", ""):
            continue
        if p == "..":
            if not parts:
                return None  # outside the folder / zip
            parts.pop()
        else:
            parts.append(p)
    name = "/".join(parts)
    if name in src.names:
        return name
    for suf in IMAGE_SUFFIXES:
        if name + suf in src.names:
            return name + suf
    return None


def read_posed_images(path: str | Path, downscale: int = 1, max_views: int = MAX_VIEWS) -> PosedImages:
    """Read ``transforms.json`` + images from a folder or a ``.zip``; ``downscale`` divides the resolution."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder", "check the path")
    src = _Source(path)
    tname = src.find_transforms()
    where = f"{path.name}:{tname}" if src.zip is not None else str(path / tname)
    try:
        meta = json.loads(src.read(tname))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(where, f"not valid JSON ({e})", "save transforms.json as JSON") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise InputError(where, "no 'frames' list", "list one {file_path, transform_matrix} per image")
    if len(frames) > max_views:
        raise InputError(where, f"{len(frames)} frames, more than the cap of {max_views}", "use fewer views")
    poses, names = [], []
    for k, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise InputError(where, f"frame {k} lacks file_path or transform_matrix", "give both for every frame")
        poses.append(check_pose(fr["transform_matrix"], f"frame {k} ({fr['file_path']})", where))
        name = _image_name(src, tname, str(fr["file_path"]))
        if name is None:
            raise InputError(where, f"frame {k}: image {fr['file_path']!r} is not in the {'zip' if src.zip else 'folder'}",
                             "put every listed image beside transforms.json (paths relative to it)")
        names.append(name)
    # headers only: sizes before decoding
    sizes = []
    for n in names:
        try:
            with Image.open(io.BytesIO(src.read(n))) as im:
                sizes.append((im.size, im.mode))
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds
            raise InputError(f"{path.name}:{n}" if src.zip else n, f"not a readable image ({e})", "use PNG or JPEG") from None
    (w0, h0), _ = sizes[0]
    if any(s != (w0, h0) for s, _ in sizes):
        raise InputError(where, "images differ in size", "give all views at one resolution")
    if w0 * h0 > MAX_IMAGE_PIXELS or w0 * h0 * len(names) > MAX_TOTAL_PIXELS:
        raise InputError(where, f"{len(names)} images of {w0}x{h0} exceed the pixel cap", "downscale the images")
    w_meta, h_meta = _num(meta, "w", where, w0), _num(meta, "h", where, h0)
    if not (w_meta > 0 and h_meta > 0 and 1 / 64 <= w0 / w_meta <= 64 and 1 / 64 <= h0 / h_meta <= 64):
        raise InputError(where, f"w x h = {w_meta:g} x {h_meta:g} does not describe the {w0} x {h0} images",
                         "give the width and height the intrinsics refer to (or leave w and h out)")
    sx, sy = w0 / w_meta, h0 / h_meta  # images stored smaller than the intrinsics say
    fx = _num(meta, "fl_x", where)
    if fx is None:
        ax = _num(meta, "camera_angle_x", where)
        if ax is None or not 0 < ax < math.pi:
            raise InputError(where, "no focal length (fl_x) and no valid camera_angle_x", "give fl_x or camera_angle_x (radians)")
        fx = 0.5 * w_meta / math.tan(0.5 * ax)
    fy = _num(meta, "fl_y", where, fx)
    if not (fx > 0 and fy > 0):
        raise InputError(where, f"focal length fl_x = {fx:g}, fl_y = {fy:g}: not positive", "give focal lengths in pixels, > 0")
    cx, cy = _num(meta, "cx", where, w_meta / 2), _num(meta, "cy", where, h_meta / 2)
    dist = tuple(_num(meta, k, where, 0.0) for k in ("k1", "k2", "p1", "p2"))
    white = any(m in ("RGBA", "LA", "PA") for _, m in sizes)
    w, h = w0 // downscale, h0 // downscale
    imgs = np.empty((len(names), h, w, 3), dtype=np.float32)
    for i, n in enumerate(names):
        with Image.open(io.BytesIO(src.read(n))) as im:
            im = im.convert("RGBA")
            if downscale > 1:
                im = im.resize((w, h), Image.Resampling.BOX)
            a = np.asarray(im, dtype=np.float32) / 255.0
        imgs[i] = a[..., :3] * a[..., 3:] + (1.0 - a[..., 3:])  # on white where transparent
    f = 1.0 / downscale
    cams = [Camera(p, fx * sx * f, fy * sy * f, cx * sx * f, cy * sy * f, w, h, dist) for p in poses]  # type: ignore[arg-type]
    return PosedImages(imgs, cams, names, white, str(path))
