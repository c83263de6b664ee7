"""CenterPoint-style detector: targets <-> decoding, exact augmentation, pasting, pretrained loading, CLI."""
import json

import numpy as np
import pytest
import torch

from maskworks.domains.lidar.boxes import points_in_rotated_box
from maskworks.apps.commands.lidar import predict_detection as predict_main
from maskworks.domains.lidar.detection.decode import decode
from maskworks.domains.lidar.detection.model import CLASSES
from maskworks.domains.lidar.detection.scenes import LabelledScan, augment, object_bank, paste_objects
from maskworks.domains.lidar.detection.targets import build_targets
from maskworks.domains.lidar.detection.task import DetectorTask
from maskworks.domains.lidar.iou import bev_iou
from maskworks.domains.lidar.voxel import VoxelGrid

GRID = VoxelGrid()


def _maps_from_targets(tg):
    """Head outputs that decode exactly to the targets (logit of the Gaussian heatmap, regression at peaks)."""
    c, h, w = tg["heatmap"].shape
    heat = torch.from_numpy(tg["heatmap"]).clamp(1e-6, 1 - 1e-6)
    reg = torch.zeros(8, h * w)
    for k in np.nonzero(tg["mask"])[0]:
        reg[:, tg["ind"][k]] = torch.from_numpy(tg["reg"][k])
    reg = reg.reshape(1, 8, h, w)
    return {"heatmap": torch.logit(heat)[None], "offset": reg[:, :2], "z": reg[:, 2:3], "size": reg[:, 3:6], "rot": reg[:, 6:8]}


def test_targets_decode_back_to_the_boxes():
    boxes = np.array([[10.3, -5.1, -0.9, 4.1, 1.7, 1.5, 0.4], [-20.7, 12.2, -0.8, 0.8, 0.6, 1.7, -2.0],
                      [5.0, 30.0, -0.9, 1.8, 0.6, 1.7, 3.0], [60.0, 0, -1, 4, 2, 1.5, 0]])  # last: off the grid
    tg = build_targets(boxes, np.array([0, 1, 2, 0]), GRID)
    assert tg["mask"].sum() == 3
    # the car's centre (10.3, -5.1) lies in 0.8 m cell (ix, iy) = (62, 43): 50.3 / 0.8 = 62.9, 34.9 / 0.8 = 43.6, where the heatmap peaks at 1
    assert tg["heatmap"][0, 43, 62] == 1.0 and tg["ind"][0] == 43 * 100 + 62
    assert tg["reg"][0, :2] == pytest.approx([(10.3 + 40) / 0.8 - 62, (-5.1 + 40) / 0.8 - 43], abs=1e-6)
    det = decode(_maps_from_targets(tg), GRID, score_threshold=0.5)[0]
    assert sorted(det.classes) == sorted(CLASSES)
    for b, c in zip(boxes[:3], CLASSES):
        j = det.classes.index(c)
        assert det.boxes[j] == pytest.approx(b, abs=1e-4)
        assert det.scores[j] == pytest.approx(1.0, abs=1e-5)


def test_augmentation_moves_boxes_with_the_grid():
    box = np.array([[12.0, 5.0, -0.9, 4.0, 1.8, 1.5, 0.5]])
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (4000, 3)) * box[0, 3:6] / 2
    c, s = np.cos(0.5), np.sin(0.5)
    pts = np.c_[pts[:, 0] * c - pts[:, 1] * s, pts[:, 0] * s + pts[:, 1] * c, pts[:, 2]] + box[0, :3]
    occ = torch.from_numpy(GRID.occupancy(pts))[None]
    for u in ([0.9, 0.1], [0.9, 0.3], [0.1, 0.6], [0.2, 0.9]):
        o, b = augment(occ, torch.from_numpy(box)[None], torch.tensor([u]))
        centres = GRID.centers(o[0].nonzero().numpy())
        big = b[0].numpy().copy()
        big[:, 3:6] += 0.6  # a voxel centre can lie ~ half a voxel diagonal outside the box
        assert points_in_rotated_box(centres, big)[0].all(), u
        assert np.abs(centres.mean(0)[:2] - b[0, 0, :2].numpy()).max() < 0.3


