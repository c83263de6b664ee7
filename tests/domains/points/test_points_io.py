"""Point-cloud I/O on the shipped real files: counts, values, round trips and clear errors."""
from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
import pytest

from maskworks.data import data_path
from maskworks.core.io import InputError
from maskworks.core.io.points import (PointCloud, read_npy, read_pcd, read_points, write_npy, write_npz, write_pcd,
                                      write_ply)
from maskworks.core.io.points.lzf import LZFError, lzf_compress, lzf_decompress

ROOT = data_path("3d")
NUSC = "n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"
ORGANISED = {"office1.pcd": 52_744, "five_people.pcd": 68_125, "table_scene_mug_stereo_textured.pcd": 97_920}
EXPECTED = {  # relative path -> number of points (organised frames: all pixels, NaNs included)
    "pcl_scans/bunny.pcd": 397, "pcl_scans/bun0.pcd": 397, "pcl_scans/bun4.pcd": 361,
    "pcl_scans/milk.pcd": 13_704, "pcl_scans/car6.pcd": 10_031, "pcl_scans/lamppost.pcd": 1_771,
    "pcl_scans/rops_cloud.pcd": 32_087, "pcl_scans/ism_train.pcd": 3_400, "pcl_scans/colored_cloud.pcd": 1_000,
    "pcl_scans/cturtle.pcd": 167_198,
    **{f"pcl_scans/{k}": 307_200 for k in ORGANISED},
    **{f"pcl_scans/{k}.npy": n for k, n in [("bunny", 397), ("bun0", 397), ("bun4", 361), ("milk", 13_704),
                                             ("car6", 10_031), ("lamppost", 1_771), ("rops_cloud", 32_087),
                                             ("ism_train", 3_400), ("colored_cloud", 1_000)]},
    **{f"shapes/{s}_{n}.npy": n for s in ("assimp_spider", "assimp_wuson", "pyvista_airplane", "pyvista_ant")
       for n in (1024, 2048)},
    "kitti/training/velodyne/000000.bin": 115_384, "kitti/training/velodyne/000001.bin": 120_268,
    "kitti/training/velodyne/000002.bin": 126_891, f"nuscenes/{NUSC}": 34_688,
    "kitti_more/training/velodyne/000010.bin": 16_464, "kitti_more/training/velodyne/000134.bin": 19_097,  # size / 16 bytes
}


def _kitti_object_counts() -> dict[str, int]:
    with open(ROOT / "kitti_objects" / "index.csv") as f:
        return {f"kitti_objects/{r['file']}": int(r["num_points"]) for r in csv.DictReader(f)}


def test_every_shipped_cloud_is_covered() -> None:
    """A new file under data/3d must get an expected count here, so nothing ships untested."""
    exts = (".pcd", ".npy", ".bin")
    shipped = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.name.endswith(exts)}
    assert shipped == set(EXPECTED) | set(_kitti_object_counts())


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_shipped_file_point_count(rel: str) -> None:
    cloud = read_points(ROOT / rel, nan_policy="keep")
    assert len(cloud) == EXPECTED[rel]
    assert cloud.xyz.dtype == np.float32 and cloud.xyz.shape == (EXPECTED[rel], 3)


def test_kitti_object_crops_match_index() -> None:
    for rel, n in _kitti_object_counts().items():
        cloud = read_points(ROOT / rel)
        assert len(cloud) == n
        assert cloud.features["extra"].shape == (n, 1)  # reflectance column


@pytest.mark.parametrize("name,n_nan", sorted(ORGANISED.items()))
def test_organised_kinect_frames(name: str, n_nan: int) -> None:
    kept = read_points(ROOT / "pcl_scans" / name, nan_policy="keep")
    assert kept.organized_shape == (480, 640)
    assert int((~np.isfinite(kept.xyz).all(1)).sum()) == n_nan
    assert kept.features["rgb"].shape == (307_200, 3) and kept.features["rgb"].dtype == np.uint8
    dropped = read_points(ROOT / "pcl_scans" / name)  # default: drop and report
    assert dropped.num_nan_dropped == n_nan and len(dropped) == 307_200 - n_nan
    assert np.isfinite(dropped.xyz).all()
    assert np.array_equal(dropped.xyz, kept.xyz[np.isfinite(kept.xyz).all(1)])
    with pytest.raises(InputError, match=f"{name}.*{n_nan:,} of 307,200 points have NaN"):
        read_points(ROOT / "pcl_scans" / name, nan_policy="raise")


