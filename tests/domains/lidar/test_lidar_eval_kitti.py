"""Rotated IoU and KITTI AP_R40 against hand-computed cases."""
import json

import numpy as np
import pytest

from maskworks.domains.lidar.iou import bev_intersection, bev_iou, iou_3d, nms_bev
from maskworks.domains.lidar.kitti_metric import FrameBoxes, ap_r40, evaluate, objects_to_frame
from maskworks.apps.commands.lidar import eval_detection as main
from maskworks.domains.lidar.kitti import read_calib, read_label


def box(x=0.0, y=0.0, z=0.0, l=4.0, w=2.0, h=1.5, yaw=0.0):
    return np.array([[x, y, z, l, w, h, yaw]])


def test_iou_hand_computed_cases():
    a = box(yaw=0.3)
    assert bev_iou(a, a)[0, 0] == pytest.approx(1.0)
    assert iou_3d(a, a)[0, 0] == pytest.approx(1.0)
    # shifted by half its length along its heading: overlap 2 x 2 = 4, union 12 -> 1/3
    b = box(x=2 * np.cos(0.3), y=2 * np.sin(0.3), yaw=0.3)
    assert bev_iou(a, b)[0, 0] == pytest.approx(1 / 3)
    # a square rotated 90 deg is the same square
    assert bev_iou(box(1, 2, l=2, w=2), box(1, 2, l=2, w=2, yaw=np.pi / 2))[0, 0] == pytest.approx(1.0)
    # unit-half square vs the same square at 45 deg: regular octagon, area 8 (sqrt 2 - 1)
    assert bev_intersection(box(l=2, w=2), box(l=2, w=2, yaw=np.pi / 4))[0, 0] == pytest.approx(8 * (np.sqrt(2) - 1))
    # axis-aligned rectangles: [0,4]x[-1,1] and [3,5]x[0,3] overlap 1 x 1
    assert bev_intersection(box(2, 0), box(4, 1.5, l=2, w=3))[0, 0] == pytest.approx(1.0)
    # a cross: 4 x 2 and 2 x 4 at the same centre overlap 2 x 2 = 4 of union 12
    assert bev_iou(box(), box(yaw=np.pi / 2))[0, 0] == pytest.approx(1 / 3)
    # 3-D: same footprint, half the height overlapping -> 1/3
    assert iou_3d(box(h=2), box(z=1, h=2))[0, 0] == pytest.approx(1 / 3)
    assert bev_iou(box(), box(x=10))[0, 0] == 0.0
    assert bev_iou(np.zeros((0, 7)), box()).shape == (0, 1)


def test_iou_matches_monte_carlo_on_random_boxes():
    rng = np.random.default_rng(0)
    a = np.c_[rng.uniform(-1, 1, (20, 2)), np.zeros(20), rng.uniform(0.5, 4, (20, 2)), np.ones(20), rng.uniform(-3, 3, 20)]
    b = np.c_[rng.uniform(-1, 1, (20, 2)), np.zeros(20), rng.uniform(0.5, 4, (20, 2)), np.ones(20), rng.uniform(-3, 3, 20)]
    got = np.diag(bev_intersection(a, b))
    from maskworks.domains.lidar.boxes import points_in_rotated_box

    pts = np.c_[rng.uniform(-4, 4, (200_000, 2)), np.zeros(200_000)]
    mc = (points_in_rotated_box(pts, a) & points_in_rotated_box(pts, b)).mean(1) * 64
    assert np.abs(got - mc).max() < 0.1


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.concatenate([box(), box(x=0.2), box(x=10)])
    assert nms_bev(boxes, np.array([0.5, 0.9, 0.7]), 0.1).tolist() == [1, 2]


def _gt(boxes, cls="Car", height=50.0):
    n = len(boxes)
    return FrameBoxes(boxes, [cls] * n, np.ones(n), np.full(n, height), np.zeros(n, int), np.zeros(n))


def _det(boxes, scores, cls="Car"):
    return FrameBoxes(boxes, [cls] * len(boxes), np.asarray(scores, float))


