"""Property-based tests of the parsers (hypothesis): any bytes behind a plausible header give the project's
InputError naming the file, or a result, never another exception."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskworks.core.io import InputError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # hangs: the corpus test

PCD_HEAD = st.sampled_from([
    b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 10\nHEIGHT 1\nPOINTS 10\nDATA binary\n",
    b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 10\nHEIGHT 1\nPOINTS 10\nDATA ascii\n",
    b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 10\nHEIGHT 1\nPOINTS 10\nDATA binary_compressed\n",
    b"VERSION .7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\nWIDTH 3\nHEIGHT 2\nPOINTS 6\nDATA binary\n",
])
PLY_HEAD = st.sampled_from([
    b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nproperty float y\nproperty float z\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nend_header\n",
    b"ply\nformat binary_big_endian 1.0\nelement vertex 4\nproperty double x\nproperty double y\nproperty double z\n"
    b"element face 1\nproperty list uchar int vertex_indices\nend_header\n",
])


def _read(suffix: str, data: bytes, reader) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            reader(path)
        except InputError as e:
            assert path.name in str(e), str(e)


@SETTINGS
@given(PCD_HEAD, st.binary(max_size=400))
def test_pcd_parser(head, body):
    from maskworks.core.io.points import read_points

    _read(".pcd", head + body, read_points)


@SETTINGS
@given(PLY_HEAD, st.binary(max_size=400))
def test_ply_parser(head, body):
    from maskworks.core.io.points import read_points

    _read(".ply", head + body, read_points)


@SETTINGS
@given(st.binary(max_size=600), st.sampled_from([".npy", ".npz", ".bin", ".pcd.bin", ".xyz"]))
def test_raw_point_files(data, suffix):
    from maskworks.core.io.points import read_scan

    _read(suffix, (b"\x93NUMPY\x01\x00" if suffix == ".npy" else b"") + data, read_scan)


@SETTINGS
@given(st.binary(max_size=800))
def test_dicom_behind_its_prefix(data):
    from maskworks.domains.medical.imaging.io import load_medical_image

    _read(".dcm", b"\0" * 128 + b"DICM" + data, load_medical_image)


@SETTINGS
@given(st.binary(max_size=800))
def test_png_behind_its_signature(data):
    from maskworks.core.datasets import load_image

    _read(".png", b"\x89PNG\r\n\x1a\n" + data, load_image)


@SETTINGS
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=64))
def test_kitti_bin_of_any_floats(values):
    from maskworks.core.io.points import read_scan

    arr = np.asarray(values, dtype="<f4")
    _read(".bin", arr[: len(arr) // 4 * 4].tobytes() + (b"\1" if len(values) % 5 == 1 else b""), read_scan)


NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32).map(lambda v: f"{v:g}"),
                   st.integers(-3, 3).map(str), st.sampled_from(["x", "1e400", "-0", ""]))
KITTI_LINE = st.one_of(
    st.tuples(st.sampled_from(["Car", "Pedestrian", "Cyclist", "DontCare", "Van"]), st.lists(NUMBER, min_size=13, max_size=16)),
    st.tuples(st.sampled_from(["P0:", "P2:", "R0_rect:", "Tr_velo_to_cam:", "Tr_imu_to_velo:", "junk:"]),
              st.lists(NUMBER, min_size=8, max_size=13)),
    st.tuples(st.text(max_size=12), st.lists(NUMBER, max_size=4)),
).map(lambda t: " ".join([t[0], *t[1]]))


@SETTINGS
@given(st.lists(KITTI_LINE, max_size=6), st.booleans())
def test_uploaded_kitti_label_and_calibration(lines, with_real_calib):
    """The LiDAR tab's ground-truth upload: any label/calib-like text gives an InputError naming a file, or labels."""
    from maskworks.data import data_path
    from maskworks.domains.lidar.scan_labels import scan_labels, sort_label_files

    scan = data_path("3d", "kitti_more", "training", "velodyne", "000010.bin")
    real_calib = scan.parents[1] / "calib" / "000010.txt"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.txt"
        path.write_text("\n".join(lines))
        try:
            label, calib = sort_label_files([path, real_calib] if with_real_calib else [path])
            labels = scan_labels(scan, calib, label)
        except InputError as e:
            assert "fuzz.txt" in str(e) or "000010.txt" in str(e), str(e)
        else:
            assert labels is None or np.isfinite(labels.frame.boxes).all() or len(labels) == 0


