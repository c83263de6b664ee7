"""The KITTI evaluator's rules that matter on real frames: the official R40 conventions, DontCare regions,
2-D boxes of truncated objects, and label files that score the same as the detections they were written from."""
import json

import numpy as np
import pytest

from maskworks.data import data_path
from maskworks.domains.lidar.kitti import project_boxes_to_image, read_calib, read_label
from maskworks.domains.lidar.kitti_metric import (
    FrameBoxes,
    evaluate,
    load_ground_truth,
    official_thresholds,
    restrict_to_fov,
)

KITTI = data_path("3d", "kitti", "training")
MORE = data_path("3d", "kitti_more", "training")


def cars(n, x0=10.0):
    return np.array([[x0 + 6 * i, 0.0, -1.0, 4.0, 1.7, 1.5, 0.0] for i in range(n)])


def frame(boxes, classes, scores=None, height=50.0, **kw):
    n = len(boxes)
    return FrameBoxes(boxes, classes, None if scores is None else np.asarray(scores, float), np.full(n, height),
                      np.zeros(n, int), np.zeros(n), **kw)


def car_ap(gts, dets, **kw):
    return evaluate(gts, dets, classes=("Car",), settings=("strict",), **kw)["strict"]["Car"]["bev"]["moderate"]


@pytest.mark.parametrize("n, official", [(10, 9 / 40 * 100), (40, 39 / 40 * 100), (41, 100.0)])
def test_official_r40_divides_by_40_and_credits_one_step_up(n, official):
    gt = frame(cars(n), ["Car"] * n)
    det = frame(cars(n) + [0.02, 0, 0, 0, 0, 0, 0], ["Car"] * n, np.linspace(0.9, 0.5, n))
    assert car_ap([gt], [det]) == pytest.approx(100.0)
    assert car_ap([gt], [det], conventions="official") == pytest.approx(official)


def test_official_and_exact_r40_on_a_hand_computed_case():
    # 2 cars; detections TP 0.9, FP 0.8 (nowhere near a car), TP 0.7
    gt = frame(cars(2), ["Car"] * 2)
    det = frame(np.concatenate([cars(1), cars(1, 60.0), cars(2)[1:]]), ["Car"] * 3, [0.9, 0.8, 0.7])
    # exact: precision 1 up to recall 0.5 (20 points), 2/3 beyond (20 points)
    assert car_ap([gt], [det]) == pytest.approx((20 + 20 * 2 / 3) / 40 * 100)
    # official: thresholds [0.9, 0.7] credited to recall points 0 and 1; only point 1 (2/3) is summed
    assert official_thresholds(np.array([0.9, 0.7]), 2) == [0.9, 0.7]
    assert car_ap([gt], [det], conventions="official") == pytest.approx(2 / 3 / 40 * 100)
    with pytest.raises(ValueError, match="conventions"):
        car_ap([gt], [det], conventions="kitti")


def test_detections_inside_dontcare_regions_are_not_false_positives():
    gt = frame(cars(4), ["Car"] * 4, dontcare=np.array([[100.0, 150.0, 200.0, 200.0]]))
    fp_box = np.array([[100.0, 150.0, 190.0, 190.0]])  # 2-D box inside the DontCare region
    boxes = np.concatenate([cars(1, 80.0), cars(4)])
    bbox = np.concatenate([fp_box, np.full((4, 4), np.nan)])
    det = frame(boxes, ["Car"] * 5, [0.95, 0.9, 0.8, 0.7, 0.6], bbox=bbox)
    assert car_ap([gt], [det], dontcare=False) == pytest.approx(80.0)  # the top-scoring FP costs 20
    assert car_ap([gt], [det]) == pytest.approx(100.0)
    assert car_ap([gt], [det], conventions="official") == pytest.approx(7.5)  # 4 labels: 3 of 40 points summed
    det.bbox[0] = [0.0, 0.0, 90.0, 60.0]  # outside the region: a false positive again
    assert car_ap([gt], [det]) == pytest.approx(80.0)


def test_a_truncated_car_beside_the_sensor_keeps_its_2d_box_and_stays_evaluated():
    """KITTI 000010's first car: 5.2 m ahead, 4.4 m to the right, truncation 0.80, part of it behind the camera."""
    calib = read_calib(MORE / "calib" / "000010.txt")
    gt, = load_ground_truth(MORE, ["000010"])[0]
    label = read_label(MORE / "label_2" / "000010.txt")[0]
    box = gt.boxes[:1]
    assert label.truncated == pytest.approx(0.8) and box[0, 0] < 6.5
    proj = project_boxes_to_image(box, calib, image_shape=(375, 1242))
    assert np.isfinite(proj).all()
    assert proj[0, 2] == pytest.approx(1241.0) and proj[0, 3] == pytest.approx(374.0)  # cut by the image border
    assert abs(proj[0, 0] - label.bbox[0]) < 40  # the label's left edge, 1013 px
    kept = restrict_to_fov(FrameBoxes(box, ["Car"], np.ones(1)), calib)
    assert len(kept.boxes) == 1 and kept.height[0] > 150
    behind = restrict_to_fov(FrameBoxes(np.array([[-10.0, 0, -1, 4, 2, 1.5, 0]]), ["Car"], np.ones(1)), calib)
    assert len(behind.boxes) == 0


