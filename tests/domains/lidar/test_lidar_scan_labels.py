"""Ground truth beside a scan (label_2 + calib next to velodyne/) or given as files of their own (an upload): read
with the repo's KITTI readers, hand-checked."""
import numpy as np
import pytest
from maskworks.data import data_path
from maskworks.core.io import InputError
from maskworks.domains.lidar.scan_labels import find_label, match_summary, scan_labels, sort_label_files

SCAN = data_path("3d", "kitti_more", "training", "velodyne", "000010.bin")


def test_labels_of_000010_are_its_nine_objects_in_the_lidar_frame():
    lab = scan_labels(SCAN)
    assert lab is not None and lab.label_path == find_label(SCAN)
    assert len(lab) == 9 and lab.counts() == {"Car": 8, "Pedestrian": 1}  # 13 lines: 8 Car, 1 Pedestrian, 4 DontCare
    assert len(lab.frame.dontcare) == 4
    # first line: Car ... h w l = 1.57 1.65 3.35, location 4.43 1.65 5.20, ry -1.42; by hand from the calib file
    rows = {}
    for line in (SCAN.parents[1] / "calib" / "000010.txt").read_text().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            rows[k.strip()] = np.array(v.split(), float)
    velo_to_rect = np.eye(4)
    velo_to_rect[:3, :3] = rows["R0_rect"].reshape(3, 3)
    tr = np.eye(4)
    tr[:3, :] = rows["Tr_velo_to_cam"].reshape(3, 4)
    velo_to_rect = velo_to_rect @ tr
    centre_cam = np.array([4.43, 1.65 - 1.57 / 2, 5.20, 1.0])  # bottom centre raised by h/2 (camera y points down)
    want = np.linalg.solve(velo_to_rect, centre_cam)[:3]
    np.testing.assert_allclose(lab.frame.boxes[0, :3], want, atol=1e-6)
    np.testing.assert_allclose(lab.frame.boxes[0, 3:6], [3.35, 1.65, 1.57])  # l, w, h
    assert lab.frame.boxes[0, 6] == pytest.approx(1.42 - np.pi / 2)  # heading = -ry - pi/2


def test_labels_as_detections_are_all_found_and_none_beside_a_loose_scan(tmp_path):
    lab = scan_labels(SCAN)
    f = lab.frame
    got = match_summary(lab, f.boxes, f.classes, np.ones(len(f.boxes)))
    assert got["Car"]["found"] == got["Car"]["labels"] > 0 and got["Car"]["false_alarms"] == 0
    moved = f.boxes.copy()
    moved[:, 1] += 5.0  # 5 m to the side: no BEV overlap with any label
    assert match_summary(lab, moved, f.classes, np.ones(len(f.boxes)))["Car"]["found"] == 0
    loose = tmp_path / "000010.bin"
    loose.write_bytes(SCAN.read_bytes())
    assert scan_labels(loose) is None and find_label(loose) is None


def test_label_and_calibration_given_apart_from_the_scan_are_told_apart_by_content(tmp_path):
    # an upload loses the folder: the files are renamed as a browser might, and handed over in either order
    label, calib = tmp_path / "calib_copy.txt", tmp_path / "labels.txt"  # names swapped on purpose
    label.write_text((SCAN.parents[1] / "label_2" / "000010.txt").read_text())
    calib.write_text((SCAN.parents[1] / "calib" / "000010.txt").read_text())
    assert sort_label_files([calib, label]) == (label, calib) == sort_label_files([label, calib])
    loose = tmp_path / "scan.bin"
    loose.write_bytes(SCAN.read_bytes())
    got, beside = scan_labels(loose, calib, label), scan_labels(SCAN)
    np.testing.assert_array_equal(got.frame.boxes, beside.frame.boxes)
    assert got.frame.classes == beside.frame.classes and len(got.frame.dontcare) == 4
    with pytest.raises(InputError, match="without the scan's calibration"):
        scan_labels(loose, None, label)  # camera-frame boxes cannot be placed without Tr_velo_to_cam


def test_files_that_are_not_a_label_and_a_calibration_get_one_clear_error(tmp_path):
    calib = tmp_path / "c.txt"
    calib.write_text((SCAN.parents[1] / "calib" / "000010.txt").read_text())
    binary = tmp_path / "scan.txt"
    binary.write_bytes(SCAN.read_bytes()[:4096])
    with pytest.raises(InputError, match="scan.txt.*not a text file"):
        sort_label_files([binary])
    with pytest.raises(InputError, match="second calibration file"):
        sort_label_files([calib, calib])
    big = tmp_path / "big.txt"
    big.write_text("x" * (2 << 20))
    with pytest.raises(InputError, match="far more than a KITTI label"):
        sort_label_files([big])
    notes = tmp_path / "notes.txt"
    notes.write_text("these are my notes\n")
    label, _ = sort_label_files([notes, calib])
    with pytest.raises(InputError, match="notes.txt.*4 fields"):  # read as a label: the KITTI reader names the line
        scan_labels(SCAN, calib, label)
