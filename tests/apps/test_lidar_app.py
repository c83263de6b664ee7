"""The LiDAR tab's bird's-eye image: drawn over the detector's grid, square or not."""
import numpy as np

from maskworks.apps.tabs.lidar import COLORS, bev_image
from maskworks.domains.lidar.detection.decode import Detections


def test_bev_image_spans_a_forward_extended_grid_with_points_and_boxes_in_place():
    pts = np.array([[55.0, 0.0, -1.0]] * 20 + [[-33.0, 21.0, -1.0]] * 20)  # 20 returns at each of two places
    det = Detections(np.array([[50.0, -10.0, -1.0, 4.0, 2.0, 1.5, 0.0]]), ["Car"], np.array([0.9]))
    img = bev_image(pts, det, x_range=(-40.0, 72.0), y_range=(-40.0, 40.0), px_per_m=6.25)
    assert img.shape == (700, 500, 3)  # 112 m along x (rows) by 80 m across (columns)
    # x up, y left: (55, 0) -> row (72 - 55) * 6.25 = 106, column 40 * 6.25 = 250; (-33, 21) -> row 656, column 118
    assert img[106, 250].max() > 100 and img[656, 118].max() > 100
    assert img[300, 400].max() < 100  # nothing there
    # the car's outline (x 48..52, y -11..-9) in the Car colour: its left edge y = -9 at column (40 + 9) * 6.25 = 306
    car = np.array([int(COLORS["Car"][i:i + 2], 16) for i in (1, 3, 5)])
    rows = slice(int((72 - 52) * 6.25), int((72 - 48) * 6.25))
    assert (np.abs(img[rows, 304:309].astype(int) - car).sum(-1) < 30).any()
    assert img[450, 250, 0] == 255 and img[450, 250, 1] == 200  # the sensor's arrow at (0, 0): row 72 * 6.25 = 450


def test_ground_truth_is_drawn_dashed_grey_in_both_views():
    from maskworks.apps.tabs.lidar import GT_COLOR, GT_COLOR_RGB, figure

    pts = np.random.default_rng(0).uniform(-20, 20, (500, 3))
    det = Detections(np.zeros((0, 7)), [], np.zeros(0))
    gt = np.array([[10.0, 5.0, -1.0, 4.0, 2.0, 1.5, 0.0]])  # x 8..12, y 4..6
    fig = figure(pts, det, gt_boxes=gt)
    tr = [t for t in fig.data if t.name.startswith("ground truth")]
    assert len(tr) == 1 and tr[0].name == "ground truth (1)" and tr[0].line.dash == "dash" and tr[0].line.color == GT_COLOR
    assert min(v for v in tr[0].x if v is not None) == 8.0 and max(v for v in tr[0].y if v is not None) == 6.0
    img = bev_image(pts[:0], det, px_per_m=6.25, gt_boxes=gt)
    # the box's right edge y = 4 runs along column (40 - 4) * 6.25 = 225 from row (40 - 12) * 6.25 = 175 to 200: dashed
    grey = (np.abs(img[175:200, 224:227].astype(int) - GT_COLOR_RGB).sum(-1) < 10).any(1)
    assert 0.3 < grey.mean() < 0.9  # dashes and gaps


def test_uploaded_ground_truth_is_drawn_and_counted_and_a_label_without_calibration_costs_only_the_truth(tmp_path):
    import gradio as gr
    import pytest

    from maskworks.apps.tabs.lidar import run
    from maskworks.data import data_path

    root = data_path("3d", "kitti_more", "training")
    scan = tmp_path / "000010.bin"  # an upload: no label_2/ or calib/ beside it
    scan.write_bytes((root / "velodyne" / "000010.bin").read_bytes())
    label, calib = tmp_path / "000010.txt", tmp_path / "000010_calib.txt"
    label.write_text((root / "label_2" / "000010.txt").read_text())
    calib.write_text((root / "calib" / "000010.txt").read_text())
    plain = run(str(scan), 0.5)
    assert "Ground truth" not in plain[3]
    fig, _, _, info, _, _, _, report = run(str(scan), 0.5, [str(calib), str(label)])
    assert plain[-1]["calibration"] is None and report["calibration"] == calib.name  # the written labels use it too
    assert "**9 labelled objects** (8 Car, 1 Pedestrian" in info and "000010.txt" in info
    assert [t.name for t in fig.data if t.name.startswith("ground truth")] == ["ground truth (9)"]
    # a label without its calibration costs the ground truth, not the detections (one clear line on the page)
    _, _, rows, info, *_ = run(str(scan), 0.5, [str(label)])
    assert len(rows) == len(plain[2]) and "Ground truth not shown: 000010.txt: came without the scan's calibration" in info
    broken = tmp_path / "broken_calib.txt"
    broken.write_text("Tr_velo_to_cam: 1 2 3\n")  # looks like a calibration, is not one
    _, _, rows, info, *_, report = run(str(scan), 0.5, [str(label), str(broken)])
    assert len(rows) == len(plain[2]) and report["calibration"] is None
    assert "Ground truth not shown: broken_calib.txt: line 1 (Tr_velo_to_cam) has 3 numbers" in info
    with pytest.raises(gr.Error, match="Cannot read"):  # a bad scan is still an error
        run(str(label), 0.5, [str(calib)])
