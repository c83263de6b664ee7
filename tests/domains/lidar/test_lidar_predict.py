"""The detection job (``detection.predict``): one reader for tab and CLI (formats, cap, notes, named errors),
the same JSON from both, labels with calibration found beside the scan."""
from __future__ import annotations

import json

import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.core.io.points import PointCloud, write_points
from maskworks.data import data_path
from maskworks.domains.lidar.detection.predict import MAX_POINTS, find_calib, read_lidar_input, sanity_notes

VELO = data_path("3d", "kitti", "training", "velodyne")


def test_reader_handles_ply_pcd_npy_and_warns_about_units_and_axes(tmp_path):
    rng = np.random.default_rng(0)
    street = np.c_[rng.uniform(-30, 30, (5000, 2)), rng.uniform(-1.7, 1.0, 5000)].astype(np.float32)
    for ext in ("ply", "pcd", "npy"):
        write_points(tmp_path / f"street.{ext}", PointCloud(street))
        inp = read_lidar_input(tmp_path / f"street.{ext}")
        assert inp.points.shape == (5000, 3) and np.allclose(inp.points, street, atol=1e-5)
    assert sanity_notes(street) == []
    assert "metres" in sanity_notes(street / 100)[0]  # a 0.6-unit-wide "street"
    assert "millimetres" in sanity_notes(street * 1000)[0]
    assert any("y-up" in n for n in sanity_notes(street[:, [0, 2, 1]]))
    np.save(tmp_path / "bad.npy", np.zeros((4, 2)))
    with pytest.raises(InputError, match=r"bad.npy: .*\[N, >=3\]"):
        read_lidar_input(tmp_path / "bad.npy")
    (tmp_path / "scan.las").write_bytes(b"LASF")
    with pytest.raises(InputError, match="scan.las: unknown point-cloud extension"):
        read_lidar_input(tmp_path / "scan.las")
    big = np.c_[rng.uniform(-30, 30, (MAX_POINTS + 10, 2)), np.zeros(MAX_POINTS + 10)].astype(np.float32)
    np.save(tmp_path / "big.npy", big)
    inp = read_lidar_input(tmp_path / "big.npy")
    assert len(inp.points) == MAX_POINTS and inp.num_points_read == MAX_POINTS + 10
    assert any("subsampled" in n for n in inp.notes)
    ego = [n for n in inp.notes if "ego vehicle" in n]
    near = int((np.hypot(inp.points[:, 0], inp.points[:, 1]) <= 2.0).sum())
    assert near > 0 and ego and ego[0].startswith(f"{near:,} returns within 2 m")


def test_calibration_is_found_beside_velodyne(tmp_path):
    assert find_calib(VELO / "000002.bin") == data_path("3d", "kitti", "training", "calib", "000002.txt")
    (tmp_path / "000002.bin").write_bytes((VELO / "000002.bin").read_bytes())
    assert find_calib(tmp_path / "000002.bin") is None


def test_tab_and_cli_give_the_same_json(tmp_path):
    """The tab's handler and ``maskworks predict lidar/detection`` run the same job on the same file."""
    from maskworks.apps.cli import main
    from maskworks.apps.tabs import lidar as tab
    from maskworks.domains.lidar.kitti import read_label

    scan = VELO / "000002.bin"
    *_, report = tab.run(str(scan), 0.3)
    assert main(["predict", "lidar/detection", str(scan), "--out", str(tmp_path), "--threshold", "0.3",
                 "--no-progress"]) == 0
    cli = json.loads((tmp_path / "000002.json").read_text())
    assert {k: v for k, v in cli.items() if k not in ("input", "outputs")} == report
    assert report["calibration"] == "000002.txt" and cli["outputs"] == ["000002.txt"]
    labels = read_label(tmp_path / "000002.txt")  # calibrated: camera-frame boxes, 2-D boxes for those in view
    from maskworks.domains.lidar.kitti import read_calib
    from maskworks.domains.lidar.kitti_metric import in_camera_fov

    boxes = np.array([d["box_lidar"] for d in report["detections"]])
    seen = in_camera_fov(boxes, read_calib(data_path("3d", "kitti", "training", "calib", "000002.txt")))
    assert len(labels) == len(boxes) and seen.any()
    has_box = np.array([o.bbox[3] > o.bbox[1] for o in labels])
    assert has_box[seen].all()  # every detection centred in the image has its 2-D box (the evaluator needs it)