def test_paste_objects_adds_real_crops_without_overlap():
    bank = object_bank({"000002"})
    assert {c for _, _, c, _ in bank} == {0, 1, 2}
    assert not any("000002" in src for *_, src in bank)  # the held-out frame never leaks into training
    ground = np.c_[np.random.default_rng(0).uniform(-40, 40, (20000, 2)), np.full(20000, -1.73), np.zeros(20000)]
    scan = LabelledScan(ground.astype(np.float32), np.zeros((0, 7)), np.zeros(0, np.int64), "flat")
    out = paste_objects(scan, bank, 8, np.random.default_rng(1), GRID)
    assert len(out.boxes) >= 4
    iou = bev_iou(out.boxes, out.boxes)
    assert np.allclose(iou, np.eye(len(out.boxes)))
    assert (points_in_rotated_box(out.points, out.boxes).sum(1) >= 5).all()
    assert np.allclose(out.boxes[:, 2] - out.boxes[:, 5] / 2, -1.73)  # standing on the road


def test_pretrained_backbone_loads_and_scratch_differs():
    from maskworks.core.training.checkpoint import load_weights
    from maskworks.data import data_path

    path = data_path("weights", "lidar-detector-rmae-backbone.safetensors")
    cfg = {"model": {"widths": [16, 32, 64], "pretrained": "shipped:weights/lidar-detector-rmae-backbone.safetensors"}}
    m = DetectorTask(cfg).build_model()
    sd = load_weights(path)
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, sd[k]), k
    scratch = DetectorTask({"model": {"widths": [16, 32, 64], "pretrained": None}}).build_model()
    assert not torch.equal(scratch.backbone.stage1[0].weight, sd["stage1.0.weight"])
    with pytest.raises(ValueError, match="widths"):
        DetectorTask({"model": {"widths": [8, 16, 32], "pretrained": cfg["model"]["pretrained"]}}).build_model()
    out = m(torch.zeros(1, 10, 200, 200))
    assert out["heatmap"].shape == (1, 3, 100, 100) and out["rot"].shape == (1, 2, 100, 100)


def test_init_starts_a_larger_grid_from_a_trained_detector():
    from maskworks.core.training.checkpoint import load_weights
    from maskworks.data import data_path

    path = data_path("weights", "lidar-detector.safetensors")
    far = {"x_range": [-40.0, 72.0], "y_range": [-40.0, 40.0], "z_range": [-3.0, 1.0], "voxel_size": 0.4}
    m = DetectorTask({"model": {"grid": far, "init": str(path), "pretrained": None}}).build_model()
    assert m.voxel_grid.shape[1:] == (200, 280)
    sd = load_weights(path)
    assert sd and all(torch.equal(v, sd[k]) for k, v in m.state_dict().items())
    with pytest.raises(ValueError, match="both set"):
        DetectorTask({"model": {"init": str(path), "pretrained": "shipped:weights/lidar-detector-rmae-backbone.safetensors"}}).build_model()
    with pytest.raises(ValueError, match="does not fit"):
        DetectorTask({"model": {"widths": [8, 16, 32], "init": str(path), "pretrained": None}}).build_model()
    backbone = data_path("weights", "lidar-detector-rmae-backbone.safetensors")
    with pytest.raises(ValueError, match="lidar-detector-rmae-backbone.safetensors is not a lidar/detector"):
        DetectorTask({"model": {"init": str(backbone), "pretrained": None}}).build_model()


def test_predict_cli_writes_kitti_labels_and_json(tmp_path, capsys):
    from maskworks.data import data_path
    from maskworks.domains.lidar.detection.inference import load_detector
    from maskworks.core.io.points import read_scan
    from maskworks.domains.lidar.kitti import read_label

    scan = data_path("3d", "kitti", "training", "velodyne", "000002.bin")
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"1234567")
    rc = predict_main([str(scan), str(bad), "--out", str(tmp_path / "out"), "--threshold", "0.2"])
    assert rc == 2 and "broken.bin" in capsys.readouterr().err
    res = json.loads((tmp_path / "out" / "000002.json").read_text())
    want = load_detector().predict(read_scan(scan).points, 0.2)  # the CLI's default: the shipped pair
    assert len(res["detections"]) == len(want)
    labels = read_label(tmp_path / "out" / "000002.txt")
    assert [o.type for o in labels] == want.classes
    assert [o.score for o in labels] == pytest.approx(list(want.scores), abs=1e-4)


