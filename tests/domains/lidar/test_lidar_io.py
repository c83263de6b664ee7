"""Raw KITTI / nuScenes scan readers: values, round trip and clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maskworks.data import data_path
from maskworks.domains.lidar.io import LidarDataError, read_kitti_bin, read_nuscenes_bin, write_kitti_bin

VELO = data_path("3d", "kitti", "training", "velodyne")


@pytest.mark.parametrize("fr,n", [("000000", 115_384), ("000001", 120_268), ("000002", 126_891)])
def test_kitti_scans(fr: str, n: int) -> None:
    pts = read_kitti_bin(VELO / f"{fr}.bin")
    assert pts.shape == (n, 4) and pts.dtype == np.float32
    assert 0 <= pts[:, 3].min() and pts[:, 3].max() <= 1  # reflectance
    r = np.linalg.norm(pts[:, :2], axis=1)
    assert 70 < r.max() < 130 and -3.5 < np.median(pts[:, 2]) < 0  # 360° HDL-64 scan, sensor 1.73 m up


def test_nuscenes_scan() -> None:
    pts = read_nuscenes_bin(next(data_path("3d", "nuscenes").glob("*.pcd.bin")))
    assert pts.shape == (34_688, 5)
    assert set(np.unique(pts[:, 4]).astype(int)) == set(range(32))  # 32-beam ring index
    assert pts[:, 3].max() > 1


def test_roundtrip_and_errors(tmp_path: Path) -> None:
    pts = read_kitti_bin(VELO / "000000.bin")[:1000]
    assert np.array_equal(read_kitti_bin(write_kitti_bin(tmp_path / "a.bin", pts)), pts)
    trunc = tmp_path / "trunc.bin"
    trunc.write_bytes((VELO / "000000.bin").read_bytes()[:1002])
    with pytest.raises(LidarDataError, match="trunc.bin: 1,002 bytes is not a positive multiple of 16"):
        read_kitti_bin(trunc)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(LidarDataError, match="empty.bin: 0 bytes"):
        read_kitti_bin(empty)
    nan = pts.copy()
    nan[3, 1] = np.nan
    write_kitti_bin(tmp_path / "nan.bin", nan)
    with pytest.raises(LidarDataError, match="nan.bin: 1 points have NaN.*drop_nan=True"):
        read_kitti_bin(tmp_path / "nan.bin")
    assert len(read_kitti_bin(tmp_path / "nan.bin", drop_nan=True)) == 999
    with pytest.raises(LidarDataError, match="exceed the cap of 500"):
        read_kitti_bin(tmp_path / "a.bin", max_points=500)
    with pytest.raises(LidarDataError, match=r"points must be \[N, 4\]"):
        write_kitti_bin(tmp_path / "b.bin", pts[:, :3])
