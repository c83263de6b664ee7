"""Reading medical images into channel-first float32 arrays in physical units.

Every reader returns ``(array, meta)``: ``array`` is ``[C, H, W]`` for a 2-D image or
``[C, D, H, W]`` for a volume (D = slice axis), ``meta`` a plain dict (spacing in mm ordered like
the array's spatial axes, modality, source file, ...). CT values come out in Hounsfield units
(rescale slope/intercept applied, including enhanced multi-frame CT where the rescale lives in the
functional groups); MONOCHROME1 images are inverted so that larger always means brighter.

Broken input raises :class:`InputError` naming the file, the problem and a fix, instead
of a bare pydicom/nibabel/PIL error deep inside a data loader worker. Resources are guarded before
decoding: DICOM rows x columns x frames and NIfTI dimensions are read from the header and capped
(``max_voxels``), NIfTI is read slice by slice (a 1 MB ``.nii.gz`` can inflate to gigabytes), PNG/JPEG
pixel counts are capped from the header; NaN or infinite values are refused.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from maskworks.core.io.errors import InputError
from maskworks.core.io.guards import (
    MAX_PIXELS,
    MAX_VOXELS,
    WIDE_MODES,
    check_pixel_count,
    describe_error,
    open_image,
    png_sbit,
    require_finite,
    significant_bits,
)

PathLike = str | os.PathLike[str]
Meta = dict[str, Any]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# ----------------------------------------------------------------------------------------- DICOM

def _is_dicom(path: Path) -> bool:
    """Part-10 files carry 'DICM' after a 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _is_raw_dicom(path: Path) -> bool:
    """A DICOM data set written without the 128-byte preamble and 'DICM' (older exports, some PACS): it starts
    with a little-endian element of group 0002 (file meta) or 0008 (identification), followed by a two-letter
    VR (explicit VR) or a 4-byte length shorter than the file (implicit VR)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        size = path.stat().st_size
    except OSError:
        return False
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    if head[4:6].isalpha() and head[4:6].isupper():
        return True
    return int.from_bytes(head[4:8], "little") < min(size, 1 << 16)


def looks_like_dicom(path: str | os.PathLike[str]) -> bool:
    """With or without the 128-byte preamble."""
    path = Path(path)
    return _is_dicom(path) or _is_raw_dicom(path)


def _dcmread(path: Path, force: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if not path.is_file():
        raise InputError(path, "file not found", "Check the path (a series is a folder: "
                                "use read_dicom_series or load_medical_image on the folder)")
    force = force or (not _is_dicom(path) and _is_raw_dicom(path))
    try:
        # pixel data is read only when decoded, after the header's size was checked
        ds = pydicom.dcmread(path, force=force, defer_size="1 MB")
    except InvalidDicomError as exc:
        raise InputError(path, f"not a DICOM Part-10 file ({str(exc).replace(str(path), path.name)})",
                                "Check that it is a DICOM file; files without the 128-byte preamble "
                                "must start with a group 0002 or 0008 element") from exc
    except Exception as exc:  # pydicom raises EOFError, struct.error, OSError... on broken files
        raise InputError(path, f"truncated or corrupt DICOM header ({describe_error(exc, path)})",
                                "Re-download or re-export the file; a partial copy cannot be read") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(path, f"DICOM file has no pixel data: it is truncated (ends after "
                                f"{path.stat().st_size} bytes) or not an image (report, SR, DICOMDIR)",
                                "Re-download or re-export the file, or pass an image (CT, MR, CR, DX ...)")
    if "TransferSyntaxUID" not in ds.file_meta:  # a bare data set: its encoding is what pydicom found
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _check_dicom_size(ds, path: Path, max_voxels: int) -> None:
    """Rows x Columns x frames x samples from the header, before any pixel is decoded."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"unreadable image size in the DICOM header ({exc})", "Re-export the file") from exc
    check_pixel_count(path, (rows, cols), MAX_PIXELS, "DICOM frame")
    check_pixel_count(path, (frames, rows, cols, samples) if samples > 1 else (frames, rows, cols), max_voxels,
                      "DICOM image")


def _pixels(ds, path: Path) -> np.ndarray:
    try:
        arr = ds.pixel_array
    except Exception as exc:
        msg = str(exc)
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", str(ts))
        if "plugin" in msg.lower() or "install" in msg.lower():
            fix = (f"Install a decoder for {ts_name}: pip install pylibjpeg pylibjpeg-openjpeg "
                   "pylibjpeg-libjpeg (or maskworks[medical])")
        else:
            fix = "The pixel data is truncated or corrupt: re-download or re-export the file"
        raise InputError(path, f"cannot decode pixel data ({ts_name}): {describe_error(exc, path)}",
                                fix) from exc
    # big-endian syntaxes decode to '>u2'/'>i2': make them native so torch can take them
    return np.asarray(arr).astype(np.float32)


