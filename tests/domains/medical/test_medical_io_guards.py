"""The medical readers guard resources before decoding and refuse what cannot be scored: a NIfTI
decompression bomb, DICOM and PNG headers claiming huge images, NaN/inf values; 16-bit PNGs holding 12-bit
data are scaled by their real depth; DICOMs without the 128-byte preamble are read."""
from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin

from maskworks.core.datasets import load_image
from maskworks.core.io import InputError
from maskworks.core.io.guards import significant_bits
from maskworks.data import data_path
from maskworks.domains.medical.imaging.io import (
    load_medical_image,
    nifti_shape,
    read_dicom,
    read_image,
    read_nifti,
)

NIFTI = data_path("medical", "nifti", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
CT = data_path("medical", "dicom", "CT_small.dcm")
EXAMPLE = data_path("examples", "anomaly", "pneumonia_val_0060.png")


def write_zero_nifti_gz(path: Path, shape: tuple[int, ...], chunk: int = 16 << 20) -> Path:
    """A .nii.gz of uint8 zeros whose data are concatenated gzip members of ``chunk`` zeros each: a
    1000^3 volume (1 GB once inflated) takes under 1 MB on disk, written in well under a second."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.uint8)
    hdr["vox_offset"] = 352
    total = int(np.prod(shape))
    member = gzip.compress(b"\0" * chunk, 6)
    with open(path, "wb") as f:
        f.write(gzip.compress(hdr.binaryblock + b"\0" * 4))
        n, rest = divmod(total, chunk)
        for _ in range(n):
            f.write(member)
        if rest:
            f.write(gzip.compress(b"\0" * rest))
    return path


# ------------------------------------------------------------------------------------- NIfTI

def test_nifti_bomb_costs_neither_memory_nor_time(tmp_path):
    """A 1 MB .nii.gz claiming 1000^3 voxels (1 GB of zeros once inflated; before the guard, reading it took
    38 s and 4.8 GB before failing) is refused from its header; a 500^3 one below the cap is read one slice
    at a time. Measured in a fresh process (address space capped at 2 GB, so a regression fails, not swaps)."""
    bomb = write_zero_nifti_gz(tmp_path / "bomb.nii.gz", (1000, 1000, 1000))
    under = write_zero_nifti_gz(tmp_path / "under_cap.nii.gz", (500, 500, 500))
    assert bomb.stat().st_size < 1_100_000
    script = textwrap.dedent(f"""
        import json, resource, time
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from maskworks.core.io import InputError
        from maskworks.domains.medical.imaging.io import load_medical_image, nifti_shape, read_nifti
        out = {{}}
        t = time.perf_counter()
        try:
            load_medical_image({str(bomb)!r})
            out["bomb"] = "read"
        except InputError as e:
            out["bomb"] = str(e)
        out["bomb_s"] = time.perf_counter() - t
        t = time.perf_counter()
        d = nifti_shape({str(under)!r})[2]
        arr, meta = read_nifti({str(under)!r}, slices=[d // 2])
        out["slice_s"] = time.perf_counter() - t
        out["slice"] = [list(arr.shape), float(abs(arr).max()), meta["frames"]]
        # VmHWM, not ru_maxrss: Linux keeps the forking parent's (pytest's) ru_maxrss across exec
        out["peak_mb"] = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
        print(json.dumps(out))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert "bomb.nii.gz" in out["bomb"] and "1,000,000,000 values" in out["bomb"] and "Fix:" in out["bomb"]
    assert out["slice"] == [[1, 1, 500, 500], 0.0, 500]
    assert out["peak_mb"] < 300, out
    assert out["bomb_s"] < 5 and out["slice_s"] < 5, out


def test_nifti_slices_read_lazily_equal_the_whole_volume():
    whole, meta = read_nifti(NIFTI)
    assert nifti_shape(NIFTI) == (197, 233, 189, 1)
    part, pmeta = read_nifti(NIFTI, slices=[188, 0, 94, 500])  # sorted, clipped, deduplicated
    assert pmeta["slices"] == [0, 94, 188] and pmeta["frames"] == 189 and part.shape == (1, 3, 233, 197)
    np.testing.assert_array_equal(part[0], whole[0, [0, 94, 188]])
    # the intensity window comes from the same sampled slices whichever slices were read
    assert pmeta["percentiles"] == meta["percentiles"] == (0.0, 228.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nifti_with_nan_or_inf_is_refused(tmp_path, bad):
    vol = np.ones((8, 9, 4), np.float32)
    vol[2, 3, 1] = bad
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    with pytest.raises(InputError, match=r"bad\.nii\.gz: NIfTI slices .* (1 NaN|1 infinite)") as info:
        load_medical_image(path)
    assert info.value.fix


# ------------------------------------------------------------------------------------- DICOM

def test_dicom_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path):
    ds = pydicom.dcmread(CT)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8192, 8192, 1000  # 67 G values; pixel data unchanged (32 KB)
    ds.save_as(tmp_path / "huge.dcm")
    with pytest.raises(InputError, match=r"huge\.dcm: the header says the DICOM frame is 8192 x 8192"):
        read_dicom(tmp_path / "huge.dcm")
    ds.Rows, ds.Columns = 4096, 4096  # each frame allowed, all 1000 of them not
    ds.save_as(tmp_path / "many.dcm")
    with pytest.raises(InputError, match=r"many\.dcm: the header says the DICOM image is 1000 x 4096 x 4096 = "
                                         r"16,777,216,000 values"):
        read_dicom(tmp_path / "many.dcm")


def test_dicom_with_nan_rescale_is_refused(tmp_path):
    ds = pydicom.dcmread(CT)
    ds.RescaleSlope = "NaN"
    ds.save_as(tmp_path / "nan_slope.dcm")
    with pytest.raises(InputError, match=r"nan_slope\.dcm: RescaleSlope/RescaleIntercept are not finite"):
        load_medical_image(tmp_path / "nan_slope.dcm")


def test_dicom_without_preamble_is_read_whatever_its_name(tmp_path):
    """The README promises DICOM is recognised whatever the extension: files written without the 128-byte
    preamble and 'DICM' (with or without the file meta group) are read like the original."""
    ref, ref_meta = read_dicom(CT)
    raw = CT.read_bytes()
    (tmp_path / "no_preamble").write_bytes(raw[132:])  # starts with the file meta group 0002
    ds = pydicom.dcmread(CT)
    bare = pydicom.Dataset()
    for el in ds:
        bare.add(el)
    bare.save_as(tmp_path / "bare_dataset.dcm", implicit_vr=True, little_endian=True)  # group 0008 first, no meta
    assert (tmp_path / "bare_dataset.dcm").read_bytes()[:2] == b"\x08\x00"
    for name in ("no_preamble", "bare_dataset.dcm"):
        arr, meta = load_medical_image(tmp_path / name)
        np.testing.assert_array_equal(arr, ref)
        assert meta["modality"] == "CT" and meta["rescale"] == ref_meta["rescale"]


# ------------------------------------------------------------------------------------- PNG

def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` (8-bit gray); the data are one short row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_png_pixel_count_is_capped_from_the_header(tmp_path):
    big = _png_claiming(tmp_path / "big.png", 60_000, 60_000)  # 3.6 G pixels in 100 bytes
    for read in (read_image, load_medical_image, load_image):
        with pytest.raises(InputError, match=r"big\.png: the header says the image (is 60000 x 60000|has 3,600,000,000 pixels)") as info:
            read(big)
        assert "decompression bomb" in info.value.problem and info.value.fix
    with pytest.raises(InputError, match="above the 100 this reader decodes"):
        read_image(EXAMPLE, max_pixels=100)  # a real 28 x 28 image under a tiny cap


def _twelve_bit_png(path: Path, sbit: int | None = None, shift: int = 0) -> Path:
    """The 8-bit example as 12-bit data (0..4095, or shifted left by ``shift``) in a 16-bit PNG."""
    a8 = np.asarray(Image.open(EXAMPLE).convert("L")).astype(np.float64)
    a12 = (np.round(a8 * 4095 / 255).astype(np.uint16) << shift).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    if sbit:
        info.add(b"sBIT", bytes([sbit]))
    Image.fromarray(a12).save(path, pnginfo=info)
    return path


def test_sixteen_bit_png_with_twelve_bit_data_is_scaled_by_its_real_depth(tmp_path):
    from maskworks.domains.medical.anomaly.detector import to_unit_range

    ref = np.asarray(Image.open(EXAMPLE).convert("L"), np.float32) / 255
    for name, sbit, shift, bits in [("plain.png", None, 0, 12), ("sbit12.png", 12, 0, 12),
                                    ("sbit12_shifted.png", 12, 4, 16)]:
        path = _twelve_bit_png(tmp_path / name, sbit, shift)
        arr, meta = read_image(path)
        assert meta["mode"].startswith("I;16") and meta["bit_depth"] == bits
        np.testing.assert_allclose(to_unit_range(arr, meta), ref, atol=1 / 255)  # not /65535: not almost black
        np.testing.assert_allclose(load_image(path)[0].numpy(), ref, atol=1 / 255)
    assert significant_bits(4095) == 12 and significant_bits(4096) == 14 and significant_bits(1000, sbit=10) == 10
    assert significant_bits(40000, sbit=12) == 16 and significant_bits(200, 8) == 8