@pytest.mark.parametrize("stem", ["bunny", "bun0", "bun4", "milk", "car6", "lamppost", "rops_cloud",
                                  "ism_train", "colored_cloud"])
def test_pcd_matches_npy_export(stem: str) -> None:
    """The shipped .npy twins were exported independently; every encoding must agree exactly."""
    a = read_points(ROOT / "pcl_scans" / f"{stem}.pcd").xyz
    b = np.load(ROOT / "pcl_scans" / f"{stem}.npy")
    assert np.array_equal(a, b)


def test_known_fields_and_extents() -> None:
    milk = read_points(ROOT / "pcl_scans" / "milk.pcd")
    np.testing.assert_allclose(np.ptp(milk.xyz, 0), [0.1539, 0.2521, 0.1770], atol=1e-3)  # metres
    bun0 = read_points(ROOT / "pcl_scans" / "bun0.pcd")
    np.testing.assert_allclose(np.linalg.norm(bun0.features["normal"], axis=1), 1.0, atol=1e-3)
    assert bun0.features["curvature"].shape == (397,)
    turtle = read_points(ROOT / "pcl_scans" / "cturtle.pcd")
    assert turtle.features["intensity"].shape == (167_198,) and np.isfinite(turtle.features["intensity"]).all()
    colored = read_points(ROOT / "pcl_scans" / "colored_cloud.pcd")
    assert colored.features["rgb"].shape == (1000, 3) and len(np.unique(colored.features["rgb"], axis=0)) > 1
    kitti = read_points(ROOT / "kitti" / "training" / "velodyne" / "000000.bin")
    inten = kitti.features["intensity"]
    assert 0.0 <= inten.min() and inten.max() <= 1.0  # KITTI reflectance is in [0, 1]
    nus = read_points(ROOT / "nuscenes" / NUSC)
    assert nus.features["intensity"].max() > 1.0 and set(np.unique(nus.features["ring"])) <= set(range(32))


def test_matches_open3d_where_it_applies() -> None:
    try:
        import open3d as o3d
    except ImportError as e:  # open3d-cpu wheels also need system libusb-1.0
        pytest.skip(f"open3d unavailable: {e}")
    for name in ("car6.pcd", "colored_cloud.pcd", "office1.pcd", "bun0.pcd"):
        ours = read_points(ROOT / "pcl_scans" / name, nan_policy="keep")
        pc = o3d.io.read_point_cloud(str(ROOT / "pcl_scans" / name), remove_nan_points=False,
                                     remove_infinite_points=False)
        np.testing.assert_allclose(ours.xyz, np.asarray(pc.points), rtol=1e-6, atol=1e-6, equal_nan=True)
        if pc.has_colors():
            np.testing.assert_array_equal(ours.features["rgb"], np.round(np.asarray(pc.colors) * 255))


def _rich_cloud() -> PointCloud:
    """Real points with every feature kind the PCD writer handles."""
    src = read_points(ROOT / "pcl_scans" / "colored_cloud.pcd")
    rng = np.random.default_rng(0)
    feats = dict(src.features)
    feats["intensity"] = rng.random(len(src), dtype=np.float32)
    feats["label"] = rng.integers(0, 20, len(src)).astype(np.int32)
    feats["hist"] = rng.random((len(src), 5)).astype(np.float32)  # COUNT 5 field
    return PointCloud(src.xyz, feats)


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_pcd_write_read_roundtrip(tmp_path: Path, encoding: str) -> None:
    cloud = _rich_cloud()
    back = read_pcd(write_pcd(tmp_path / f"c_{encoding}.pcd", cloud, encoding=encoding))
    assert np.array_equal(back.xyz, cloud.xyz)
    assert sorted(back.features) == sorted(cloud.features)
    for k, v in cloud.features.items():
        assert np.array_equal(back.features[k], v), k


def test_three_encodings_identical(tmp_path: Path) -> None:
    cloud = _rich_cloud()
    reads = [read_pcd(write_pcd(tmp_path / f"{e}.pcd", cloud, encoding=e))
             for e in ("ascii", "binary", "binary_compressed")]
    for r in reads[1:]:
        assert np.array_equal(r.xyz, reads[0].xyz)
        for k in cloud.features:
            assert np.array_equal(r.features[k], reads[0].features[k])