def _rescale_item(item) -> tuple[float, float] | None:
    if item is None:
        return None
    if "RescaleSlope" in item or "RescaleIntercept" in item:
        return float(item.get("RescaleSlope", 1.0) or 1.0), float(item.get("RescaleIntercept", 0.0) or 0.0)
    return None


def _fg_item(group, keyword: str):
    """First item of ``keyword`` inside a functional-group item, or None."""
    if group is None or keyword not in group or len(group[keyword].value) == 0:
        return None
    return group[keyword].value[0]


def rescale_per_frame(ds, n_frames: int) -> list[tuple[float, float]]:
    """Modality LUT (slope, intercept) per frame.

    Classic images keep it at the top level; enhanced multi-frame objects (enhanced CT/MR) put it in
    the Pixel Value Transformation Sequence of the Per-Frame (wins) or Shared Functional Groups.
    Without any of them the identity (1, 0) is used.
    """
    top = _rescale_item(ds)
    if top is not None:
        return [top] * n_frames
    shared = None
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        shared = _rescale_item(_fg_item(ds.SharedFunctionalGroupsSequence[0], "PixelValueTransformationSequence"))
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence", []) or [])
    out = []
    for i in range(n_frames):
        own = _rescale_item(_fg_item(per_frame[i], "PixelValueTransformationSequence")) if i < len(per_frame) else None
        out.append(own or shared or (1.0, 0.0))
    return out


def _stored_range(ds) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -float(2 ** (bits - 1)), float(2 ** (bits - 1) - 1)
    return 0.0, float(2 ** bits - 1)


def _first(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _spacing(ds) -> tuple[float, float] | None:
    ps = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if ps is None and "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        measures = _fg_item(ds.SharedFunctionalGroupsSequence[0], "PixelMeasuresSequence")
        ps = measures.get("PixelSpacing") if measures is not None else None
    if ps is None or len(ps) != 2 or min(float(v) for v in ps) <= 0:  # some CR exports write zeros
        return None
    return float(ps[0]), float(ps[1])


def read_dicom(path: PathLike, *, invert_monochrome1: bool = True, force: bool = False,
               max_voxels: int = MAX_VOXELS) -> tuple[np.ndarray, Meta]:
    """One DICOM file -> ``[C, H, W]`` (single frame) or ``[C, F, H, W]`` (multi-frame), float32.

    Grayscale values are modality values (Hounsfield units for CT). MONOCHROME1 (white = low, as in
    many CR/DX radiographs) is inverted within the stored bit range, mapped through the rescale:
    ``out = lo + hi - value`` with ``[lo, hi]`` the rescaled ``BitsStored`` range, so a 15-bit
    unsigned CR becomes ``32767 - value``. Colour images (SamplesPerPixel 3) come out as 3 channels,
    unrescaled. Compressed syntaxes are decoded by pydicom's plugins (JPEG 2000 via pylibjpeg).
    Files without the 128-byte preamble are read too. The header's Rows x Columns x NumberOfFrames is
    checked against ``max_voxels`` before decoding; NaN or infinite values (a NaN RescaleSlope, float
    pixel data) are refused.
    """
    path = Path(path)
    ds = _dcmread(path, force=force)
    _check_dicom_size(ds, path, max_voxels)
    arr = _pixels(ds, path)
    samples = int(ds.get("SamplesPerPixel", 1))
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    meta: Meta = {
        "filename": str(path), "format": "dicom", "modality": str(ds.get("Modality", "")),
        "photometric": photometric, "frames": n_frames, "transfer_syntax": str(ds.file_meta.TransferSyntaxUID.name)
        if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else "",
        "window_center": _first(ds.get("WindowCenter")), "window_width": _first(ds.get("WindowWidth")),
        "instance_number": int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
        "image_position": [float(v) for v in ds.ImagePositionPatient] if ds.get("ImagePositionPatient") else None,
        "image_orientation": [float(v) for v in ds.ImageOrientationPatient] if ds.get("ImageOrientationPatient") else None,
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "body_part": str(ds.get("BodyPartExamined", "") or "").strip(),
        "view_position": str(ds.get("ViewPosition", "") or "").strip(),
    }
    if samples > 1:
        # pydicom gives [..., H, W, S]: move samples to the channel axis
        arr = np.moveaxis(arr, -1, 0)
        meta["spacing"] = _spacing(ds)
        return np.ascontiguousarray(require_finite(path, arr)), meta
    if n_frames == 1 and arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3 or arr.shape[0] != n_frames:
        raise InputError(path, f"pixel data of shape {arr.shape} does not match NumberOfFrames={n_frames}",
                                "The file is inconsistent; re-export it")
    rescale = rescale_per_frame(ds, n_frames)
    if not np.isfinite(np.asarray(rescale, dtype=np.float64)).all():
        raise InputError(path, f"RescaleSlope/RescaleIntercept are not finite ({rescale[0]})",
                         "Fix the header's rescale (slope 1, intercept 0 for unscaled data) or re-export the file")
    require_finite(path, arr)
    slopes = np.array([s for s, _ in rescale], dtype=np.float32)[:, None, None]
    intercepts = np.array([b for _, b in rescale], dtype=np.float32)[:, None, None]
    arr = arr * slopes + intercepts
    meta["rescale"] = rescale[0] if len(set(rescale)) == 1 else rescale
    if photometric == "MONOCHROME1" and invert_monochrome1:
        lo, hi = _stored_range(ds)
        slope, intercept = rescale[0]
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        arr = (lo + hi) - arr
        meta["inverted"] = True
        if meta["window_center"] is not None:  # the header window refers to uninverted values
            meta["window_center"] = lo + hi - meta["window_center"]
    else:
        meta["inverted"] = False
    meta["spacing"] = _spacing(ds)
    # [F, H, W] -> [1, H, W] or [1, F, H, W]
    out = arr[0][None] if n_frames == 1 else arr[None]
    return np.ascontiguousarray(require_finite(path, out, "rescaled pixel data"), dtype=np.float32), meta


def _slice_sort_key(meta: Meta) -> float | None:
    pos, ori = meta.get("image_position"), meta.get("image_orientation")
    if pos is None or ori is None or len(ori) != 6:
        return None
    normal = np.cross(np.asarray(ori[:3]), np.asarray(ori[3:]))
    return float(np.dot(normal, np.asarray(pos)))


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.upper() != "DICOMDIR" and looks_like_dicom(p))