def test_smoke_fit_gives_a_loadable_detector_and_kitti_metrics(tmp_path):
    import math

    from maskworks.apps.recipes import find_recipe
    from maskworks.core.training import fit, load_recipe
    from maskworks.domains.lidar.detection.inference import LidarDetector

    cfg = load_recipe(find_recipe("lidar/detector-sim"), "smoke", ["trainer.max_steps=2"])  # rounds 1-7's recipe
    out = fit(cfg, tmp_path, progress=False)
    assert out["steps"] == 2 and math.isfinite(out["final_loss"])
    ev = json.loads((tmp_path / "detection_eval.json").read_text())
    assert ev["heldout"]["frames"] == ["000002"] and ev["train_frames"]["frames"] == ["000000", "000001"]
    assert ev["heldout"]["strict"]["Car"]["num_gt"]["moderate"] == 1  # the one 000002 car within reach
    det = LidarDetector.load(tmp_path / "model.safetensors")
    assert det.model.backbone.widths == (8, 16, 32)
    r = det.predict(np.zeros((10, 4), np.float32), score_threshold=0.0, top_k=5)
    assert len(r) <= 5 and r.boxes.shape[1] == 7
    # a real-data run (round 8's recipe) started from those weights (model.init) trains on real frames, predicts
    # the frame it left out and loads for inference too
    cfg2 = load_recipe(find_recipe("lidar/detector"), "smoke", ["trainer.max_steps=1", f"model.init={tmp_path / 'model.safetensors'}"])
    assert fit(cfg2, tmp_path / "ft", progress=False)["steps"] == 1
    assert json.loads((tmp_path / "ft" / "oof.json").read_text())["frames"] == ["000002"]
    assert LidarDetector.load(tmp_path / "ft" / "model.safetensors").model.backbone.widths == (8, 16, 32)


def test_move_away_keeps_the_view_and_thins_as_inverse_square():
    from maskworks.domains.lidar.detection.scenes import move_away

    rng = np.random.default_rng(0)
    box = np.array([10.0, 5.0, -0.9, 4.0, 1.8, 1.5, 0.3])
    local = rng.uniform(-1, 1, (20000, 3)) * box[3:6] / 2
    c, s = np.cos(box[6]), np.sin(box[6])
    local[:, :2] = local[:, :2] @ np.array([[c, s], [-s, c]])  # rotate into the box's heading
    pts = np.c_[local + box[:3], np.zeros(20000)].astype(np.float32)
    assert points_in_rotated_box(pts, box[None])[0].all()
    p, b = move_away(pts, box, 2.0, np.random.default_rng(1))
    assert np.hypot(*b[:2]) == pytest.approx(2 * np.hypot(*box[:2]))
    assert b[2] == box[2] and (b[3:] == box[3:]).all()  # same height, size and heading: same visible side
    assert abs(len(p) / len(pts) - 0.25) < 0.02  # 1 / 2^2 of the returns (binomial, 20k draws)
    assert points_in_rotated_box(p, b[None])[0].all()  # the kept points moved with the box
    with pytest.raises(ValueError, match="away"):
        move_away(pts, box, 0.5, rng)


def test_far_pasting_moves_objects_out_and_stands_them_on_the_scan_road():
    bank = object_bank({"000002"})
    ground = np.c_[np.random.default_rng(0).uniform(-40, 40, (20000, 2)), np.full(20000, -1.9), np.zeros(20000)]
    scan = LabelledScan(ground.astype(np.float32), np.zeros((0, 7)), np.zeros(0, np.int64), "flat", ground_z=-1.9)
    near = paste_objects(scan, bank, 12, np.random.default_rng(3), GRID)
    far = paste_objects(scan, bank, 12, np.random.default_rng(3), GRID, far_prob=1.0, max_range=50.0)
    assert np.allclose(far.boxes[:, 2] - far.boxes[:, 5] / 2, -1.9)
    bank_ranges = sorted(np.hypot(b[0], b[1]) for _, b, _, _ in bank)
    assert np.median(np.hypot(far.boxes[:, 0], far.boxes[:, 1])) > np.median(np.hypot(near.boxes[:, 0], near.boxes[:, 1]))
    assert np.hypot(far.boxes[:, 0], far.boxes[:, 1]).max() <= 50.0 + 1e-6 and bank_ranges[0] > 0


