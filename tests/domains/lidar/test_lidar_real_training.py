"""Training on real scans (issue #22): KITTI folders and camera-view crops, AV2/PandaSet samples in KITTI's frame,
ground-truth database sampling, per-object and global augmentation, training windows, folds and out-of-fold
predictions. Invariants and hand-made cases; the shipped frames only."""
import json

import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.data import data_path
from maskworks.domains.lidar.detection.augment import (
    build_gt_database,
    count_in_boxes,
    global_transform,
    noise_objects,
    points_in_box_mask,
    sample_objects,
)
from maskworks.domains.lidar.ground import ground_under_boxes
from maskworks.domains.lidar.real_data import (
    boxes_json_scans,
    camera_fov_mask,
    kitti_frames,
    read_kitti_frame,
    resolve_data_path,
)

KITTI = data_path("3d", "kitti", "training")
MORE = data_path("3d", "kitti_more", "training")


@pytest.fixture(scope="module")
def scans():
    return kitti_frames([KITTI, MORE])


def test_full_scans_are_cut_to_the_camera_view_and_crops_stay_whole(scans):
    full = read_kitti_frame(KITTI, "000000", crop_to_fov=False)
    cut = next(s for s in scans if s.name == "000000")
    assert 15_000 < len(cut.points) < len(full.points) / 4  # a 360-degree scan keeps its camera's ~81 degrees
    assert camera_fov_mask(cut.points, cut.calib).all() and cut.points[:, 0].min() > 0
    crop = read_kitti_frame(MORE, "000010", crop_to_fov=False)
    assert len(next(s for s in scans if s.name == "000010").points) == len(crop.points) == 16_464
    assert [s.name for s in scans] == ["000000", "000001", "000002", "000010", "000134"]
    assert kitti_frames([KITTI, MORE], exclude={"000001", "000134"})[-1].name == "000010"
    with pytest.raises(InputError, match="000099"):
        kitti_frames([KITTI], ["000099"])


def test_a_data_path_with_an_unset_variable_says_what_to_set(monkeypatch):
    monkeypatch.delenv("KITTI_MORE_TEST", raising=False)
    with pytest.raises(InputError, match="KITTI_MORE_TEST, which is not set"):
        resolve_data_path("$KITTI_MORE_TEST/training")


def test_av2_and_pandaset_samples_are_moved_onto_kittis_road(tmp_path):
    pts = np.array([[5, 0, -0.4, 0.1], [10, 2, 0.5, 0.2], [10.2, 2.1, 0.4, 0.3]], np.float32)
    av2 = tmp_path / "av2"
    av2.mkdir()
    pts.tofile(av2 / "a.bin")
    box = {"box": [10.0, 2.0, 0.4, 4.0, 2.0, 1.6, 0.1], "kitti_class": "Car", "num_interior_pts": 2, "points_in_box": 2}
    (av2 / "boxes.json").write_text(json.dumps({"sweeps": [{"file": "a.bin", "ground_z_mode_m": -0.4,
                                                            "boxes": [box, {**box, "kitti_class": None}]}]}))
    s, = boxes_json_scans(av2)
    assert s.points[0, 2] == pytest.approx(-1.73) and s.boxes[0, 2] == pytest.approx(0.4 - 1.33)
    assert s.classes == ["Car", "Other"] and not s.fov_only and s.name == "av2/a"
    assert boxes_json_scans(av2, min_points=3)[0].classes == ["Other", "Other"]
    ps = tmp_path / "ps"
    ps.mkdir()
    pts.tofile(ps / "002_00.bin")
    (ps / "boxes.json").write_text(json.dumps({"median_car_bottom_z_m": -0.3, "boxes": [box]}))
    s, = boxes_json_scans(ps)
    assert s.points[0, 2] == pytest.approx(-0.4 - 1.43) and s.source == "pandaset"


def test_database_sampling_pastes_real_objects_on_the_ground_without_collisions(scans):
    db = build_gt_database(scans, ("Car", "Pedestrian", "Cyclist"))
    assert sum(o.cls == "Car" for o in db) >= 8 and all(len(o.points) >= 5 for o in db)
    target = next(s for s in scans if s.name == "000002")
    rng = np.random.default_rng(0)
    pts, boxes, classes = sample_objects(target.points, target.boxes, target.classes, db,
                                         {"Car": 6, "Pedestrian": 3, "Cyclist": 2}, rng, target.name)
    new = boxes[len(target.boxes):]
    assert sum(c == "Car" for c in classes) == 6 and len(new) >= 5
    r = 0.5 * np.hypot(boxes[:, 3], boxes[:, 4])
    d = np.hypot(boxes[:, None, 0] - boxes[None, :, 0], boxes[:, None, 1] - boxes[None, :, 1])
    assert (d + np.eye(len(boxes)) * 1e9 >= r[:, None] + r[None, :]).all()  # no two boxes' circles overlap
    assert (count_in_boxes(pts, new) >= 5).all()
    ground = ground_under_boxes(pts, new)
    ok = np.isfinite(ground)
    assert ok.sum() >= 3 and np.abs((new[ok, 2] - new[ok, 5] / 2) - ground[ok]).max() < 0.3
    for b in new:  # the target's own returns above the road are gone from each pasted footprint
        above = points_in_box_mask(pts, b, z_lo=b[2] - b[5] / 2 + 0.2, z_hi=np.inf)
        assert above.sum() <= points_in_box_mask(pts, b).sum() + 3