CARS = np.array([[10.0, 0, -1, 4, 1.8, 1.5, 0.1], [20, 5, -1, 4.2, 1.7, 1.6, 1.0], [30, -4, -0.8, 3.9, 1.6, 1.5, -0.5],
                 [15, -6, -1, 4, 1.8, 1.5, 3.0]])


def test_perfect_detections_give_ap_100_and_shifts_lose_what_they_should():
    perfect = CARS + 1e-3
    res = evaluate([_gt(CARS)], [_det(perfect, [0.9, 0.8, 0.7, 0.6])])
    assert res["strict"]["Car"]["bev"]["moderate"] == pytest.approx(100.0)
    assert res["strict"]["Car"]["3d"]["easy"] == pytest.approx(100.0)
    assert np.isnan(res["strict"]["Pedestrian"]["bev"]["moderate"])
    # 1 m along the heading: BEV IoU 3/5 = 0.6 -> fails 0.7, passes the loose 0.5
    shifted = CARS.copy()
    shifted[:, 0] += np.cos(CARS[:, 6])
    shifted[:, 1] += np.sin(CARS[:, 6])
    res = evaluate([_gt(CARS)], [_det(shifted, [0.9, 0.8, 0.7, 0.6])])
    assert res["strict"]["Car"]["bev"]["moderate"] == 0.0
    assert res["loose"]["Car"]["bev"]["moderate"] == pytest.approx(100.0)
    # shifting only two of four cars: recall stops at 1/2 -> 20 of 40 recall points at precision 1
    half = CARS.copy()
    half[2:] = shifted[2:]
    res = evaluate([_gt(CARS)], [_det(half, [0.9, 0.8, 0.7, 0.6])])
    assert res["strict"]["Car"]["bev"]["moderate"] == pytest.approx(50.0)


def test_top_scoring_false_positive_costs_a_hand_computed_amount():
    # FP first, then 4 TPs: precision k/(k+1) at recall k/4, interpolated -> 4/5 everywhere -> AP 80
    boxes = np.concatenate([CARS + 1e-3, [[0, 30, -1, 4, 1.8, 1.5, 0]]])
    res = evaluate([_gt(CARS)], [_det(boxes, [0.9, 0.8, 0.7, 0.6, 0.95])])
    assert res["strict"]["Car"]["bev"]["moderate"] == pytest.approx(80.0)
    # FP ranked last: precision 1 up to full recall -> 100
    res = evaluate([_gt(CARS)], [_det(boxes, [0.9, 0.8, 0.7, 0.6, 0.1])])
    assert res["strict"]["Car"]["bev"]["moderate"] == pytest.approx(100.0)
    # 1 label, FP above the TP: precision 1/2 at recall 1 -> 50
    assert ap_r40(np.array([0.9, 0.8]), np.array([False, True]), 1) == pytest.approx(50.0)


def test_difficulty_and_ignored_labels():
    # a 30 px tall car is moderate/hard but not easy; a detection on it is ignored for easy
    g = _gt(CARS[:1], height=30.0)
    res = evaluate([g], [_det(CARS[:1] + 1e-3, [0.9])])
    assert np.isnan(res["strict"]["Car"]["bev"]["easy"])
    assert res["strict"]["Car"]["bev"]["moderate"] == pytest.approx(100.0)
    # a Van label makes a Car detection on it neither TP nor FP
    van = FrameBoxes(CARS[1:2], ["Van"], np.ones(1), np.full(1, 50.0))
    both = FrameBoxes(np.concatenate([CARS[:1], CARS[1:2]]), ["Car", "Van"], np.ones(2), np.full(2, 50.0))
    res = evaluate([both], [_det(np.concatenate([CARS[1:2], CARS[:1]]) + 1e-3, [0.95, 0.5])])
    assert res["strict"]["Car"]["bev"]["moderate"] == pytest.approx(100.0)
    assert van.classes == ["Van"]