def test_simulator_settings_are_checked_and_fixed_per_scene():
    from maskworks.domains.lidar.simulator import simulator_kwargs

    sim = {"sensor_height": [1.6, 2.0], "beams": "hdl64e"}
    a, b = simulator_kwargs(sim, 5000), simulator_kwargs(sim, 5001)
    assert a["sensor_height"] == simulator_kwargs(sim, 5000)["sensor_height"] != b["sensor_height"]
    assert 1.6 <= a["sensor_height"] <= 2.0 and len(a["elevations_deg"]) == 64
    with pytest.raises(ValueError, match="unknown keys"):
        simulator_kwargs({"azimuth": 0.2}, 0)
    with pytest.raises(ValueError, match="beams"):
        simulator_kwargs({"beams": "hdl32"}, 0)


def test_a_list_of_sensors_draws_one_per_scene_with_its_own_azimuth_step():
    import numpy as np

    from maskworks.data import data_path
    from maskworks.domains.lidar.simulator import hdl32e_elevations, simulate_scene, simulator_kwargs

    sim = {"beams": ["hdl64e", "hdl64e", "hdl32e"], "azimuth_step": [0.18, 0.18, 0.33]}
    picks = [simulator_kwargs(sim, s) for s in range(5000, 5060)]
    n32 = sum(len(k["elevations_deg"]) == 32 for k in picks)
    assert 10 <= n32 <= 30  # about a third of 60 scenes
    for k in picks:  # each sensor keeps its own step
        assert k["azimuth_step_deg"] == (0.33 if len(k["elevations_deg"]) == 32 else 0.18)
    assert [len(k["elevations_deg"]) for k in picks] == [len(simulator_kwargs(sim, s)["elevations_deg"])
                                                         for s in range(5000, 5060)]  # fixed per seed
    with pytest.raises(ValueError, match="same length"):
        simulator_kwargs({"beams": ["hdl64e", "hdl32e"], "azimuth_step": 0.2}, 0)
    # the HDL-32E layout is the shipped nuScenes sweep's: its rings' median elevations, lowest and highest
    sweep = np.fromfile(next(iter(sorted(data_path("3d", "nuscenes").glob("*.pcd.bin")))), np.float32).reshape(-1, 5)
    r = np.hypot(sweep[:, 0], sweep[:, 1])
    el = np.degrees(np.arctan2(sweep[:, 2], r))
    for ring, want in ((0, -30.67), (31, 10.67), (16, hdl32e_elevations()[15])):
        assert np.median(el[(sweep[:, 4] == ring) & (r > 3)]) == pytest.approx(want, abs=0.15)
    # and a simulated HDL-32E scan has the sweep's size (~1,080 returns per ring at 0.33 deg, minus the sky)
    k32 = next(k for k in picks if len(k["elevations_deg"]) == 32)
    pts, _, _ = simulate_scene(0, **{**k32, "traffic": True})
    assert 20_000 < len(pts) < 1.05 * 32 * 360 / 0.33


@pytest.mark.parametrize("axis", ["y", "x"])
def test_unflip_maps_mirrored_targets_back_onto_the_originals(axis):
    from maskworks.domains.lidar.detection.decode import unflip

    boxes = np.array([[10.3, -5.1, -0.9, 4.1, 1.7, 1.5, 0.4], [-20.7, 12.2, -0.8, 0.8, 0.6, 1.7, -2.0]])
    mirrored = boxes.copy()
    if axis == "y":
        mirrored[:, 1], mirrored[:, 6] = -boxes[:, 1], -boxes[:, 6]
    else:
        mirrored[:, 0], mirrored[:, 6] = -boxes[:, 0], np.pi - boxes[:, 6]
    labels = np.array([0, 1])
    back = unflip(_maps_from_targets(build_targets(mirrored, labels, GRID)), axis)
    det = decode(back, GRID, score_threshold=0.5)[0]
    assert len(det) == 2
    for b, c in zip(boxes, ("Car", "Pedestrian")):
        got = det.boxes[det.classes.index(c)]
        assert got[:6] == pytest.approx(b[:6], abs=1e-4)
        assert np.cos(got[6] - b[6]) == pytest.approx(1.0, abs=1e-6)  # same heading


