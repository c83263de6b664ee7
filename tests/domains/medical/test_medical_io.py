"""Medical I/O on the shipped real files: HU values, MONOCHROME1, multi-frame, big-endian, JPEG 2000,
series sorting, NIfTI axes, PNG channels, and clear errors on broken files."""
from __future__ import annotations

import copy
import csv
import os

import numpy as np
import pydicom
import pytest
from PIL import Image

from maskworks.data import data_path
from maskworks.domains.medical.imaging.io import (
    InputError,
    load_medical_image,
    read_dicom,
    read_dicom_series,
    read_image,
    read_nifti,
)

MANIFEST = list(csv.DictReader(open(data_path("medical", "dicom", "manifest.csv"), newline="")))
NIFTI = data_path("medical", "nifti", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
# manifest.csv lists eCT_Supplemental's *stored* range: its rescale (intercept -1024) sits only in the
# functional groups, which we apply. RG1 is a CR: its "HU" range is the raw (uninverted) one.
INTERCEPT_OUTSIDE_MANIFEST = {"eCT_Supplemental.dcm": -1024.0}


def test_manifest_lists_every_shipped_dicom() -> None:
    shipped = sorted(p.name for p in data_path("medical", "dicom").glob("*.dcm"))
    assert shipped == sorted(r["file"] for r in MANIFEST) and len(shipped) == 6


@pytest.mark.parametrize("row", MANIFEST, ids=[r["file"] for r in MANIFEST])
def test_dicom_hu_range_matches_manifest(row: dict[str, str]) -> None:
    arr, meta = read_dicom(data_path("medical", "dicom", row["file"]), invert_monochrome1=False)
    frames, rows, cols = int(row["frames"]), int(row["rows"]), int(row["cols"])
    assert arr.shape == ((1, rows, cols) if frames == 1 else (1, frames, rows, cols))
    assert arr.dtype == np.float32 and arr.dtype.isnative
    shift = INTERCEPT_OUTSIDE_MANIFEST.get(row["file"], 0.0)
    assert float(arr.min()) == float(row["hu_min"]) + shift
    assert float(arr.max()) == float(row["hu_max"]) + shift
    assert meta["modality"] == row["modality"]


def test_enhanced_ct_rescale_from_functional_groups() -> None:
    path = data_path("medical", "dicom", "eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    assert "RescaleIntercept" not in ds  # the point of this file
    arr, meta = read_dicom(path)
    np.testing.assert_array_equal(arr[0], ds.pixel_array.astype(np.float32) - 1024.0)
    assert meta["rescale"] == (1.0, -1024.0) and meta["frames"] == 2


def test_monochrome1_is_inverted_within_bits_stored() -> None:
    path = data_path("medical", "dicom", "RG1_UNCI.dcm")
    raw, raw_meta = read_dicom(path, invert_monochrome1=False)
    inv, meta = read_dicom(path)
    assert meta["photometric"] == "MONOCHROME1" and meta["inverted"] and not raw_meta["inverted"]
    np.testing.assert_array_equal(inv, 32767.0 - raw)  # BitsStored 15, unsigned
    assert (float(inv.min()), float(inv.max())) == (32767.0 - 26512.0, 32767.0 - 803.0)
    assert meta["window_center"] == 32767.0 - 15000.0  # header window mirrored with the pixels


def test_big_endian_and_jpeg2000_match_pydicom_values() -> None:
    for name in ("anon_apct.dcm", "explicit_VR-UN.dcm"):
        path = data_path("medical", "dicom", name)
        ds = pydicom.dcmread(path)
        arr, _ = read_dicom(path)
        expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(arr[0], expected.astype(np.float32))
    assert "Big Endian" in read_dicom(data_path("medical", "dicom", "anon_apct.dcm"))[1]["transfer_syntax"]


def _write_slice(src: pydicom.Dataset, path: os.PathLike[str], z: float | None, instance: int, value: int) -> None:
    ds = copy.deepcopy(src)
    ds.InstanceNumber = instance
    if z is None:
        del ds.ImagePositionPatient
    else:
        ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.PixelData = np.full((ds.Rows, ds.Columns), value, dtype=np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_series_folder_sorted_by_position_then_instance(tmp_path) -> None:
    src = pydicom.dcmread(data_path("medical", "dicom", "CT_small.dcm"))
    # file names and instance numbers deliberately disagree with the geometric order
    for name, z, inst, value in [("a.dcm", 10.0, 1, 300), ("b.dcm", -5.0, 3, 100), ("c", 2.5, 2, 200)]:
        _write_slice(src, tmp_path / name, z, inst, value)
    (tmp_path / "notes.txt").write_text("not dicom")
    vol, meta = read_dicom_series(tmp_path)
    assert vol.shape == (1, 3, 128, 128)
    np.testing.assert_array_equal(vol[0, :, 0, 0], np.array([100, 200, 300], np.float32) - 1024.0)
    assert meta["spacing"][0] == pytest.approx(7.5)
    by_instance = tmp_path / "noipp"
    by_instance.mkdir()
    for name, inst, value in [("x.dcm", 2, 20), ("y.dcm", 1, 10), ("z.dcm", 3, 30)]:
        _write_slice(src, by_instance / name, None, inst, value)
    vol, _ = load_medical_image(by_instance)
    np.testing.assert_array_equal(vol[0, :, 5, 5], np.array([10, 20, 30], np.float32) - 1024.0)


def test_nifti_values_and_axis_order() -> None:
    import nibabel as nib

    arr, meta = read_nifti(NIFTI)
    data = np.asarray(nib.load(str(NIFTI)).get_fdata(dtype=np.float32))  # (i, j, k)
    assert arr.shape == (1,) + data.shape[::-1] == (1, 189, 233, 197)
    assert (float(arr.min()), float(arr.max())) == (0.0, 255.0)
    for i, j, k in [(98, 116, 94), (50, 150, 20), (0, 0, 0)]:
        assert arr[0, k, j, i] == data[i, j, k]
    assert float(arr[0, 94].mean()) > 20.0  # a mid-brain axial slice is not empty
    assert meta["spacing"] == (1.0, 1.0, 1.0)


def test_png_grayscale_stays_one_channel(tmp_path) -> None:
    gray = np.arange(64 * 48, dtype=np.uint8).reshape(48, 64)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "g_rgb.png")
    colour = np.stack([gray, 255 - gray, gray // 2], -1)
    Image.fromarray(colour).save(tmp_path / "c.png")
    Image.fromarray(gray).save(tmp_path / "g.jpg", quality=95)
    g, _ = read_image(tmp_path / "g.png")
    assert g.shape == (1, 48, 64)
    np.testing.assert_array_equal(g[0], gray.astype(np.float32))
    assert read_image(tmp_path / "g_rgb.png")[0].shape == (1, 48, 64)
    c, _ = load_medical_image(tmp_path / "c.png")
    assert c.shape == (3, 48, 64) and float(c[1, 0, 0]) == 255.0
    assert load_medical_image(tmp_path / "g.jpg")[0].shape == (1, 48, 64)


@pytest.mark.parametrize("cut", [0.5, 0.6, 400 / 39206])
def test_truncated_dicom_raises_naming_the_file(tmp_path, cut: float) -> None:
    data = data_path("medical", "dicom", "CT_small.dcm").read_bytes()
    bad = tmp_path / "cut_ct.dcm"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(InputError, match="cut_ct.dcm") as info:
        load_medical_image(bad)
    assert "truncated" in str(info.value) and "re-" in str(info.value).lower()


def test_truncated_jpeg2000_and_nifti_raise(tmp_path) -> None:
    j2k = data_path("medical", "dicom", "explicit_VR-UN.dcm").read_bytes()
    (tmp_path / "j2k_cut.dcm").write_bytes(j2k[: len(j2k) // 2])
    with pytest.raises(InputError, match="j2k_cut.dcm"):
        load_medical_image(tmp_path / "j2k_cut.dcm")
    nii = NIFTI.read_bytes()
    (tmp_path / "half.nii.gz").write_bytes(nii[: len(nii) // 2])
    with pytest.raises(InputError, match=r"half\.nii\.gz.*truncated or corrupt NIfTI"):
        load_medical_image(tmp_path / "half.nii.gz")


def test_random_bytes_raise_clear_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for name, pattern in [("noise.dcm", "not a DICOM"), ("noise.png", "corrupt image"),
                          ("noise.nii.gz", "corrupt NIfTI"), ("noise.bin", "unknown format")]:
        (tmp_path / name).write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        with pytest.raises(InputError, match=pattern) as info:
            load_medical_image(tmp_path / name)
        assert name in str(info.value)
        assert isinstance(info.value, ValueError)
    with pytest.raises(InputError, match="file not found"):
        load_medical_image(tmp_path / "missing.dcm")