def test_object_noise_and_global_transforms_carry_each_objects_returns_with_it(scans):
    s = next(s for s in scans if s.name == "000010")
    before = count_in_boxes(s.points, s.boxes)
    pts, boxes = noise_objects(s.points, s.boxes, np.random.default_rng(1), loc_std=0.5)
    assert np.abs(boxes[:, :2] - s.boxes[:, :2]).max() > 0.05  # something moved
    assert (count_in_boxes(pts, boxes) >= before - 1).all()
    pts2, boxes2 = global_transform(pts, boxes, np.random.default_rng(2), max_turn=np.pi)
    np.testing.assert_array_equal(count_in_boxes(pts2, boxes2), count_in_boxes(pts, boxes))
    assert not np.allclose(boxes2[:, :2], boxes[:, :2])


def test_training_windows_are_deterministic_and_hold_their_targets(scans):
    from maskworks.domains.lidar.detection.real_scenes import WindowScans, window_grid

    ds = WindowScans(window_grid(25.6, (-3.0, 1.0), 0.4), scans, {"kitti": 2}, passes=2, seed=3,
                     sample={"Car": 4, "Pedestrian": 2, "Cyclist": 2})
    assert len(ds) == 2 * 2 * len(scans)
    a, b = ds[7], ds[7]
    assert all(torch_equal(a[k], b[k]) for k in a) and not torch_equal(a["occ"], ds[8]["occ"])
    assert a["occ"].shape == (10, 64, 64) and a["occ"].sum() > 100
    found = 0
    for i in range(len(ds)):
        pts, boxes, labels = ds.item(i)
        assert (np.abs(boxes[:, :2]) < 12.8).all() and set(labels.tolist()) <= {-1, 0, 1, 2}
        found += int((labels >= 0).any())
    assert found >= 0.7 * len(ds)  # windows are centred on objects


def torch_equal(a, b):
    return bool((a == b).all()) if a.shape == b.shape else False


def test_the_folds_are_fixed_and_cover_the_31_frames_once():
    from maskworks.domains.lidar.detection.task import held_out_frames, kitti_folds

    folds = kitti_folds()
    assert [len(f) for f in folds] == [11, 10, 10] and len(set(sum(folds, []))) == 31
    assert folds[0][:2] == ["000009", "000010"] and "000008" not in sum(folds, [])
    assert held_out_frames({"holdout_fold": 1, "holdout": ["x"]}) == ["x"] + folds[1]
    with pytest.raises(ValueError, match="3 folds"):
        held_out_frames({"holdout_fold": 3})


@pytest.mark.slow
def test_held_out_runs_predict_only_their_frames_and_pool_into_one_set(tmp_path):
    from maskworks.apps.cli import main
    from maskworks.domains.lidar.detection.crossval import VARIANTS, cv_report, load_runs, pooled

    runs = []
    for name, held in (("a", '["000000"]'), ("b", '["000001","000010"]')):
        out = tmp_path / name
        assert main(["train", "lidar/detector", "--preset", "smoke", "--no-progress", "--out", str(out),
                     "--set", f"data.holdout={held}", "--set", 'data.kitti_dirs=["shipped:3d/kitti/training",'
                     '"shipped:3d/kitti_more/training"]', "--set", "trainer.max_steps=2"]) == 0
        runs.append(out)
    oof = json.loads((runs[1] / "oof.json").read_text())
    assert oof["frames"] == ["000001", "000010"] and set(oof["steps"]["2"]) == set(VARIANTS)
    dets = pooled(sum(load_runs(runs).values(), []))
    assert sorted(dets) == ["000000", "000001", "000010"]
    with pytest.raises(ValueError, match="left out by two runs"):
        pooled(sum(load_runs([runs[0], runs[0]]).values(), []))
    rep = cv_report(runs, [KITTI, MORE])
    e = rep["configs"]["scratch-s0"]
    assert e["frames"] == 3 and e["final"]["strict"]["Car"]["num_gt"]["moderate"] == 5  # 000010's five moderate cars