def test_organised_roundtrip_keeps_nans(tmp_path: Path) -> None:
    full = read_points(ROOT / "pcl_scans" / "office1.pcd", nan_policy="keep")
    rows = PointCloud(full.xyz[:640 * 12], {"rgb": full.features["rgb"][:640 * 12]}, organized_shape=(12, 640))
    assert (~np.isfinite(rows.xyz)).any()
    for enc in ("ascii", "binary_compressed"):
        back = read_pcd(write_pcd(tmp_path / f"o_{enc}.pcd", rows, encoding=enc), nan_policy="keep")
        assert back.organized_shape == (12, 640)
        np.testing.assert_array_equal(back.xyz, rows.xyz)  # NaN positions equal too
        np.testing.assert_array_equal(back.features["rgb"], rows.features["rgb"])


@pytest.mark.parametrize("binary", [True, False])
def test_ply_roundtrip(tmp_path: Path, binary: bool) -> None:
    src = read_points(ROOT / "pcl_scans" / "colored_cloud.pcd")
    cloud = PointCloud(src.xyz, {"normal": src.features["normal"], "rgb": src.features["rgb"],
                                 "curvature": src.features["curvature"]})
    back = read_points(write_ply(tmp_path / "c.ply", cloud, binary=binary))
    assert np.array_equal(back.xyz, cloud.xyz)
    for k in ("normal", "rgb", "curvature"):
        assert np.array_equal(back.features[k], cloud.features[k])


def test_npy_npz_text_roundtrip(tmp_path: Path) -> None:
    kitti = read_points(ROOT / "kitti" / "training" / "velodyne" / "000001.bin")
    sub = kitti.select(np.arange(0, len(kitti), 97))
    npy = read_npy(write_npy(tmp_path / "a.npy", sub, with_features=True), feature_names=["intensity"])
    assert np.array_equal(npy.xyz, sub.xyz) and np.array_equal(npy.features["intensity"], sub.features["intensity"])
    npz = read_points(write_npz(tmp_path / "a.npz", sub))
    assert np.array_equal(npz.xyz, sub.xyz) and np.array_equal(npz.features["intensity"], sub.features["intensity"])
    table = np.concatenate([sub.xyz, sub.features["intensity"][:, None]], 1)
    np.savetxt(tmp_path / "a.xyz", table, fmt="%.9g", header="x y z intensity")
    np.savetxt(tmp_path / "a.txt", table, fmt="%.9g", delimiter=",", header="x,y,z,intensity")
    for name in ("a.xyz", "a.txt"):
        txt = read_points(tmp_path / name)
        assert np.array_equal(txt.xyz, sub.xyz)
        assert np.array_equal(txt.features["extra"][:, 0], sub.features["intensity"])


# ---------------------------------------------------------------- errors name the file, problem and fix

def _pcd_bytes(path: Path) -> bytes:
    return (ROOT / "pcl_scans" / path).read_bytes()


@pytest.mark.parametrize("src,cut,problem", [
    ("colored_cloud.pcd", 5000, "binary data is truncated"),
    ("car6.pcd", 10000, "compressed data is truncated"),  # PCL pads ~4 KB after the stream
    ("lamppost.pcd", 20000, "ascii data (has shape|is not a table)"),
    ("bunny.pcd", 60, "no 'DATA' line"),
])
def test_truncated_pcd_raises(tmp_path: Path, src: str, cut: int, problem: str) -> None:
    bad = tmp_path / f"cut_{src}"
    bad.write_bytes(_pcd_bytes(src)[:-cut] if cut > 100 else _pcd_bytes(src)[:cut])
    with pytest.raises(InputError, match=problem) as e:
        read_points(bad)
    assert str(bad) in str(e.value) and "Fix:" in str(e.value)


def test_corrupt_compressed_raises(tmp_path: Path) -> None:
    raw = bytearray(_pcd_bytes("milk.pcd"))
    start = raw.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n") + 8
    raw[start:start + 64] = bytes([0xFF]) * 64  # back references far before the output start
    bad = tmp_path / "corrupt.pcd"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="corrupt.pcd: LZF decompression failed"):
        read_points(bad)