def test_written_labels_reread_by_the_evaluator_give_the_in_memory_ap(tmp_path):
    """Detections -> KITTI label files (the predict job's writer, with calibration) -> ``eval --pred``: the same
    AP as the evaluator gives the detections themselves."""
    from maskworks.apps.commands.lidar import eval_detection
    from maskworks.domains.lidar.detection.decode import Detections
    from maskworks.domains.lidar.detection.predict import DetectionResult

    rng = np.random.default_rng(0)
    data = tmp_path / "kitti"
    for d in ("velodyne", "label_2", "calib"):
        (data / d).mkdir(parents=True)
    pred = tmp_path / "pred"
    pred.mkdir()
    frames = [(KITTI, f) for f in ("000000", "000001", "000002")] + [(MORE, f) for f in ("000010", "000134")]
    in_memory_gt, in_memory_det = [], []
    for root, f in frames:
        for d, ext in (("velodyne", "bin"), ("label_2", "txt"), ("calib", "txt")):
            (data / d / f"{f}.{ext}").symlink_to(root / d / f"{f}.{ext}")
        gts, calibs = load_ground_truth(root, [f])
        g, calib = gts[0], calibs[0]
        keep = [i for i, c in enumerate(g.classes) if c in ("Car", "Pedestrian", "Cyclist")]
        boxes = g.boxes[keep] + rng.normal(0, [0.15, 0.15, 0.05, 0.1, 0.05, 0.05, 0.03], (len(keep), 7))
        fp = np.c_[rng.uniform(5, 40, 3), rng.uniform(-8, 8, 3), np.full(3, -1.0), np.full((3, 3), [4.0, 1.7, 1.5]),
                   rng.uniform(-3, 3, 3)]
        boxes = np.concatenate([boxes, fp])
        classes = [g.classes[i] for i in keep] + ["Car"] * 3
        scores = rng.uniform(0.1, 0.9, len(boxes))
        det = Detections(boxes, classes, scores)
        res = DetectionResult(f"{f}.bin", np.zeros((0, 3)), det, 0.05, [], 0.0, "cpu", 0, calib, f"{f}.txt")
        res.write(pred / f)
        in_memory_gt.append(g)
        in_memory_det.append(restrict_to_fov(FrameBoxes(boxes, classes, scores, name=f), calib))
    out = tmp_path / "res.json"
    assert eval_detection(["--data", str(data), "--pred", str(pred), "--json", str(out)]) == 0
    written = json.loads(out.read_text())["results"]
    direct = evaluate(in_memory_gt, in_memory_det)
    for setting in ("strict", "loose"):
        for cls in ("Car", "Pedestrian", "Cyclist"):
            for m in ("bev", "3d"):
                for lv in ("easy", "moderate", "hard"):
                    a, b = written[setting][cls][m][lv], direct[setting][cls][m][lv]
                    assert (a is None and np.isnan(b)) or a == pytest.approx(b, abs=1e-9), (setting, cls, m, lv)
    assert 0 < direct["strict"]["Car"]["bev"]["moderate"] < 100  # a case where the detections differ


def test_labels_written_without_calibration_score_nothing_in_the_official_way(tmp_path):
    """Without a calibration the writer has no 2-D boxes (-1): the official evaluator (and ``--pred``) ignores such
    detections at every level, which is why the predict job warns."""
    from maskworks.apps.commands.lidar import eval_detection
    from maskworks.domains.lidar.detection.decode import Detections
    from maskworks.domains.lidar.detection.predict import DetectionResult

    gts, _ = load_ground_truth(KITTI, ["000002"])
    car = gts[0].boxes[[gts[0].classes.index("Car")]]
    pred = tmp_path / "pred"
    pred.mkdir()
    DetectionResult("000002.bin", np.zeros((0, 3)), Detections(car, ["Car"], np.ones(1)), 0.05, [], 0.0, "cpu", 0,
                    None, None).write(pred / "000002")
    assert read_label(pred / "000002.txt")[0].bbox == (-1.0, -1.0, -1.0, -1.0)
    out = tmp_path / "res.json"
    assert eval_detection(["--data", str(KITTI), "--frames", "000002", "--pred", str(pred), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["results"]["loose"]["Car"]["bev"]["moderate"] == 0.0