TOKENS = st.sampled_from(["nan", "inf", "-1", "0", "1e9", "99999999", "{", "}", "JOINT", "End", "Site", "CHANNELS",
                          "OFFSET", "MOTION", "Frames:", "Frame", "Time:", "ROOT", "3", "6", "Zrotation", "x", ""])


def _mutate(text: str, edits: list[tuple[int, str]]) -> str:
    """Token edits of a valid text file (replace; '' deletes), keeping its line structure."""
    lines = [ln.split() for ln in text.splitlines()]
    where = [(i, j) for i, ln in enumerate(lines) for j in range(len(ln))]
    for k, tok in edits:
        i, j = where[k % len(where)]
        if j < len(lines[i]):
            lines[i][j] = tok
    return "\n".join(" ".join(t for t in ln if t) for ln in lines)


@SETTINGS
@given(st.lists(st.tuples(st.one_of(st.integers(0, 40), st.integers(0, 10**6)), TOKENS), min_size=1, max_size=6))
def test_bvh_and_ntu_skeleton_token_edits(edits):
    """Skeleton text formats with tokens replaced or deleted (often near the top, where the structure is): an
    InputError naming the file, or a finite skeleton. Found: OFFSET outside any joint's braces was an IndexError."""
    from maskworks.data import data_path
    from maskworks.domains.skeleton.io import read_skeleton

    bvh = data_path("skeleton", "fixtures", "cmu_02_03_first_frames.bvh").read_text()
    joints = "\n".join("0.1 0.2 3.0 0 0 0 0 0 0 0 0 2" for _ in range(25))
    ntu = f"2\n1\n72057594037931101 0 1 1 1 1 0 0.1 0.2 2\n25\n{joints}\n1\n72057594037931101 0 1 1 1 1 0 0.1 0.2 2\n25\n{joints}\n"
    for suffix, text in ((".bvh", bvh), (".skeleton", ntu)):
        def read(path):
            skel = read_skeleton(path)
            assert np.isfinite(skel.joints).all(), path

        _read(suffix, _mutate(text, edits).encode(), read)


JSON_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.text(max_size=8),
                                    st.floats(allow_nan=True, allow_infinity=True)),
                          lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                          max_leaves=20)
TRANSFORMS_KEY = st.sampled_from(["w", "h", "fl_x", "fl_y", "cx", "cy", "k1", "camera_angle_x", "frames"])


@SETTINGS
@given(st.dictionaries(TRANSFORMS_KEY, JSON_VALUE, max_size=4), st.integers(0, 1), st.sampled_from(["file_path", "transform_matrix"]),
       JSON_VALUE)
def test_posed_images_transforms_json(patch, frame, key, value):
    """NeRF posed images: a valid transforms.json with values replaced by any JSON: an InputError naming it, or cameras
    with positive focal lengths (w = 0, a ZeroDivisionError once, is pinned in tests/domains/nerf/test_nerf_scenes.py)."""
    import json
    import math

    from PIL import Image

    from maskworks.domains.nerf.scenes import read_posed_images

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
        meta = {"camera_angle_x": 0.7, "frames": [{"file_path": f"{i}.png", "transform_matrix": np.eye(4).tolist()}
                                                  for i in range(2)]}
        if "frames" not in patch:
            meta["frames"][frame][key] = value
        (d / "transforms.json").write_text(json.dumps({**meta, **patch}))
        try:
            scene = read_posed_images(d)
        except InputError as e:
            assert "transforms.json" in str(e) or ".png" in str(e), str(e)
        else:
            assert all(c.fx > 0 and c.fy > 0 and math.isfinite(c.cx) for c in scene.cameras)