def read_dicom_series(folder: PathLike, *, series_uid: str | None = None,
                      invert_monochrome1: bool = True) -> tuple[np.ndarray, Meta]:
    """A folder of single-frame DICOM slices -> volume ``[1, D, H, W]`` in slice order.

    Slices are sorted by their position along the slice normal (ImagePositionPatient projected on
    the cross product of ImageOrientationPatient), falling back to InstanceNumber, then file name.
    ``meta['spacing']`` is ``(dz, dy, dx)`` with ``dz`` the median distance between positions.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder", "Pass the folder that holds the series' slices")
    files = _candidate_files(folder)
    if not files:
        raise InputError(folder, "no DICOM files in the folder",
                                "Point to the folder that holds the .dcm slices of one series")
    slices = [read_dicom(f, invert_monochrome1=invert_monochrome1) for f in files]
    uids = sorted({m["series_uid"] for _, m in slices})
    if series_uid is not None:
        slices = [(a, m) for a, m in slices if m["series_uid"] == series_uid]
        if not slices:
            raise InputError(folder, f"no slice of series {series_uid!r}", f"Series present: {uids}")
    elif len(uids) > 1:
        raise InputError(folder, f"the folder mixes {len(uids)} series {uids}",
                                "Pass series_uid=... to pick one, or split the folder")
    if any(a.ndim != 3 for a, _ in slices):
        raise InputError(folder, "the folder holds multi-frame files",
                                "Read multi-frame files one by one with read_dicom")
    shapes = {a.shape for a, _ in slices}
    if len(shapes) > 1:
        raise InputError(folder, f"slices have different shapes {sorted(shapes)}",
                                "Keep one series per folder (localizers often differ in size)")
    keys = [_slice_sort_key(m) for _, m in slices]
    if all(k is not None for k in keys):
        order = sorted(range(len(slices)), key=lambda i: keys[i])
        pos = np.asarray(sorted(keys))
        dz = float(np.median(np.diff(pos))) if len(pos) > 1 else None
    else:
        inst = [m.get("instance_number") for _, m in slices]
        order = sorted(range(len(slices)), key=lambda i: (inst[i] is None, inst[i] or 0, i))
        dz = None
    volume = np.stack([slices[i][0][0] for i in order])[None]
    meta = dict(slices[order[0]][1])
    meta.update(format="dicom_series", filename=str(folder), files=[str(files[i]) for i in order],
                frames=len(order))
    in_plane = meta.get("spacing")
    meta["spacing"] = (dz, *in_plane) if in_plane is not None else None
    return np.ascontiguousarray(volume, dtype=np.float32), meta


# ----------------------------------------------------------------------------------- NIfTI / PNG

#: slices sampled (evenly, in file order) for a NIfTI volume's intensity percentiles
PERCENTILE_SLICES = 16


def _nifti_open(path: Path, max_voxels: int):
    """nibabel's image (header only; the data stay on disk) and its shape as ``(i, j, k, t)``, checked."""
    import nibabel as nib

    if not path.is_file():
        raise InputError(path, "file not found", "Check the path")
    try:
        img = nib.load(str(path), keep_file_open=True)  # one opener: slices read in order inflate a .gz once
        shape = tuple(int(d) for d in img.shape)
    except Exception as exc:  # ImageFileError, EOFError, zlib.error, OSError ...
        raise InputError(path, f"truncated or corrupt NIfTI ({describe_error(exc, path)})",
                                "Re-download or re-export the file (.nii or .nii.gz)") from exc
    if not 2 <= len(shape) <= 4:
        raise InputError(path, f"unsupported NIfTI shape {shape}", "Use 2-, 3- or 4-D images")
    shape = shape + (1,) * (4 - len(shape))
    check_pixel_count(path, shape[:2], MAX_PIXELS, "NIfTI slice")
    check_pixel_count(path, shape, max_voxels, "NIfTI volume")
    return img, shape


