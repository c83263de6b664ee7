"""Guards every image reader applies before and after decoding: pixel caps read from the header, real bit
depth of 16-bit files, and no NaN or infinity in what is handed on.

A 1 MB file can claim a billion pixels (a decompression bomb) and a 16-bit PNG often holds 10-, 12- or
14-bit data: the header is checked before any pixel is decoded, and the scale comes from the data, so
the PNG/JPEG reader of the image MAE and the medical readers refuse and scale the same way.
"""
from __future__ import annotations

import math
import re
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from maskworks.core.io.errors import InputError

#: most pixels a 2-D image may have (a 7,000 x 7,000 radiograph; PIL's own bomb limit is 179 M)
MAX_PIXELS = 50_000_000
#: most voxels a volume may have (512 x 512 x 512 = 134 M, 512 MB as float32)
MAX_VOXELS = 512 * 512 * 512


def describe_error(exc: BaseException, path: str | Path) -> str:
    """``Type: message`` with the file's folder removed (messages reach users; server paths must not)."""
    path = Path(path)
    return f"{type(exc).__name__}: {str(exc).replace(str(path), path.name)}"


def check_pixel_count(source: object, shape: tuple[int, ...], limit: int, what: str = "image") -> None:
    """Refuse ``shape`` (from a header, before decoding) when it holds more than ``limit`` elements or a
    non-positive dimension."""
    dims = tuple(int(d) for d in shape)
    if any(d <= 0 for d in dims):
        raise InputError(source, f"the header says the {what} is {' x '.join(map(str, dims))}, with an empty "
                                 "dimension", "re-export the file; it holds no pixels")
    n = math.prod(dims)
    if n > limit:
        raise too_large(source, f"the {what} is {' x '.join(map(str, dims))} = {n:,} values", limit)


def too_large(source: object, claim: str, limit: int) -> InputError:
    """The error for a header that claims more than ``limit`` values (``claim``: what it claims)."""
    return InputError(source, f"the header says {claim}, above the {limit:,} this reader decodes (a file this "
                              "small claiming that much is often a decompression bomb)",
                      "crop or downsample it first (a chest radiograph needs no more than a few megapixels), or pass "
                      "a larger cap (max_pixels / max_voxels) if it is real")


def require_finite(source: object, array: np.ndarray, what: str = "pixel data",
                   fix: str = "re-export the image; scores of such data mean nothing") -> np.ndarray:
    """``array`` unchanged, or :class:`InputError` saying how many values are NaN or infinite."""
    a = np.asarray(array)
    if a.dtype.kind in "fc":
        bad = ~np.isfinite(a)
        if bad.any():
            n_nan = int(np.isnan(a).sum())
            raise InputError(source, f"{what} holds {n_nan:,} NaN and {int(bad.sum()) - n_nan:,} infinite values "
                                     f"(of {a.size:,})", fix)
    return array


# ------------------------------------------------------------------------------ PNG / JPEG

def png_sbit(path: str | Path, limit: int = 1 << 20) -> tuple[int, ...] | None:
    """The PNG ``sBIT`` chunk (significant bits per channel) or None; only the chunks before the image data
    are read (Pillow does not expose it)."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            read = 8
            while read < limit:
                head = f.read(8)
                if len(head) < 8:
                    return None
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND"):
                    return None
                if kind == b"sBIT":
                    return tuple(f.read(min(length, 4)))
                f.seek(length + 4, 1)  # data + CRC
                read += length + 12
    except OSError:
        return None
    return None


def significant_bits(max_value: float, stored_bits: int = 16, sbit: int | None = None) -> int:
    """Bits that really hold data in a ``stored_bits`` image: 12-bit radiographs are often written as 16-bit
    PNGs with values 0..4095. With an ``sBIT`` chunk whose range holds the data, its value; otherwise the
    smallest of 8, 10, 12, 14 and ``stored_bits`` whose range holds ``max_value``. Data scaled up to the
    full range (as the PNG standard asks of files with ``sBIT``) keep ``stored_bits``."""
    if stored_bits <= 8:
        return stored_bits
    if sbit and 0 < sbit < stored_bits and max_value <= 2 ** sbit - 1:
        return int(sbit)
    for bits in (8, 10, 12, 14):
        if bits < stored_bits and max_value <= 2 ** bits - 1:
            return bits
    return stored_bits


#: Pillow modes holding more than 8 bits per sample, and how many
WIDE_MODES = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}


@contextmanager
def open_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Iterator["object"]:
    """``PIL.Image.open`` with the pixel count checked from the header *before* anything is decoded, and
    Pillow's errors (including its own bomb error) turned into :class:`InputError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found", "check the path")
    try:
        with Image.open(path) as img:
            w, h = img.size
            check_pixel_count(path, (h, w), max_pixels)
            yield img
    except InputError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own check (in open, above 179 M pixels) came first
        found = re.search(r"\((\d+) pixels\)", str(exc))
        claim = f"the image has {int(found.group(1)):,} pixels" if found else "the image has too many pixels"
        raise too_large(path, claim, max_pixels) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(path, f"not a readable image (truncated or corrupt image: {describe_error(exc, path)})",
                         "re-download or re-export the PNG/JPEG") from exc