def test_flip_tta_is_exactly_mirror_equivariant():
    """TTA(mirror(scan)) seen back in the original grid equals TTA(scan), for any (even untrained) model."""
    from maskworks.domains.lidar.detection.model import BEVDetector
    from maskworks.domains.lidar.detection.decode import flip_tta, unflip

    torch.manual_seed(0)
    m = BEVDetector(GRID, (8, 16, 32), 8).eval()
    occ = (torch.rand(1, 10, 200, 200) < 0.02).float()
    with torch.no_grad():
        a, b = flip_tta(m, occ), unflip(flip_tta(m, occ.flip(-2)), "y")
        plain = m(occ)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k
    assert not torch.allclose(a["offset"], plain["offset"], atol=1e-3)  # it does change the untrained model's maps


def test_shipped_detector_is_the_one_its_record_describes():
    """The shipped weights are the file the record names (sha256), carry the inference variant cross-validation
    chose in their header, and the tools default to the record's threshold; one grid covers 40 m behind to 72 m
    ahead. And it puts a Car within 1 m of KITTI 000002's car (34.7 m ahead, 67 points; score 0.44, under the
    default threshold of 0.52 chosen for the best out-of-fold F1): a training frame since round 8, so this checks
    loading and coordinates, not generalisation (that is the cross-validation's job)."""
    import hashlib

    from maskworks.data import data_path
    from maskworks.domains.lidar.detection.inference import (
        DEFAULT_SCORE_THRESHOLD,
        DEFAULT_WEIGHTS,
        LidarDetector,
        shipped_record,
    )
    from maskworks.domains.lidar.detection.scenes import kitti_frame

    rec = shipped_record()
    assert hashlib.sha256(data_path(*DEFAULT_WEIGHTS).read_bytes()).hexdigest() == rec["sha256"]
    det = LidarDetector.load()
    assert det.inference_defaults == rec["inference"] and DEFAULT_SCORE_THRESHOLD == rec["threshold"]
    assert det.grid.x_range == (-40.0, 72.0)
    assert rec["cross_validation"]["seeds"] >= 2 and rec["cross_validation"]["num_labels"]["Car"] == 31
    scan = kitti_frame("000002")
    out = det.predict(scan.points, 0.3)
    cars = out.boxes[[c == "Car" for c in out.classes]]
    assert np.hypot(*(cars[:, :2] - scan.boxes[0, :2]).T).min() < 1.0


def _pair_from_the_shipped_model():
    """A near / far pair as ``--weights NEAR --far-weights FAR`` builds one: the shipped model seen through
    its x < 40 m window as the near model, and on its whole grid (to 72 m) as the far one."""
    from dataclasses import replace

    from maskworks.domains.lidar.detection.inference import LidarDetector, RangeDetector

    far = LidarDetector.load()
    near = LidarDetector(far.model, far.cfg, far.device, grid=replace(far.grid, x_range=(-40.0, 40.0)))
    return RangeDetector(near, far), near


def test_range_detector_hands_over_at_the_split_and_keeps_the_near_models_detections():
    """A pair reports exactly the near model's detections nearer than the split (38 m: the near grid's edge
    minus half a car) and only the far model's beyond it (KITTI 000001, whose car is 61 m away)."""
    from maskworks.domains.lidar.detection.scenes import kitti_frame

    pair, near = _pair_from_the_shipped_model()
    assert pair.split_x == 38.0 and pair.grid.x_range == (-40.0, 72.0)
    scan = kitti_frame("000001")
    det, only_near = pair.predict(scan.points, 0.3), near.predict(scan.points, 0.3)
    assert (only_near.boxes[:, 0] < 40).all()
    k, mine = only_near.boxes[:, 0] < pair.split_x, det.boxes[:, 0] < pair.split_x
    np.testing.assert_allclose(det.boxes[mine], only_near.boxes[k])
    assert [c for c, m in zip(det.classes, mine) if m] == [c for c, m in zip(only_near.classes, k) if m]
    assert (~mine).any()  # and the far model adds objects beyond the near grid


