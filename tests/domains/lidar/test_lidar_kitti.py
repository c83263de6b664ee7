"""KITTI labels/calib, camera <-> LiDAR boxes, in-box counts and projection vs the shipped references."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from maskworks.data import data_path
from maskworks.domains.lidar.boxes import boxes_to_corners, count_points_in_boxes, points_in_rotated_box
from maskworks.core.io.points import read_scan
from maskworks.core.io import InputError
from maskworks.domains.lidar.kitti import (KittiObject, boxes_camera_to_lidar, boxes_lidar_to_camera,
                                           labels_to_lidar_boxes, project_boxes_to_image, read_calib,
                                           read_label, write_calib, write_label)

KITTI = data_path("3d", "kitti")
FRAMES = ["000000", "000001", "000002"]
REF = json.loads((KITTI / "boxes_lidar.json").read_text())


def _frame(fr: str):  # type: ignore[no-untyped-def]
    t = KITTI / "training"
    return (read_label(t / "label_2" / f"{fr}.txt"), read_calib(t / "calib" / f"{fr}.txt"),
            read_scan(t / "velodyne" / f"{fr}.bin").points)


def test_read_label_values() -> None:
    objs = read_label(KITTI / "training" / "label_2" / "000001.txt")
    assert [o.type for o in objs] == ["Truck", "Car", "Cyclist"] + ["DontCare"] * 4
    truck = objs[0]
    assert truck.bbox == (599.41, 156.40, 629.75, 189.25)
    assert truck.dimensions == (2.85, 2.63, 12.34) and truck.location == (0.47, 1.49, 69.44)
    assert truck.rotation_y == -1.56 and truck.occluded == 0 and truck.score is None
    assert objs[2].occluded == 3


def test_non_finite_labels_and_a_calibration_that_is_not_a_rotation_are_refused(tmp_path: Path) -> None:
    # found by the property test of the LiDAR tab's ground-truth upload: an 'inf' heading became a box, and an
    # all-zero Tr_velo_to_cam ended in numpy's LinAlgError when the labels were moved into the scan
    label = tmp_path / "000001.txt"
    label.write_text("Car 0.00 0 -1.57 599.41 156.40 629.75 189.25 2.85 2.63 12.34 0.47 1.49 69.44 inf\n")
    with pytest.raises(InputError, match="000001.txt: line 1 holds a NaN or infinite value"):
        read_label(label)
    lines = (KITTI / "training" / "calib" / "000001.txt").read_text().splitlines()
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(("Tr_velo_to_cam: " + " ".join(["0"] * 12)) if ln.startswith("Tr_velo_to_cam") else ln
                               for ln in lines))
    with pytest.raises(InputError, match="Tr_velo_to_cam is not a rotation .*determinant 0"):
        read_calib(calib)
    calib.write_text("\n".join(ln.replace("R0_rect: ", "R0_rect: nan ", 1)[:-len(ln.split()[-1]) - 1]
                               if ln.startswith("R0_rect") else ln for ln in lines))
    with pytest.raises(InputError, match=r"line \d+ \(R0_rect\) holds a NaN"):
        read_calib(calib)


@pytest.mark.parametrize("fr", FRAMES)
def test_label_and_calib_write_read_roundtrip(tmp_path: Path, fr: str) -> None:
    objs, calib, _ = _frame(fr)
    assert read_label(write_label(tmp_path / "l.txt", objs)) == objs
    scored = [KittiObject(**{**o.__dict__, "score": 0.5}) for o in objs]
    assert read_label(write_label(tmp_path / "s.txt", scored))[0].score == 0.5
    back = read_calib(write_calib(tmp_path / "c.txt", calib))
    for i in range(4):
        assert np.array_equal(back.P[i], calib.P[i])
    assert np.array_equal(back.R0_rect, calib.R0_rect) and np.array_equal(back.Tr_velo_to_cam, calib.Tr_velo_to_cam)
    assert np.array_equal(back.Tr_imu_to_velo, calib.Tr_imu_to_velo)
    focal = {"000000": 707.0493, "000001": 721.5377, "000002": 721.5377}[fr]  # two recording days
    assert calib.P2[0, 0] == focal and calib.P2[2, 2] == 1.0


@pytest.mark.parametrize("fr", FRAMES)
def test_camera_to_lidar_reproduces_reference(fr: str) -> None:
    objs, calib, _ = _frame(fr)
    boxes, types = labels_to_lidar_boxes(objs, calib)
    ref = np.array([o["box_lidar"] for o in REF[fr]])
    assert types == [o["type"] for o in REF[fr]]
    np.testing.assert_allclose(boxes, ref, atol=1e-4)  # reference is rounded to 4 decimals
    # OpenPCDet's z-lift is a different (approximate) centre: cm-level apart, same size and heading
    pcdet, _ = labels_to_lidar_boxes(objs, calib, lift="lidar_z")
    np.testing.assert_allclose(pcdet[:, 3:], boxes[:, 3:], atol=1e-12)
    assert 1e-3 < np.abs(pcdet[:, :2] - boxes[:, :2]).max() < 0.03


@pytest.mark.parametrize("lift", ["camera", "lidar_z"])
def test_lidar_camera_lidar_roundtrip(lift: str) -> None:
    _, calib, _ = _frame("000001")
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(0, 70, 50), rng.uniform(-40, 40, 50), rng.uniform(-2, 1, 50),
                             rng.uniform(0.5, 12, 50), rng.uniform(0.5, 3, 50), rng.uniform(1, 4, 50),
                             rng.uniform(-np.pi, np.pi, 50)])
    cam = boxes_lidar_to_camera(boxes, calib, lift=lift)
    back = boxes_camera_to_lidar(cam, calib, lift=lift)
    np.testing.assert_allclose(back[:, :6], boxes[:, :6], atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back[:, 6] - boxes[:, 6]))), 0, atol=1e-12)
    assert (np.abs(cam[:, 6]) <= np.pi).all()
    objs, calib0, _ = _frame("000002")
    cam0 = np.stack([o.camera_box for o in objs])
    np.testing.assert_allclose(boxes_lidar_to_camera(boxes_camera_to_lidar(cam0, calib0, lift=lift), calib0,
                                                     lift=lift), cam0, atol=1e-9)


def test_in_box_counts_equal_index_csv() -> None:
    with open(data_path("3d", "kitti_objects", "index.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    for r in rows:
        pts = _frame(r["frame"])[2]
        box = np.array([[float(r[k]) for k in ("x", "y", "z", "dx", "dy", "dz", "heading")]])
        mask = points_in_rotated_box(pts, box)[0]
        assert mask.sum() == int(r["num_points"]), r["file"]
        crop = np.load(data_path("3d", "kitti_objects", r["file"]))
        assert np.array_equal(pts[mask], crop)  # the very same points, in scan order


@pytest.mark.parametrize("fr", FRAMES)
def test_label_boxes_count_reference_points(fr: str) -> None:
    objs, calib, pts = _frame(fr)
    boxes, _ = labels_to_lidar_boxes(objs, calib)
    assert count_points_in_boxes(pts, boxes).tolist() == [o["num_points"] for o in REF[fr]]


def test_nuscenes_box_counts() -> None:
    """nuScenes boxes use z = box centre; every key-frame count is reproduced."""
    nus = data_path("3d", "nuscenes")
    meta = json.loads((nus / "boxes_lidar.json").read_text())
    pts = read_scan(next(nus.glob("*.pcd.bin"))).points
    assert pts.shape == (34_688, 4)
    boxes = np.array([b["box_lidar"] for b in meta["boxes"]])
    counts = count_points_in_boxes(pts, boxes)
    assert counts.tolist() == [b["num_points_in_box_keyframe"] for b in meta["boxes"]]
    assert sum(c == b["num_lidar_pts_info"] for c, b in zip(counts, meta["boxes"])) == 61


def test_points_in_rotated_box_geometry() -> None:
    box = np.array([[10.0, 5.0, 1.0, 4.0, 1.0, 2.0, np.pi / 2]])  # long side now along LiDAR y
    pts = np.array([[10, 6.9, 1], [11.9, 5, 1], [10, 5, 1.99], [10, 5, 2.01], [10.49, 3.1, 0.0]])
    assert points_in_rotated_box(pts, box)[0].tolist() == [True, False, True, False, True]
    corners = boxes_to_corners(box)[0]
    np.testing.assert_allclose(np.sort(corners[:, 0]), [9.5] * 4 + [10.5] * 4, atol=1e-12)
    np.testing.assert_allclose(corners[:4, 2], 0.0) and np.testing.assert_allclose(corners[4:, 2], 2.0)


@pytest.mark.parametrize("fr", FRAMES)
def test_projection_matches_label_2d_boxes(fr: str) -> None:
    objs, calib, _ = _frame(fr)
    boxes, _ = labels_to_lidar_boxes(objs, calib)
    proj = project_boxes_to_image(boxes, calib, image_shape=(375, 1242))
    gt = np.array([o["bbox2d"] for o in REF[fr]])
    assert np.abs(proj - gt).max() < 12.0  # annotators drew tight 2-D boxes; 3-D box hulls are a bit wider
    inter = np.clip(np.minimum(proj[:, 2:], gt[:, 2:]) - np.maximum(proj[:, :2], gt[:, :2]), 0, None).prod(1)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    assert (inter / (area(proj) + area(gt) - inter)).min() > 0.85


def test_projection_behind_camera_is_nan() -> None:
    _, calib, _ = _frame("000000")
    boxes = np.array([[-10.0, 0, -1, 4, 2, 1.5, 0], [20.0, 0, -1, 4, 2, 1.5, 0]])
    proj = project_boxes_to_image(boxes, calib)
    assert np.isnan(proj[0]).all() and np.isfinite(proj[1]).all()
    assert 550 < proj[1, 0] < proj[1, 2] < 660  # straight ahead: around the principal point 604 px


def test_bad_files_raise_with_name(tmp_path: Path) -> None:
    bad_label = tmp_path / "label.txt"
    bad_label.write_text("Car 0.00 0 1.0 1 2 3\n")
    with pytest.raises(InputError, match="label.txt: line 1 has 7 fields"):
        read_label(bad_label)
    bad_calib = tmp_path / "calib.txt"
    bad_calib.write_text("P2: 1 2 3\n")
    with pytest.raises(InputError, match="calib.txt: line 1 \\(P2\\) has 3 numbers"):
        read_calib(bad_calib)
    partial = tmp_path / "partial.txt"
    partial.write_text("P2: " + " ".join(["1"] * 12) + "\n")
    with pytest.raises(InputError, match=r"partial.txt: missing calibration entries \['R0_rect'"):
        read_calib(partial)
    with pytest.raises(ValueError, match="lift must be"):
        boxes_camera_to_lidar(np.zeros((1, 7)), _frame("000000")[1], lift="up")  # type: ignore[arg-type]