def nifti_shape(path: PathLike, max_voxels: int = MAX_VOXELS) -> tuple[int, int, int, int]:
    """``(i, j, k, t)`` from the header alone (checked against ``max_voxels``); no voxel is read."""
    return _nifti_open(Path(path), max_voxels)[1]


def _nifti_slab(img, path: Path, k0: int, k1: int, ndim: int) -> np.ndarray:
    """Slices ``k0:k1`` as ``[t, k, j, i]`` float32 (scaled by nibabel), read from disk now."""
    try:
        index = (slice(None), slice(None), slice(k0, k1)) if ndim >= 3 else (slice(None), slice(None))
        a = np.asarray(img.dataobj[index], dtype=np.float32)
    except Exception as exc:  # EOFError, zlib.error, OSError on truncated data
        raise InputError(path, f"truncated or corrupt NIfTI ({describe_error(exc, path)})",
                                "Re-download or re-export the file (.nii or .nii.gz)") from exc
    a = a.reshape(a.shape[0], a.shape[1], k1 - k0, -1)  # (i, j, k, t)
    require_finite(path, a, f"NIfTI slices {k0}..{k1 - 1}", "re-export the volume without NaN/inf (e.g. mask "
                                                            "them to 0); scores of such data mean nothing")
    return np.transpose(a, (3, 2, 1, 0))