def test_ego_returns_are_dropped_and_no_object_is_reported_on_the_ego_vehicle():
    """The shipped nuScenes sweep has ~8,000 roof returns within 1 m of the sensor; read as occupancy they
    made the detector report a Car at the sensor (score 0.70). Dropping them removes that detection."""
    from maskworks.data import data_path
    from maskworks.domains.lidar.detection.inference import LidarDetector, drop_ego_returns
    from maskworks.core.io.points import read_scan

    pts = np.array([[0.5, 0.5, -1.0], [1.9, 0.0, 0.0], [0.0, -2.1, 0.0], [30.0, 1.0, -1.0]], np.float32)
    np.testing.assert_array_equal(drop_ego_returns(pts, 2.0), pts[2:])
    np.testing.assert_array_equal(drop_ego_returns(pts, 0.0), pts)
    sweep = read_scan(next(iter(sorted(data_path("3d", "nuscenes").glob("*.pcd.bin"))))).points
    det = LidarDetector.load()
    near = lambda d: np.hypot(d.boxes[:, 0], d.boxes[:, 1]) < 2.5  # noqa: E731
    assert near(det.predict(sweep, 0.3, ego_radius=0.0)).any()  # the failure this guards against
    kept = det.predict(sweep, 0.3)
    assert not near(kept).any() and len(kept) > 0


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a GPU")
def test_detector_on_the_gpu_gives_the_cpu_detections():
    from maskworks.domains.lidar.detection.inference import LidarDetector
    from maskworks.domains.lidar.detection.scenes import kitti_frame

    scan = kitti_frame("000002")
    cpu, gpu = LidarDetector.load(device="cpu"), LidarDetector.load(device="cuda")
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).is_cuda
    a, b = cpu.predict(scan.points, 0.3), gpu.predict(scan.points, 0.3)
    assert a.classes == b.classes
    np.testing.assert_allclose(a.boxes, b.boxes, atol=2e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)


def test_detector_runs_where_it_is_told():
    import torch

    from maskworks.domains.lidar.detection.inference import LidarDetector

    det = LidarDetector.load(device="cpu")
    assert det.device == torch.device("cpu") and not next(det.model.parameters()).is_cuda
    auto = LidarDetector.load()
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_street_extent_and_car_count_reach_the_scenes():
    from maskworks.domains.lidar.simulator import random_scene, simulator_kwargs

    kw = simulator_kwargs({"extent": 72.0, "num_cars": [20, 20]}, 0)
    assert kw["extent"] == 72.0 and kw["num_cars"] == (20, 20)
    short = [random_scene(s) for s in range(6)]
    long = [random_scene(s, extent=72.0, num_cars=(20, 20)) for s in range(6)]
    far = lambda sc: max(abs(b[0]) for b, k in zip(sc.objects, sc.object_kind) if k == "Car")
    assert all(far(sc) <= 45.0 + 2.5 for sc in short)  # centres within the 45 m street (+ half a car length)
    assert max(far(sc) for sc in long) > 50.0
    assert all(sum(k == "Car" for k in sc.object_kind) == 20 for sc in long)  # rejection sampling finds room for all 20


def test_rotated_items_turn_points_and_boxes_together_and_differ_per_item():
    from maskworks.domains.lidar.detection.scenes import DetectionScans
    from maskworks.domains.lidar.boxes import count_points_in_boxes

    grid = VoxelGrid(x_range=(-40.0, 72.0))
    plain = DetectionScans(grid, [], 2, {"extent": 72.0}, paste=0, repeat=3)
    turned = DetectionScans(grid, [], 2, {"extent": 72.0}, paste=0, repeat=3, rotate="any")
    angles = []
    for i in range(6):
        a, b = plain.scan(i), turned.scan(i)
        # the same objects with the same returns: each visible box holds as many points as before the turn
        ra, rb = np.hypot(a.boxes[:, 0], a.boxes[:, 1]), np.hypot(b.boxes[:, 0], b.boxes[:, 1])
        assert sorted(np.round(ra, 6)) == sorted(np.round(rb, 6))
        assert sorted(count_points_in_boxes(a.points, a.boxes)) == sorted(count_points_in_boxes(b.points, b.boxes))
        ang = np.angle(np.exp(1j * (np.arctan2(b.boxes[0, 1], b.boxes[0, 0]) - np.arctan2(a.boxes[0, 1], a.boxes[0, 0]))))
        assert np.angle(np.exp(1j * (b.boxes[0, 6] - a.boxes[0, 6] - ang))) == pytest.approx(0, abs=1e-9)
        angles.append(ang)
        assert np.allclose(turned.scan(i).points, b.points)  # deterministic per item
    assert len(set(np.round(angles, 6))) == 6  # a different turn for every item, copies of a scene included
    occ = turned[0]["occ"]
    assert occ.shape[-2:] == (200, 280)  # a non-square grid: 80 m across, 112 m along x
    quarter = DetectionScans(grid, [], 2, {"extent": 72.0}, paste=0, repeat=6, rotate="quarter")
    turns = []
    for i in range(12):
        a, b = plain.scan(i % 2), quarter.scan(i)
        ang = np.arctan2(b.boxes[0, 1], b.boxes[0, 0]) - np.arctan2(a.boxes[0, 1], a.boxes[0, 0])
        turns.append(int(np.round(np.angle(np.exp(1j * ang)) / (np.pi / 2))) % 4)
        assert np.angle(np.exp(1j * (ang - turns[-1] * np.pi / 2))) == pytest.approx(0, abs=1e-9)  # whole quarter turns
    assert set(turns) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="data.rotate"):
        DetectionScans(grid, [], 1, paste=0, rotate="half")


