"""LiDAR scans through the shared reader (``maskworks.core.io.points.read_scan``): values, round trip, clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.core.io.points import read_nuscenes_bin, read_scan, write_kitti_bin
from maskworks.data import data_path

VELO = data_path("3d", "kitti", "training", "velodyne")


@pytest.mark.parametrize("fr,n", [("000000", 115_384), ("000001", 120_268), ("000002", 126_891)])
def test_kitti_scans(fr: str, n: int) -> None:
    pts = read_scan(VELO / f"{fr}.bin").points
    raw = np.fromfile(VELO / f"{fr}.bin", dtype="<f4").reshape(-1, 4)
    assert pts.shape == (n, 4) and pts.dtype == np.float32 and np.array_equal(pts, raw)  # reflectance kept as is
    assert 0 <= pts[:, 3].min() and pts[:, 3].max() <= 1
    r = np.linalg.norm(pts[:, :2], axis=1)
    assert 70 < r.max() < 130 and -3.5 < np.median(pts[:, 2]) < 0  # 360° HDL-64 scan, sensor 1.73 m up


def test_nuscenes_scan() -> None:
    path = next(data_path("3d", "nuscenes").glob("*.pcd.bin"))
    cloud = read_nuscenes_bin(path)
    assert len(cloud) == 34_688 and set(np.unique(cloud.features["ring"]).astype(int)) == set(range(32))  # 32 beams
    raw = np.fromfile(path, dtype="<f4").reshape(-1, 5)
    scan = read_scan(path)
    assert scan.format == "nuscenes" and scan.points.shape == (34_688, 4)
    assert np.allclose(scan.points[:, 3], raw[:, 3] / 255.0) and raw[:, 3].max() > 1  # 0-255 intensity -> [0, 1]


def test_roundtrip_and_errors(tmp_path: Path) -> None:
    pts = read_scan(VELO / "000000.bin").points[:1000]
    assert np.array_equal(read_scan(write_kitti_bin(tmp_path / "a.bin", pts)).points, pts)
    trunc = tmp_path / "trunc.bin"
    trunc.write_bytes((VELO / "000000.bin").read_bytes()[:1002])
    with pytest.raises(InputError, match="trunc.bin: 1,002 bytes is not a multiple of 16"):
        read_scan(trunc)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.bin: the file is empty"):
        read_scan(empty)
    nan = pts.copy()
    nan[3, 1] = np.nan
    write_kitti_bin(tmp_path / "nan.bin", nan)
    scan = read_scan(tmp_path / "nan.bin")
    assert len(scan) == 999 and scan.notes == ["1 points with NaN/inf coordinates were dropped."]
    with pytest.raises(InputError, match="exceed the cap of 500"):
        read_scan(tmp_path / "a.bin", max_points=500)
    with pytest.raises(InputError, match=r"points must be \[N, 4\]"):
        write_kitti_bin(tmp_path / "b.bin", pts[:, :3])


def test_bin_files_in_the_wrong_layout_are_refused_with_what_they_probably_are(tmp_path: Path) -> None:
    """A nuScenes sweep named .bin, KITTI data as float64, millimetres, random bytes: each is refused, and the
    message says what the file probably is (they used to be 'detected')."""
    import shutil

    nus = next(data_path("3d", "nuscenes").glob("*.pcd.bin"))
    kitti = np.fromfile(VELO / "000000.bin", dtype="<f4").reshape(-1, 4)
    shutil.copy(nus, tmp_path / "sweep.bin")
    kitti.astype("<f8").tofile(tmp_path / "f64.bin")
    np.c_[kitti[:, :3] * 1000, kitti[:, 3:]].astype("<f4").tofile(tmp_path / "mm.bin")
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(16 * 5000))
    for name, says in [("sweep.bin", "looks like nuScenes .pcd.bin.*rename it \\*.pcd.bin"),
                       ("f64.bin", "looks like float64 x, y, z, reflectance"),
                       ("mm.bin", "look like millimetres"), ("noise.bin", "not a LiDAR scan in any layout")]:
        with pytest.raises(InputError, match=f"{name}: only .* look like KITTI.*{says}"):
            read_scan(tmp_path / name)