def read_nifti(path: PathLike, *, slices: Sequence[int] | None = None,
               max_voxels: int = MAX_VOXELS) -> tuple[np.ndarray, Meta]:
    """NIfTI -> ``[C, D, H, W]`` float32 (scl_slope/inter applied by nibabel).

    NIfTI stores ``(i, j, k[, t])``; we return ``[t, k, j, i]`` so that axis 1 is the slice axis as
    for DICOM series. No reorientation is done: ``meta['affine']`` is nibabel's voxel-to-world
    affine for the original ``(i, j, k)`` order.

    The header's dimensions are checked against ``max_voxels`` before any voxel is read, and the
    data are read slice by slice (nibabel's array proxy), never as a whole float64 copy. ``slices``
    (indices along ``k``) reads only those slices: ``D = len(slices)``, ``meta['frames']`` stays the
    volume's depth. ``meta['percentiles']`` holds the 0.5 and 99.5 % intensity percentiles of up to
    16 evenly spaced slices, the same whichever slices were asked for, so windows of slices compare.
    """
    path = Path(path)
    img, (ni, nj, nk, nt) = _nifti_open(path, max_voxels)
    ndim = len(img.shape)
    wanted = list(range(nk)) if slices is None else sorted({int(np.clip(k, 0, nk - 1)) for k in slices})
    sample = sorted(set(np.linspace(0, nk - 1, min(nk, PERCENTILE_SLICES)).round().astype(int).tolist()))
    out = np.empty((nt, len(wanted), nj, ni), dtype=np.float32)
    pos = {k: n for n, k in enumerate(wanted)}
    step = max(1, int(2 ** 24 // max(ni * nj * nt, 1)))  # ~64 MB of float32 per read when all slices are wanted
    values = []
    stride = max(1, int(np.sqrt(ni * nj * nt / 65536)))  # ~64 k values per sampled slice for the percentiles
    try:
        for k in sorted(set(wanted) | set(sample)) if slices is not None else range(0, nk, step):
            k1 = min(k + step, nk) if slices is None else k + 1
            slab = _nifti_slab(img, path, k, k1, ndim)
            for kk in range(k, k1):
                if kk in pos:
                    out[:, pos[kk]] = slab[:, kk - k]
                if kk in sample:
                    values.append(slab[:, kk - k, ::stride, ::stride].ravel())
    finally:
        opener = getattr(img.dataobj, "_opener", None)
        if opener is not None and not opener.closed:
            opener.close_if_mine()
    lo, hi = np.percentile(np.concatenate(values), [0.5, 99.5]) if values else (0.0, 0.0)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    zooms = zooms + (1.0,) * (3 - len(zooms))
    meta: Meta = {"filename": str(path), "format": "nifti", "modality": "", "affine": np.asarray(img.affine),
                  "spacing": (zooms[2], zooms[1], zooms[0]), "frames": nk, "shape": (nt, nk, nj, ni),
                  "slices": wanted, "percentiles": (float(lo), float(hi))}
    return out, meta


def read_image(path: PathLike, *, collapse_gray_rgb: bool = True,
               max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, Meta]:
    """PNG/JPEG -> ``[1, H, W]`` for grayscale (8- or 16-bit), ``[3, H, W]`` for colour, float32.

    Grayscale stays one channel; an RGB file whose three channels are equal (a grayscale X-ray
    saved as RGB) is collapsed to one channel unless ``collapse_gray_rgb=False``. Alpha is dropped.
    The pixel count is checked from the header before decoding (``max_pixels``). ``meta['bit_depth']``
    is the bits that hold data: 8, or for 16-bit files the ``sBIT`` chunk or the smallest of 10/12/14/16
    bits that holds the maximum (a 12-bit radiograph saved as a 16-bit PNG has values up to 4095).
    """
    path = Path(path)
    bits = 8
    with open_image(path, max_pixels) as img:
        img.load()
        mode = img.mode
        if mode in WIDE_MODES:
            arr = require_finite(path, np.asarray(img).astype(np.float32))[None]
            sbit = png_sbit(path)
            bits = significant_bits(float(arr.max(initial=0.0)), WIDE_MODES[mode], sbit[0] if sbit else None)
        elif mode == "L":
            arr = np.asarray(img).astype(np.float32)[None]
        elif mode == "LA":
            arr = np.asarray(img.convert("L")).astype(np.float32)[None]
        else:
            arr = np.moveaxis(np.asarray(img.convert("RGB")).astype(np.float32), -1, 0)
            if collapse_gray_rgb and np.array_equal(arr[0], arr[1]) and np.array_equal(arr[0], arr[2]):
                arr = arr[:1]
    return np.ascontiguousarray(arr), {"filename": str(path), "format": "image", "mode": mode, "bit_depth": bits,
                                       "modality": "", "spacing": None, "frames": 1}


def _has_suffix(path: Path, suffixes: Iterable[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def load_medical_image(path: PathLike, *, invert_monochrome1: bool = True) -> tuple[np.ndarray, Meta]:
    """Read any supported input: a DICOM series folder, a DICOM file, NIfTI, PNG or JPEG.

    DICOM is recognised by its 'DICM' prefix, or by its first element when written without the
    128-byte preamble, whatever the extension (many PACS exports have none).
    """
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path, invert_monochrome1=invert_monochrome1)
    if not path.exists():
        raise InputError(path, "file not found", "Check the path")
    if _has_suffix(path, NIFTI_SUFFIXES):
        return read_nifti(path)
    if _has_suffix(path, IMAGE_SUFFIXES):
        return read_image(path)
    if looks_like_dicom(path) or _has_suffix(path, (".dcm", ".dicom", ".ima")):
        return read_dicom(path, invert_monochrome1=invert_monochrome1)
    raise InputError(path, "unknown format (not DICOM, not .nii/.nii.gz/.png/.jpg)",
                            "Pass a DICOM file or series folder, a NIfTI volume or a PNG/JPEG image")