def test_simulated_evaluation_counts_only_its_region_and_band():
    from maskworks.domains.lidar.detection.decode import Detections
    from maskworks.domains.lidar.boxes import count_points_in_boxes
    from maskworks.domains.lidar.detection.evaluate import evaluate_on_simulated
    from maskworks.domains.lidar.simulator import simulate_scene, simulator_kwargs

    sim = {"extent": 72.0, "num_cars": [14, 14]}
    truth = {}
    for s in (9000, 9001):
        pts, boxes, cls = simulate_scene(s, **simulator_kwargs(sim, s))
        truth[len(pts)] = (boxes, cls, count_points_in_boxes(pts, boxes) >= 5)

    class NearOnly:  # reports every visible object (>= 5 returns) closer than 40 m, with a perfect box
        def predict(self, pts, score_threshold=0.05, **kw):
            boxes, cls, seen = truth[len(pts)]
            near = (np.hypot(boxes[:, 0], boxes[:, 1]) < 40) & seen
            return Detections(boxes[near].astype(np.float64), [c for c, k in zip(cls, near) if k], np.ones(int(near.sum())))

    kw = dict(scenes=2, sim=sim, region=(-72.0, 72.0, -40.0, 40.0))
    near = evaluate_on_simulated(NearOnly(), band=(0.0, 40.0), **kw)["strict"]["Car"]
    far = evaluate_on_simulated(NearOnly(), band=(40.0, 80.0), **kw)["strict"]["Car"]
    assert near["bev"]["moderate"] == pytest.approx(100.0) and near["3d"]["moderate"] == pytest.approx(100.0)
    assert far["num_gt"]["moderate"] > 0 and far["bev"]["moderate"] == 0.0


class _Fixed:
    """A detector stand-in that reports fixed boxes (x given) on a grid reaching ``x_max``."""

    def __init__(self, xs, scores, x_max, classes=None):
        from maskworks.domains.lidar.detection.decode import Detections

        boxes = np.array([[x, 0, -1, 4, 1.8, 1.5, 0] for x in xs], np.float64).reshape(-1, 7)
        self.det = Detections(boxes, classes or ["Car"] * len(xs), np.array(scores, np.float64))
        self.grid = VoxelGrid(x_range=(-40.0, x_max))
        self.cfg, self.device, self.seen = {}, torch.device("cpu"), []

    def predict(self, points, score_threshold=0.3, top_k=100, **kw):
        self.seen.append((score_threshold, top_k, kw))
        return self.det


def test_range_detector_keeps_each_model_on_its_side_of_the_split():
    from maskworks.domains.lidar.detection.inference import RangeDetector

    near = _Fixed([10.0, 39.0, 37.9], [0.9, 0.8, 0.6], 40.0, ["Car", "Car", "Cyclist"])
    far = _Fixed([10.0, 39.0, 60.0], [0.5, 0.7, 0.95], 72.0)
    rd = RangeDetector(near, far, crop=False)  # stand-ins have no network to crop
    assert rd.split_x == 38.0 and rd.grid is far.grid
    r = rd.predict(np.zeros((5, 3)), 0.2, tta=False)
    # near keeps x = 10 and 37.9 (< 38), far keeps x = 39 and 60; best first
    assert r.boxes[:, 0].tolist() == [60.0, 10.0, 39.0, 37.9]
    assert r.scores.tolist() == [0.95, 0.9, 0.7, 0.6] and r.classes == ["Car", "Car", "Car", "Cyclist"]
    assert near.seen == far.seen == [(0.2, 100, {"tta": False})]
    assert rd.predict(np.zeros((5, 3)), top_k=2).scores.tolist() == [0.95, 0.9]
    with pytest.raises(ValueError, match="longer grid"):
        RangeDetector(near, _Fixed([], [], 40.0), crop=False)