def test_nan_empty_and_cap_errors(tmp_path: Path) -> None:
    xyz = np.array([[0, 0, 0], [np.nan, 1, 1], [1, 2, 3]], dtype=np.float32)
    p = tmp_path / "nan.npy"
    np.save(p, xyz)
    assert read_points(p).num_nan_dropped == 1
    with pytest.raises(InputError, match=r"nan.npy: 1 of 3 points have NaN.*nan_policy='drop'"):
        read_points(p, nan_policy="raise")
    allnan = tmp_path / "allnan.npy"
    np.save(allnan, np.full((4, 3), np.nan, np.float32))
    with pytest.raises(InputError, match="allnan.npy: the cloud is empty after dropping 4"):
        read_points(allnan)
    empty = tmp_path / "empty.pcd"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.pcd: the file is empty"):
        read_points(empty)
    zero = tmp_path / "zero.pcd"
    write_pcd(zero, PointCloud(np.zeros((1, 3), np.float32)))
    zero.write_bytes(zero.read_bytes().replace(b"WIDTH 1", b"WIDTH 0").replace(b"POINTS 1", b"POINTS 0")[:-12])
    with pytest.raises(InputError, match="zero.pcd: the cloud is empty"):
        read_points(zero)
    with pytest.raises(InputError, match=r"cturtle.pcd: 167,198 points exceed the cap of 100,000.*max_points"):
        read_points(ROOT / "pcl_scans" / "cturtle.pcd", max_points=100_000)
    assert len(read_points(ROOT / "pcl_scans" / "cturtle.pcd", max_points=None)) == 167_198


def test_wrong_shapes_and_formats(tmp_path: Path) -> None:
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((10, 2), np.float32))
    with pytest.raises(InputError, match=r"flat.npy: expected an \[N, >=3\] array"):
        read_points(flat)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(np.zeros(10, np.float32).tobytes())  # 40 bytes: neither KITTI nor a clean 4-float scan
    with pytest.raises(InputError, match="odd.bin: 40 bytes is not a multiple of 16.*nuscenes"):
        read_points(odd)
    nus_as_kitti = tmp_path / "scan.bin"
    nus_as_kitti.write_bytes((ROOT / "nuscenes" / NUSC).read_bytes()[:20 * 1001])
    with pytest.raises(InputError, match="multiple of 16"):
        read_points(nus_as_kitti)
    assert len(read_points(nus_as_kitti, fmt="nuscenes")) == 1001
    (tmp_path / "x.obj").write_text("v 0 0 0\n")
    with pytest.raises(InputError, match="x.obj: unknown point-cloud extension '.obj'"):
        read_points(tmp_path / "x.obj")
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("1 2 3\n4 five 6\n")
    with pytest.raises(InputError, match="garbage.txt: not a table of numbers"):
        read_points(garbage)
    with pytest.raises(InputError, match="missing.pcd: no such file"):
        read_points(tmp_path / "missing.pcd")
    with pytest.raises(InputError, match=r"xyz must have shape \[N, 3\]"):
        PointCloud(np.zeros((5, 4), np.float32))


def test_lzf_roundtrip_and_corruption() -> None:
    rng = np.random.default_rng(1)
    for data in (b"", b"a", b"abcabcabcabcabcabc" * 50, bytes(10_000), rng.bytes(5_000),
                 read_points(ROOT / "pcl_scans" / "milk.pcd").xyz.tobytes()):
        comp = lzf_compress(data)
        assert lzf_decompress(comp, len(data)) == data
    assert len(lzf_compress(bytes(10_000))) < 200  # runs really compress
    comp = lzf_compress(b"hello hello hello hello")
    with pytest.raises(LZFError, match="truncated"):
        lzf_decompress(comp[:-2], 23)
    with pytest.raises(LZFError, match="declares 24"):
        lzf_decompress(comp, 24)


def test_pcd_header_size_mismatch(tmp_path: Path) -> None:
    raw = _pcd_bytes("car6.pcd")
    i = raw.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
    csize, usize = struct.unpack("<II", raw[i:i + 8])
    bad = tmp_path / "sizes.pcd"
    bad.write_bytes(raw[:i] + struct.pack("<II", csize, usize - 12) + raw[i + 8:])
    with pytest.raises(InputError, match="sizes.pcd: uncompressed size"):
        read_points(bad)