def test_label_files_as_predictions_give_ap_100(tmp_path):
    from maskworks.data import data_path

    root = data_path("3d", "kitti", "training")
    pred = tmp_path / "pred"
    pred.mkdir()
    for f in ("000000", "000001", "000002"):
        lines = [ln + " 0.9" for ln in (root / "label_2" / f"{f}.txt").read_text().splitlines() if not ln.startswith("DontCare")]
        (pred / f"{f}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "res.json"
    assert main(["--data", str(root), "--pred", str(pred), "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert res["strict"]["Car"]["3d"]["moderate"] == pytest.approx(100.0)  # the 000002 car (33 px tall: moderate)
    assert res["strict"]["Pedestrian"]["bev"]["easy"] == pytest.approx(100.0)
    assert res["strict"]["Car"]["num_gt"] == {"easy": 0, "moderate": 1, "hard": 1}
    gt = objects_to_frame(read_label(root / "label_2" / "000002.txt"), read_calib(root / "calib" / "000002.txt"))
    assert gt.classes == ["Misc", "Car"]
    labels = json.loads(out.read_text())["labels"]  # every Car/Ped/Cyc label found by itself
    assert [(r["frame"], r["class"]) for r in labels] == [("000000", "Pedestrian"), ("000001", "Car"),
                                                          ("000001", "Cyclist"), ("000002", "Car")]
    assert all(r["best_iou_bev"] > 0.99 and r["score"] == 0.9 and r["distance_m"] < 0.01 for r in labels)


def test_label_matches_report_the_best_overlap_or_the_nearest_miss():
    from maskworks.domains.lidar.kitti_metric import label_matches

    g = FrameBoxes(CARS[:2], ["Car", "Car"], None, np.full(2, 50.0), np.zeros(2), np.zeros(2), name="f")
    shifted = CARS[:1].copy()
    shifted[0, :2] += [np.cos(CARS[0, 6]), np.sin(CARS[0, 6])]  # 1 m along the heading: BEV IoU 3 / 5
    far = CARS[1:2] + np.array([[3.0, 4.0, 0, 0, 0, 0, 0]])  # 5 m off, no overlap
    rows = label_matches([g], [_det(np.concatenate([shifted, far, CARS[:1] + [[0, 0.9, 0, 0, 0, 0, 0]]]), [0.8, 0.3, 0.5])])
    assert rows[0]["best_iou_bev"] == pytest.approx(0.6, abs=1e-3) and rows[0]["score"] == 0.8
    assert rows[1]["best_iou_bev"] == 0.0 and rows[1]["distance_m"] == pytest.approx(5.0) and rows[1]["score"] == 0.3
    assert rows[0]["range_m"] == pytest.approx(10.0, abs=0.1)


def test_eval_cli_names_a_bad_folder(tmp_path, capsys):
    assert main(["--data", str(tmp_path), "--pred", str(tmp_path)]) == 2
    assert "label_2" in capsys.readouterr().err


def test_simulated_scenes_can_use_another_recipes_simulator_settings(tmp_path, capsys):
    """``--sim-from`` reads data.sim from a recipe / config YAML or a detector's metadata, so detectors trained
    on different simulator settings are scored on the same held-out scenes."""
    from maskworks.data import data_path
    from maskworks.domains.lidar.kitti_metric import sim_settings_from

    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: x:Y\ndata:\n  sim: {beams: hdl64e, traffic: true, kerb_walls: true}\n  sim_azimuth_step: 1.0\n")
    assert sim_settings_from(recipe) == {"beams": "hdl64e", "traffic": True, "kerb_walls": True, "azimuth_step": 1.0}
    shipped = sim_settings_from(data_path("weights", "lidar-detector.safetensors"))
    assert shipped["beams"] == "hdl64e" and shipped["traffic"] is True
    with pytest.raises(ValueError, match="no data section"):
        (tmp_path / "n.yaml").write_text("task: x:Y\n")
        sim_settings_from(tmp_path / "n.yaml")
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path), "--sim-from", str(recipe)])  # needs --simulated
    assert "--simulated" in capsys.readouterr().err
    out = tmp_path / "res.json"
    kitti = data_path("3d", "kitti")
    assert main(["--data", str(kitti), "--frames", "000002", "--simulated", "1", "--sim-from", str(recipe),
                 "--json", str(out)]) == 0
    sim = json.loads(out.read_text())["simulated"]
    assert sim["settings"]["azimuth_step"] == 1.0 and sim["settings_from"] == str(recipe)