def test_receptive_field_is_within_the_margin_the_range_detector_crops_by():
    from maskworks.domains.lidar.detection.inference import RECEPTIVE_CELLS
    from maskworks.domains.lidar.detection.model import BEVDetector

    torch.manual_seed(0)
    m = BEVDetector().eval()
    x = torch.zeros(1, 10, 200, 200)
    with torch.no_grad():
        a = m(x)
        x[0, 5, 100, 100] = 1
        b = m(x)
    changed = (sum((a[k] - b[k]).abs().sum(1)[0] for k in a) > 0).numpy()
    ys, xs = np.nonzero(changed)
    reach = max(np.abs(2 * xs + 0.5 - 100.5).max(), np.abs(2 * ys + 0.5 - 100.5).max())  # stride-2 cells -> input cells
    assert 8 <= reach and reach + 2 <= RECEPTIVE_CELLS  # + the 3 x 3 peak pool at stride 2


def test_range_detector_crops_the_far_grid_without_changing_what_it_reports():
    """The far model runs on its grid from x = 28.8 m (38 m minus the receptive field, on the stride-4
    lattice): its detections beyond the split equal the whole grid's (KITTI 000001, top 500, floor 0.2; at a
    floor of 0.05 the whole grid's 465 candidates, against the window's 139, leave a few different low-score
    boxes beyond the split after suppression)."""
    from maskworks.domains.lidar.detection.inference import LidarDetector
    from maskworks.domains.lidar.detection.scenes import kitti_frame

    pair, _ = _pair_from_the_shipped_model()
    assert pair.far.grid.x_range == (28.8, 72.0) and pair.far.grid.shape[1:] == (200, 108)
    whole = LidarDetector(pair.far.model, pair.far.cfg, pair.far.device)
    scan = kitti_frame("000001")
    a, b = (d.predict(scan.points, 0.2, top_k=500) for d in (pair.far, whole))
    ka, kb = a.boxes[:, 0] >= pair.split_x, b.boxes[:, 0] >= pair.split_x
    assert ka.sum() == kb.sum() >= 5
    np.testing.assert_allclose(a.boxes[ka], b.boxes[kb], atol=1e-6)
    np.testing.assert_allclose(a.scores[ka], b.scores[kb], atol=1e-6)
    assert [c for c, k in zip(a.classes, ka) if k] == [c for c, k in zip(b.classes, kb) if k]


def test_inference_defaults_come_from_the_weights_header_and_calls_override_them(tmp_path, monkeypatch):
    """The shipped detector's header names the inference variant cross-validation chose; predict() without
    options runs it, and an explicit option wins."""
    from maskworks.core.training.checkpoint import save_weights
    from maskworks.domains.lidar.detection import inference as inf
    from maskworks.domains.lidar.detection.model import BEVDetector

    grid = {"x_range": [-8.0, 8.0], "y_range": [-8.0, 8.0], "z_range": [-3.0, 1.0], "voxel_size": 0.4}
    model = BEVDetector(grid=grid, widths=(8, 16, 32), head_channels=8)
    meta = {"task": "maskworks.domains.lidar.detection.task:DetectorTask",
            "model": {"grid": grid, "widths": [8, 16, 32], "head_channels": 8}, "inference": {"fit": False}}
    save_weights(model, tmp_path / "m.safetensors", metadata=meta)
    det = inf.LidarDetector.load(tmp_path / "m.safetensors", "cpu")
    assert det.inference_defaults == {"tta": True, "settle": True, "fit": False}
    calls = []
    monkeypatch.setattr(inf, "fit_cars", lambda idx, boxes, classes: calls.append(1) or boxes)
    pts = np.random.default_rng(0).uniform(-6, 6, (2000, 3)).astype(np.float32)
    det.predict(pts, 0.0, top_k=3)
    assert calls == []
    det.predict(pts, 0.0, top_k=3, fit=True)
    assert calls == [1]
