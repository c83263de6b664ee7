"""Reading medical images into channel-first float32 arrays in physical units.

Every reader returns ``(array, meta)``: ``array`` is ``[C, H, W]`` for a 2-D image or
``[C, D, H, W]`` for a volume (D = slice axis), ``meta`` a plain dict (spacing in mm ordered like
the array's spatial axes, modality, source file, ...). CT values come out in Hounsfield units
(rescale slope/intercept applied, including enhanced multi-frame CT where the rescale lives in the
functional groups); MONOCHROME1 images are inverted so that larger always means brighter.

Broken input raises :class:`InputError` naming the file, the problem and a fix, instead
of a bare pydicom/nibabel/PIL error deep inside a data loader worker.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from maskworks.core.io.errors import InputError

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


def _dcmread(path: Path, force: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise InputError(path, "file not found", "Check the path (a series is a folder: "
                                "use read_dicom_series or load_medical_image on the folder)")
    try:
        ds = pydicom.dcmread(path, force=force)
    except InvalidDicomError as exc:
        raise InputError(path, f"not a DICOM Part-10 file ({exc})",
                                "Check that it is a DICOM file; files without the 128-byte preamble "
                                "and 'DICM' prefix can be read with force=True") from exc
    except Exception as exc:  # pydicom raises EOFError, struct.error, OSError... on broken files
        raise InputError(path, f"truncated or corrupt DICOM header ({type(exc).__name__}: {exc})",
                                "Re-download or re-export the file; a partial copy cannot be read") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(path, f"DICOM file has no pixel data: it is truncated (ends after "
                                f"{path.stat().st_size} bytes) or not an image (report, SR, DICOMDIR)",
                                "Re-download or re-export the file, or pass an image (CT, MR, CR, DX ...)")
    return ds


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
        raise InputError(path, f"cannot decode pixel data ({ts_name}): {type(exc).__name__}: {msg}",
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


def read_dicom(path: PathLike, *, invert_monochrome1: bool = True, force: bool = False) -> tuple[np.ndarray, Meta]:
    """One DICOM file -> ``[C, H, W]`` (single frame) or ``[C, F, H, W]`` (multi-frame), float32.

    Grayscale values are modality values (Hounsfield units for CT). MONOCHROME1 (white = low, as in
    many CR/DX radiographs) is inverted within the stored bit range, mapped through the rescale:
    ``out = lo + hi - value`` with ``[lo, hi]`` the rescaled ``BitsStored`` range, so a 15-bit
    unsigned CR becomes ``32767 - value``. Colour images (SamplesPerPixel 3) come out as 3 channels,
    unrescaled. Compressed syntaxes are decoded by pydicom's plugins (JPEG 2000 via pylibjpeg).
    """
    path = Path(path)
    ds = _dcmread(path, force=force)
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
    }
    if samples > 1:
        # pydicom gives [..., H, W, S]: move samples to the channel axis
        arr = np.moveaxis(arr, -1, 0)
        meta["spacing"] = _spacing(ds)
        return np.ascontiguousarray(arr), meta
    if n_frames == 1 and arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3 or arr.shape[0] != n_frames:
        raise InputError(path, f"pixel data of shape {arr.shape} does not match NumberOfFrames={n_frames}",
                                "The file is inconsistent; re-export it")
    rescale = rescale_per_frame(ds, n_frames)
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
    return np.ascontiguousarray(out, dtype=np.float32), meta


def _slice_sort_key(meta: Meta) -> float | None:
    pos, ori = meta.get("image_position"), meta.get("image_orientation")
    if pos is None or ori is None or len(ori) != 6:
        return None
    normal = np.cross(np.asarray(ori[:3]), np.asarray(ori[3:]))
    return float(np.dot(normal, np.asarray(pos)))


def _candidate_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.upper() != "DICOMDIR" and _is_dicom(p))


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
        raise InputError(folder, "no DICOM files (with the 'DICM' prefix) in the folder",
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

def read_nifti(path: PathLike) -> tuple[np.ndarray, Meta]:
    """NIfTI -> ``[C, D, H, W]`` float32 (scl_slope/inter applied by nibabel).

    NIfTI stores ``(i, j, k[, t])``; we return ``[t, k, j, i]`` so that axis 1 is the slice axis as
    for DICOM series. No reorientation is done: ``meta['affine']`` is nibabel's voxel-to-world
    affine for the original ``(i, j, k)`` order.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found", "Check the path")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # ImageFileError, EOFError, zlib.error, OSError ...
        raise InputError(path, f"truncated or corrupt NIfTI ({type(exc).__name__}: {exc})",
                                "Re-download or re-export the file (.nii or .nii.gz)") from exc
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise InputError(path, f"unsupported NIfTI shape {data.shape}", "Use 2-, 3- or 4-D images")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    zooms = zooms + (1.0,) * (3 - len(zooms))
    out = np.ascontiguousarray(np.transpose(data, (3, 2, 1, 0)))
    meta: Meta = {"filename": str(path), "format": "nifti", "modality": "", "affine": np.asarray(img.affine),
                  "spacing": (zooms[2], zooms[1], zooms[0]), "frames": out.shape[1]}
    return out, meta


def read_image(path: PathLike, *, collapse_gray_rgb: bool = True) -> tuple[np.ndarray, Meta]:
    """PNG/JPEG -> ``[1, H, W]`` for grayscale (8- or 16-bit), ``[3, H, W]`` for colour, float32.

    Grayscale stays one channel; an RGB file whose three channels are equal (a grayscale X-ray
    saved as RGB) is collapsed to one channel unless ``collapse_gray_rgb=False``. Alpha is dropped.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found", "Check the path")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(img).astype(np.float32)[None]
            elif mode == "LA":
                arr = np.asarray(img.convert("L")).astype(np.float32)[None]
            else:
                arr = np.moveaxis(np.asarray(img.convert("RGB")).astype(np.float32), -1, 0)
                if collapse_gray_rgb and np.array_equal(arr[0], arr[1]) and np.array_equal(arr[0], arr[2]):
                    arr = arr[:1]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"truncated or corrupt image ({type(exc).__name__}: {exc})",
                                "Re-download or re-export the PNG/JPEG") from exc
    return np.ascontiguousarray(arr), {"filename": str(path), "format": "image", "mode": mode,
                                       "modality": "", "spacing": None, "frames": 1}


def _has_suffix(path: Path, suffixes: Iterable[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def load_medical_image(path: PathLike, *, invert_monochrome1: bool = True) -> tuple[np.ndarray, Meta]:
    """Read any supported input: a DICOM series folder, a DICOM file, NIfTI, PNG or JPEG.

    DICOM is recognised by its 'DICM' prefix whatever the extension (many PACS exports have none).
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
    if _is_dicom(path) or _has_suffix(path, (".dcm", ".dicom", ".ima")):
        return read_dicom(path, invert_monochrome1=invert_monochrome1)
    raise InputError(path, "unknown format (no 'DICM' prefix, not .nii/.nii.gz/.png/.jpg)",
                            "Pass a DICOM file or series folder, a NIfTI volume or a PNG/JPEG image")
