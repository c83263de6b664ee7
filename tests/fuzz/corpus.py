"""A corpus of malformed and unusual files for every format a tab or a CLI accepts, made by code (nothing
binary is committed): each case names the job that reads it and what must happen.

``expect``: ``"error"`` (the project's InputError naming the file; a result would be a wrong silent
success), ``"ok"`` (a valid file: a result), ``"any"`` (unusual but not wrong: a result or a clean
InputError). Nothing may crash, hang or blow the memory bound. Domains add a generator to ``GENERATORS``.
"""
from __future__ import annotations

import gzip
import io
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from maskworks.data import data_path


@dataclass(frozen=True)
class Case:
    path: Path
    job: str
    expect: str  # "error" | "ok" | "any"
    what: str


RNG = np.random.default_rng(20261203)


def _png(a: np.ndarray, mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header promises width x height 8-bit gray pixels of zeros, deflated small."""
    raw = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(raw.compress(row) for _ in range(min(height, 2000))) + raw.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _mutations(name: str, data: bytes, job: str) -> Iterator[tuple[str, bytes, str]]:
    """Truncations and corruptions of a valid file, all of which must be refused or read cleanly. A video
    or a sound cut after its first half may still hold every frame a clip needs (streams decode front to back):
    "any"."""
    n = len(data)
    partial_ok = 0.5 if job in ("video", "audio") else 0.95
    for frac in (0.0, 0.01, 0.1, 0.5, 0.9, 0.99):
        cut = int(n * frac)
        yield f"trunc{int(frac * 100):02d}_{name}", data[:cut], "error" if frac < partial_ok else "any"
    flipped = bytearray(data)
    for i in RNG.integers(0, n, size=max(1, n // 200)):
        flipped[i] ^= 0xFF
    yield f"bitflip_{name}", bytes(flipped), "any"
    mid = bytearray(data)
    k = n // 3
    mid[k:k + 64] = RNG.bytes(min(64, n - k))
    yield f"garble_{name}", bytes(mid), "any"


def images(root: Path) -> Iterator[Case]:
    """PNG / JPEG for the image MAE and the anomaly tab."""
    from PIL import Image

    gray = (RNG.random((64, 64)) * 255).astype(np.uint8)
    xray = np.asarray(Image.open(data_path("examples", "chest_xray_224.png")).convert("L"))
    files: list[tuple[str, bytes, str]] = [
        ("xray.png", _png(xray), "ok"),
        ("xray_rgb.png", _png(np.stack([xray] * 3, -1)), "ok"),
        ("xray_rgba.png", _png(np.dstack([np.stack([xray] * 3, -1), np.full_like(xray, 255)])), "ok"),
        ("xray16_12bit.png", _png((xray.astype(np.uint16) * 16), "I;16"), "ok"),
        ("black.png", _png(np.zeros((64, 64), np.uint8)), "any"),
        ("white.png", _png(np.full((64, 64), 255, np.uint8)), "any"),
        ("noise.png", _png(gray), "any"),
        ("one_pixel.png", _png(np.zeros((1, 1), np.uint8)), "any"),
        ("wide.png", _png(np.zeros((4, 4000), np.uint8)), "any"),
        ("bomb_30000x30000.png", png_bomb(30000, 30000), "error"),
        ("empty.png", b"", "error"),
        ("signature_only.png", b"\x89PNG\r\n\x1a\n", "error"),
        ("text.png", b"hello, I am not an image\n" * 10, "error"),
        ("random.png", RNG.bytes(5000), "error"),
        ("random.jpg", RNG.bytes(5000), "error"),
        (".hidden.png", _png(xray), "ok"),
        ("name with spaces.png", _png(xray), "ok"),
        ("ünïcode.png", _png(xray), "ok"),
        ("1.2.840.113619.2.png", _png(xray), "ok"),
    ]
    buf = io.BytesIO()
    Image.fromarray(xray).save(buf, format="JPEG", quality=85)
    jpeg = buf.getvalue()
    files += [("xray.jpg", jpeg, "ok"), ("xray_as.png", jpeg, "any")]
    files += list(_mutations("xray.png", _png(xray), "image"))
    files += list(_mutations("xray.jpg", jpeg, "image"))
    for job in ("medical/anomaly", "image-mae"):
        d = root / job.replace("/", "_") / "images"
        d.mkdir(parents=True, exist_ok=True)
        for name, data, expect in files:
            (d / name).write_bytes(data)
            yield Case(d / name, job, expect, f"image {name}")


def dicoms(root: Path) -> Iterator[Case]:
    """DICOM (with and without extension and preamble) and NIfTI for the anomaly tab."""
    import nibabel as nib
    import pydicom

    d = root / "medical_anomaly" / "dicom"
    d.mkdir(parents=True, exist_ok=True)
    cr = data_path("medical", "dicom", "RG1_UNCI.dcm").read_bytes()
    files: list[tuple[str, bytes, str]] = [("cr.dcm", cr, "ok"), ("1.2.840.10008.5.1.4", cr, "ok")]
    for src in ("CT_small.dcm", "693_UNCI.dcm", "eCT_Supplemental.dcm", "explicit_VR-UN.dcm", "anon_apct.dcm"):
        files.append((src, data_path("medical", "dicom", src).read_bytes(), "any"))
    files += [("no_preamble.dcm", cr[132:], "any"), ("empty.dcm", b"", "error"),
              ("dicm_only.dcm", b"\0" * 128 + b"DICM", "error"), ("dicm_garbage.dcm", b"\0" * 128 + b"DICM" + RNG.bytes(4000), "error")]
    files += list(_mutations("cr.dcm", cr, "dicom"))
    ds = pydicom.dcmread(io.BytesIO(cr))
    for tag, value, expect, label in [("RescaleSlope", "NaN", "error", "nan_slope"), ("Rows", 60000, "error", "rows_60000"),
                                      ("BitsAllocated", 7, "error", "bits7"), ("Modality", "CT", "any", "says_ct"),
                                      ("PhotometricInterpretation", "MONOCHROME1", "any", "mono1")]:
        x = pydicom.dcmread(io.BytesIO(cr))
        setattr(x, tag, value)
        out = io.BytesIO()
        x.save_as(out, enforce_file_format=False)
        files.append((f"{label}.dcm", out.getvalue(), expect))
    no_pixels = pydicom.dcmread(io.BytesIO(cr))
    del no_pixels.PixelData
    out = io.BytesIO()
    no_pixels.save_as(out, enforce_file_format=False)
    files.append(("no_pixels.dcm", out.getvalue(), "error"))
    del ds
    for name, data, expect in files:
        (d / name).write_bytes(data)
        yield Case(d / name, "medical/anomaly", expect, f"dicom {name}")

    n = root / "medical_anomaly" / "nifti"
    n.mkdir(parents=True, exist_ok=True)
    brain = data_path("medical", "nifti", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    shutil.copy(brain, n / "brain.nii.gz")
    yield Case(n / "brain.nii.gz", "medical/anomaly", "any", "nifti brain")
    vols = {"small.nii.gz": (np.random.default_rng(1).random((32, 32, 8)).astype(np.float32), "any"),
            "nan.nii.gz": (np.full((16, 16, 4), np.nan, np.float32), "error"),
            "inf.nii": (np.full((16, 16, 4), np.inf, np.float32), "error"),
            "flat2d.nii.gz": (np.ones((32, 32), np.float32), "any"),
            "five_d.nii.gz": (np.ones((4, 4, 4, 2, 2), np.float32), "any"),
            "uint8.nii.gz": ((np.random.default_rng(2).random((32, 32, 4)) * 255).astype(np.uint8), "any")}
    for name, (arr, expect) in vols.items():
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(n / name))
        yield Case(n / name, "medical/anomaly", expect, f"nifti {name}")
    # a valid ~1 MB .nii.gz that decodes to 1 GB: 1000^3 uint8 zeros (the bomb took the demo to 9.4 GB)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1000, 1000, 1000))
    hdr.set_data_dtype(np.uint8)
    hdr.set_data_offset(352)
    chunk = 1 << 24  # gzip members concatenate: compress 16 MiB of zeros once, repeat it (a fast, valid stream)
    zeros = gzip.compress(b"\0" * chunk, compresslevel=9)
    body = 1_000_000_000
    gz = io.BytesIO(gzip.compress(hdr.binaryblock + b"\0" * 4) + zeros * (body // chunk)
                    + gzip.compress(b"\0" * (body % chunk), compresslevel=9))
    (n / "bomb_1000cubed.nii.gz").write_bytes(gz.getvalue())
    yield Case(n / "bomb_1000cubed.nii.gz", "medical/anomaly", "any", "nifti decompression bomb (1 GB of zeros)")
    good = (n / "small.nii.gz").read_bytes()
    for name, data, expect in _mutations("small.nii.gz", good, "nifti"):
        (n / name).write_bytes(data)
        yield Case(n / name, "medical/anomaly", expect if expect != "any" else "any", f"nifti {name}")
    (n / "not_gzip.nii.gz").write_bytes(b"plain text\n")
    yield Case(n / "not_gzip.nii.gz", "medical/anomaly", "error", "nifti not gzip")


def clouds(root: Path) -> Iterator[Case]:
    """Point clouds for the LiDAR detector: every format its reader takes, valid and broken."""
    from maskworks.core.io.points import PointCloud, write_points

    d = root / "lidar_detection"
    d.mkdir(parents=True, exist_ok=True)
    kitti = np.fromfile(data_path("3d", "kitti", "training", "velodyne", "000002.bin"), "<f4").reshape(-1, 4)
    small = kitti[::4].copy()
    files: list[tuple[str, bytes, str]] = [("scan.bin", small.tobytes(), "ok")]
    nus = next(data_path("3d", "nuscenes").glob("*.pcd.bin")).read_bytes()
    files += [("sweep.pcd.bin", nus, "ok"), ("sweep_named.bin", nus, "error"), ("kitti_named.pcd.bin", small.tobytes(), "error"),
              ("float64.bin", small.astype("<f8").tobytes(), "error"), ("millimetres.bin", np.c_[small[:, :3] * 1000, small[:, 3:]].astype("<f4").tobytes(), "error"),
              ("random.bin", RNG.bytes(16 * 4000), "error"), ("random.pcd.bin", RNG.bytes(20 * 4000), "error"),
              ("empty.bin", b"", "error"), ("odd.bin", small.tobytes()[:-3], "error"),
              ("nan.bin", np.where(RNG.random(small.shape) < 0.01, np.nan, small).astype("<f4").tobytes(), "ok"),
              ("all_nan.bin", np.full((100, 4), np.nan, "<f4").tobytes(), "error"),
              ("zeros.bin", np.zeros((1000, 4), "<f4").tobytes(), "error")]
    for name, data, expect in files:
        (d / name).write_bytes(data)
        yield Case(d / name, "lidar/detection", expect, f"bin {name}")
    cloud = PointCloud(small[:, :3], {"intensity": small[:, 3]})
    for ext in ("pcd", "ply", "npy", "npz"):
        p = d / f"scan.{ext}"
        write_points(p, cloud)
        yield Case(p, "lidar/detection", "ok", f"{ext} valid")
        data = p.read_bytes()
        for name, blob, expect in _mutations(f"scan.{ext}", data, ext):
            (d / name).write_bytes(blob)
            yield Case(d / name, "lidar/detection", expect, f"{ext} {name}")
    write_points(d / "ascii.pcd", cloud, encoding="ascii")
    write_points(d / "compressed.pcd", cloud, encoding="binary_compressed")
    yield Case(d / "ascii.pcd", "lidar/detection", "ok", "pcd ascii")
    yield Case(d / "compressed.pcd", "lidar/detection", "ok", "pcd binary_compressed")
    pcd_lies = b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 900000000\nHEIGHT 1\nPOINTS 900000000\nDATA binary\n" + small[:100, :3].tobytes()
    ply_lies = b"ply\nformat binary_little_endian 1.0\nelement vertex 900000000\nproperty float x\nproperty float y\nproperty float z\nend_header\n" + small[:100, :3].tobytes()
    npy_lies = b"\x93NUMPY\x01\x00" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (900000000, 3), }".ljust(118) + b"\n" + small[:100, :3].tobytes()
    extra = [("lies_points.pcd", pcd_lies, "error"), ("lies_vertices.ply", ply_lies, "error"), ("lies_shape.npy", npy_lies, "error"),
             ("object.npy", b"\x93NUMPY\x01\x00" + b"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }".ljust(118) + b"\n" + b"\x80\x04N.", "error"),
             ("two_columns.npy", _npy(np.zeros((100, 2), np.float32)), "error"), ("one_d.npy", _npy(np.zeros(300, np.float32)), "error"),
             ("strings.npy", _npy(np.array([["a", "b", "c"]] * 10)), "error"), ("empty.npy", _npy(np.zeros((0, 3), np.float32)), "error"),
             ("int.npy", _npy((small[:, :3] * 100).astype(np.int32)), "any"), ("object_scan.npy", _npy(RNG.normal(size=(2000, 3)).astype(np.float32) * 0.1), "any"),
             ("text.xyz", "\n".join(" ".join(f"{v:.3f}" for v in r) for r in small[:2000, :3]).encode(), "ok"),
             ("bad.xyz", b"1 2 3\n4 five 6\n", "error"), ("scan.las", b"LASF" + RNG.bytes(400), "error"), ("noext", small.tobytes(), "error")]
    for name, data, expect in extra:
        (d / name).write_bytes(data)
        yield Case(d / name, "lidar/detection", expect, f"cloud {name}")


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def videos(root: Path) -> Iterator[Case]:
    """Videos for the video MAE: every container it reads, valid, broken, silent, sound-only, lying."""
    from maskworks.core.io.video import write_video

    d = root / "video"
    d.mkdir(parents=True, exist_ok=True)
    frames = (np.linspace(0, 255, 48 * 64 * 64 * 3) % 256).astype(np.uint8).reshape(48, 64, 64, 3)
    tone = (0.1 * np.sin(np.linspace(0, 2000, 16000 * 2))).astype(np.float32)[None]
    made = {}
    for ext in (".mp4", ".avi", ".webm", ".mov", ".mkv"):
        p = d / f"clip{ext}"
        write_video(p, frames, 25.0)
        made[ext] = p
        yield Case(p, "video/videomae", "ok", f"video valid {ext}")
    write_video(d / "with_sound.mp4", frames, 25.0, audio=(tone, 16000))
    yield Case(d / "with_sound.mp4", "video/videomae", "ok", "video with a sound track")
    write_video(d / "three_frames.mp4", frames[:3], 25.0)
    yield Case(d / "three_frames.mp4", "video/videomae", "any", "video of 3 frames")
    shipped = sorted(data_path("video", "kinetics_ucf", "videos").iterdir())[0]
    files: list[tuple[str, bytes, str]] = [("empty.mp4", b"", "error"), ("random.mp4", RNG.bytes(20000), "error"),
                                           ("random.avi", RNG.bytes(20000), "error"), ("text.webm", b"not a video\n" * 50, "error"),
                                           ("image_named.mp4", _png(np.zeros((64, 64), np.uint8)), "error")]
    files += list(_mutations("clip.mp4", made[".mp4"].read_bytes(), "video"))
    files += list(_mutations("clip.avi", made[".avi"].read_bytes(), "video"))
    files += list(_mutations(shipped.name, shipped.read_bytes(), "video"))
    for name, data, expect in files:
        (d / name).write_bytes(data)
        yield Case(d / name, "video/videomae", expect, f"video {name}")
    import soundfile as sf

    sf.write(d / "sound_only.wav", tone[0], 16000)
    (d / "sound_only.mp4").write_bytes((d / "sound_only.wav").read_bytes())
    yield Case(d / "sound_only.mp4", "video/videomae", "error", "a WAV named .mp4")


def scenes(root: Path) -> Iterator[Case]:
    """Radiance grids, meshes and zips of posed images for the NeRF-MAE job (zips that must fail before fitting)."""
    import json as _json
    import zipfile

    d = root / "nerf"
    d.mkdir(parents=True, exist_ok=True)
    grid = data_path("nerf", "grids", "spot.npz").read_bytes()
    ply = data_path("nerf", "meshes", "featuretype_cad.ply").read_bytes()
    glb = data_path("nerf", "meshes", "duck_textured.glb").read_bytes()
    files: list[tuple[str, bytes, str]] = [("spot.npz", grid, "ok"), ("cad.ply", ply, "ok"), ("duck.glb", glb, "ok"),
                                           ("empty.npz", b"", "error"), ("random.npz", RNG.bytes(3000), "error"),
                                           ("random.ply", b"ply\n" + RNG.bytes(3000), "error"), ("text.obj", b"hello\n" * 20, "error"),
                                           ("empty.glb", b"", "error"), ("not_a_zip.zip", b"PK\x03\x04" + RNG.bytes(500), "error")]
    buf = io.BytesIO()
    np.savez(buf, wrong=np.zeros((4, 4)))
    files.append(("wrong_keys.npz", buf.getvalue(), "error"))
    buf = io.BytesIO()
    np.savez(buf, rgbsigma=np.full((8, 8, 8, 4), np.nan, np.float32))
    files.append(("nan_grid.npz", buf.getvalue(), "error"))
    files.append(("lying_faces.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 900000000\nproperty float x\n"
                  b"property float y\nproperty float z\nelement face 900000000\nproperty list uchar int vertex_indices\n"
                  b"end_header\n" + RNG.bytes(600), "error"))
    for name, data, expect in _mutations("spot.npz", grid, "grid"):
        files.append((name, data, expect))
    for name, data, expect in _mutations("cad.ply", ply, "mesh"):
        files.append((name, data, expect))
    for label, members in [("no_transforms", {"a.png": _png(np.zeros((8, 8), np.uint8))}),
                           ("bad_poses", {"transforms.json": _json.dumps({"camera_angle_x": 0.7, "frames": [
                               {"file_path": "a", "transform_matrix": [[1, 0], [0, 1]]}]}).encode(), "a.png": _png(np.zeros((8, 8), np.uint8))}),
                           ("nan_pose", {"transforms.json": _json.dumps({"camera_angle_x": 0.7, "frames": [
                               {"file_path": "a", "transform_matrix": [[float("nan")] * 4] * 4}]}).encode(), "a.png": _png(np.zeros((8, 8), np.uint8))}),
                           ("many_members", {f"f{i}.png": b"x" for i in range(20000)})]:
        zb = io.BytesIO()
        with zipfile.ZipFile(zb, "w") as z:
            for n, data in members.items():
                z.writestr(n, data)
        files.append((f"{label}.zip", zb.getvalue(), "error"))
    for name, data, expect in files:
        (d / name).write_bytes(data)
        yield Case(d / name, "nerf/reconstruct", expect, f"nerf {name}")


def _npy_obj(a: np.ndarray) -> bytes:
    """np.save with allow_pickle, as a careless exporter would write an object array."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def _skeleton_mutations(name: str, data: bytes, rng: np.random.Generator) -> Iterator[tuple[str, bytes]]:
    n = len(data)
    for frac in (0.0, 0.1, 0.5, 0.9):
        yield f"{name}: cut at {frac:.0%}", data[: int(n * frac)]
    for k in range(3):
        b = bytearray(data)
        for i in rng.integers(0, n, size=8):
            b[i] ^= 1 << int(rng.integers(0, 8))
        yield f"{name}: 8 flipped bits ({k})", bytes(b)
    yield f"{name}: random bytes", rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()


def skeletons(root: Path) -> Iterator[Case]:
    """Skeleton sequences for the action job: valid .npy/.npz/.pkl/.skeleton/.bvh, their cuts, bit flips and
    random bytes, and files whose headers lie (object arrays, 5-D, 8 persons, frame counts, channels)."""
    import pickle
    import zipfile

    rng = np.random.default_rng(20261204)
    root = root / "skeleton"
    root.mkdir(parents=True, exist_ok=True)
    walk = np.load(data_path("skeleton", "cmu", "seq", "07_12.npy"))
    valid = {
        "walk.npy": _npy_obj(walk),
        "walk.pkl": pickle.dumps({"split": {"train": ["a"]}, "annotations": [{"frame_dir": "a", "label": 0, "keypoint": walk[None]}]}),
        "walk.bvh": data_path("skeleton", "fixtures", "cmu_02_03_first_frames.bvh").read_bytes(),
    }
    buf = io.BytesIO()
    np.savez(buf, keypoint=walk[None], keypoint_score=np.ones((1, len(walk), 25), np.float32))
    valid["walk.npz"] = buf.getvalue()
    lines = [str(len(walk))]
    for f in walk:
        lines += ["1", "7205759403 0 1 1 1 1 0 0.1 0.2 2", "25"] + [f"{x} {y} {z} 1 2 3 4 0 0 0 1 2" for x, y, z in f]
    valid["walk.skeleton"] = "\n".join(lines).encode()
    for name, data in valid.items():
        (root / name).write_bytes(data)
        yield Case(root / name, "skeleton/actions", "ok", f"skeleton {name}: valid")
        stem, ext = name.split(".")
        for k, (what, bad) in enumerate(_skeleton_mutations(name, data, rng)):
            p = root / f"{stem}_m{k}.{ext}"
            p.write_bytes(bad)
            yield Case(p, "skeleton/actions", "error" if what.endswith(("0%", "random bytes")) and "90%" not in what else "any", f"skeleton {what}")
    lying = {
        "inf.npy": _npy_obj(np.full((10, 25, 3), np.inf, np.float32)),
        "int8.npy": _npy_obj(np.ones((10, 25, 3), np.int8)),
        "objects.npy": _npy_obj(np.array([{"a": 1}], dtype=object)),
        "five_d.npy": _npy_obj(np.zeros((1, 1, 10, 25, 3), np.float32)),
        "huge_coords.npy": _npy_obj(np.full((10, 25, 3), 1e9, np.float32)),
        "eight_persons.npy": _npy_obj(np.zeros((8, 10, 25, 3), np.float32)),
        "no_keypoint.pkl": pickle.dumps({"annotations": [{"frame_dir": "a"}]}),
        "keypoint_list.pkl": pickle.dumps({"annotations": [{"keypoint": [[0.0] * 3] * 25}]}),
        "scores_mismatch.pkl": pickle.dumps({"annotations": [{"keypoint": walk[None], "keypoint_score": np.ones((1, 3, 25))}]}),
        "empty_list.pkl": pickle.dumps([]),
        "frames_lie.skeleton": b"99999999\n0\n",
        "bodies_lie.skeleton": b"1\n1000\n",
        "no_motion.bvh": b"HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\nMOTION\nFrames: 0\nFrame Time: 0.1\n",
        "frames_lie.bvh": b"HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\nMOTION\nFrames: 999999999\nFrame Time: 0.1\n0 0 0\n",
        "bad_channel.bvh": b"HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 1 Wrotation\n}\nMOTION\nFrames: 1\nFrame Time: 0.1\n0\n",
        "empty.npz": b"",
    }
    zb = io.BytesIO()
    with zipfile.ZipFile(zb, "w") as z:
        z.writestr("keypoint.npy", _npy_obj(np.zeros((10, 25, 3), np.float32))[:60])  # a member cut short
    lying["cut_member.npz"] = zb.getvalue()
    for name, data in lying.items():
        (root / name).write_bytes(data)
        yield Case(root / name, "skeleton/actions", "error", f"skeleton {name}")


def _sound(a: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, a, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def sounds(root: Path) -> Iterator[Case]:
    """Audio for the emotion job (its voice head): a shipped RAVDESS wav, the same as FLAC and at other rates
    and channel counts, silence and one sample (unusual, not wrong), then cuts and corruptions, a WAV
    header promising hours, non-finite float samples and a text file named .wav, all of which must be refused."""
    import soundfile

    d = root / "audio"
    d.mkdir(parents=True, exist_ok=True)
    src = data_path("audiovisual", "ravdess", "audio", "01-01-04-01-01-01-05.wav")
    voice, rate = soundfile.read(src, dtype="float32")
    voice = voice if voice.ndim == 1 else voice.mean(1)
    files: list[tuple[str, bytes, str]] = [
        ("voice.wav", src.read_bytes(), "ok"),
        ("voice.flac", _sound(voice, rate, "FLAC"), "ok"),
        ("voice_8k.wav", _sound(voice[::2], rate // 2, "WAV"), "ok"),
        ("voice_stereo.wav", _sound(np.c_[voice, voice * 0.5], rate, "WAV"), "ok"),
        ("voice_float.wav", _sound(voice, rate, "WAV", "FLOAT"), "ok"),
        ("silence.wav", _sound(np.zeros(rate * 3, np.float32), rate, "WAV"), "any"),
        ("one_sample.wav", _sound(np.zeros(1, np.float32), rate, "WAV"), "any"),
        ("empty.wav", b"", "error"),
        ("text.wav", b"this is not a sound file\n" * 40, "error"),
        ("random.flac", RNG.bytes(4096), "error"),
        ("nan.wav", _sound(np.full(rate, np.nan, np.float32), rate, "WAV", "FLOAT"), "error"),
        ("inf.wav", _sound(np.r_[voice[:rate], np.full(10, np.inf, np.float32)], rate, "WAV", "FLOAT"), "error"),
    ]
    head = bytearray(src.read_bytes()[:44])
    head[40:44] = struct.pack("<I", 0xFFFFFF00)  # a data chunk of 4 GB, with 0 bytes behind it
    head[4:8] = struct.pack("<I", 0xFFFFFF24)
    files.append(("lying_header.wav", bytes(head), "error"))
    files += [(f"{n}.wav", b, "error" if e == "error" else "any") for n, b, e in _mutations("voice", src.read_bytes(), "audio")]
    for name, data, expect in files:
        (d / name).write_bytes(data)
        yield Case(d / name, "audiovisual/emotion", expect, f"audio {name}")


GENERATORS: list[Callable[[Path], Iterator[Case]]] = [images, dicoms, clouds, videos, scenes, skeletons, sounds]


def make_corpus(root: Path) -> list[Case]:
    root.mkdir(parents=True, exist_ok=True)
    return [c for g in GENERATORS for c in g(root)]


if __name__ == "__main__":
    import sys

    cases = make_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz-corpus"))
    print(f"{len(cases)} files")
