"""Boxes settled on the ground seen around them: hand-built scenes with known ground, and the shipped
detector on a held-out simulated scene."""
from __future__ import annotations

import numpy as np
import pytest

from maskworks.domains.lidar.ground import MAX_SHIFT, ground_under_boxes, settle_on_ground

CAR = np.array([10.0, 2.0, -0.78, 4.0, 1.8, 1.5, 0.3])  # floats 0.2 m above a road at -1.73


def road(z_of_xy=lambda x, y: np.full_like(x, -1.73), extent=((0, 25), (-8, 12)), step=0.25) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(*extent[0], step), np.arange(*extent[1], step), indexing="ij")
    x, y = xs.ravel(), ys.ravel()
    return np.stack([x, y, z_of_xy(x, y)], 1)


def car_points(box: np.ndarray, n: int = 400, seed: int = 0) -> np.ndarray:
    """Returns on the car's body: inside its box, from 0.3 m above its bottom to its roof."""
    rng = np.random.default_rng(seed)
    local = rng.uniform(-0.5, 0.5, (n, 3)) * box[3:6]
    local[:, 2] = rng.uniform(-box[5] / 2 + 0.3, box[5] / 2, n)
    c, s = np.cos(box[6]), np.sin(box[6])
    return np.stack([box[0] + c * local[:, 0] - s * local[:, 1], box[1] + s * local[:, 0] + c * local[:, 1],
                     box[2] + local[:, 2]], 1)


def test_flat_road_puts_the_box_bottom_on_it():
    pts = np.concatenate([road(), car_points(CAR)])
    out = settle_on_ground(pts, CAR[None])
    assert out[0, 2] == pytest.approx(-1.73 + 1.5 / 2, abs=1e-9)
    assert np.array_equal(np.delete(out[0], 2), np.delete(CAR, 2))  # only the height changes


def test_sloping_road_is_read_where_the_box_stands():
    slope = lambda x, y: -1.73 - 0.01 * x  # noqa: E731  (KITTI 000002: about -1 cm per metre)
    far = CAR.copy()
    far[0] = 30.0
    pts = road(slope, extent=((15, 45), (-8, 12)))
    g = ground_under_boxes(pts, far[None])[0]
    # the ring spans x = 30 -/+ 5.2 m, so its 10th percentile lies a little below the road under the centre
    assert -2.03 - 0.06 < g < -2.03


def test_a_wall_in_the_ring_does_not_lift_the_ground():
    pts = road()
    wall_y = CAR[1] + 2.0  # a wall 1.1 m beside the car, with more returns than the road around it
    xs, zs = np.meshgrid(np.arange(5, 15, 0.05), np.arange(-1.7, 0.5, 0.05), indexing="ij")
    wall = np.stack([xs.ravel(), np.full(xs.size, wall_y), zs.ravel()], 1)
    ring = ground_under_boxes(np.concatenate([pts, wall]), CAR[None])[0]
    assert ring == pytest.approx(-1.73, abs=1e-9)


def test_own_points_alone_give_no_ground_and_the_box_stays():
    pts = car_points(CAR)  # nothing around the box: its own lowest returns are not the ground
    assert np.isnan(ground_under_boxes(pts, CAR[None])[0])
    assert np.array_equal(settle_on_ground(pts, CAR[None]), CAR[None])


def test_a_ground_far_from_the_box_is_not_trusted():
    deep = road(lambda x, y: np.full_like(x, -1.73 - MAX_SHIFT - 0.3))  # e.g. the box is on a bridge
    out = settle_on_ground(np.concatenate([deep, car_points(CAR)]), CAR[None])
    assert out[0, 2] == CAR[2]
    assert settle_on_ground(np.zeros((0, 3)), np.zeros((0, 7))).shape == (0, 7)


def test_shipped_detector_heights_move_towards_the_labels_on_a_held_out_scene():
    from maskworks.domains.lidar.detection.inference import LidarDetector
    from maskworks.domains.lidar.iou import bev_iou
    from maskworks.domains.lidar.simulator import recipe_sim, simulate_scene, simulator_kwargs

    det = LidarDetector.load()
    sim = recipe_sim(det.cfg.get("data"))
    errs = {True: [], False: []}
    for seed in (9001, 9002):  # held-out seeds (training uses 0...)
        pts, boxes, cls = simulate_scene(seed, **simulator_kwargs(sim, seed))
        cars = boxes[[c == "Car" for c in cls]]
        for settle in (True, False):
            r = det.predict(pts, score_threshold=0.3, settle=settle)
            found = r.boxes[[c == "Car" for c in r.classes]]
            iou = bev_iou(found, cars)
            for i, j in enumerate(iou.argmax(1)):
                if iou[i, j] > 0.5:
                    errs[settle].append(abs(found[i, 2] - cars[j, 2]))
    assert len(errs[True]) == len(errs[False]) >= 8
    assert np.mean(errs[True]) < 0.8 * np.mean(errs[False])  # measured with the defaults: 0.039 vs 0.053 m (one pass 0.034 vs 0.047)


def test_held_out_kitti_car_is_lowered_onto_its_falling_road():
    """KITTI 000002: the road falls ~0.35 m between the sensor and the labelled car (34 m out), which the
    detector, trained on flat simulated roads, does not see; settling moves the box down towards the label."""
    from maskworks.data import data_path
    from maskworks.domains.lidar.detection.inference import LidarDetector
    from maskworks.core.io.points import read_scan
    from maskworks.domains.lidar.iou import bev_iou
    from maskworks.domains.lidar.kitti_metric import load_ground_truth

    root = data_path("3d", "kitti", "training")
    (gt,), _ = load_ground_truth(root, ["000002"])
    label = gt.boxes[gt.classes.index("Car")]
    pts = read_scan(root / "velodyne" / "000002.bin").points
    det = LidarDetector.load()
    dz = {}
    for settle in (True, False):
        r = det.predict(pts, score_threshold=0.3, settle=settle)
        cars = r.boxes[[c == "Car" for c in r.classes]]
        best = cars[int(bev_iou(label[None], cars)[0].argmax())]
        dz[settle] = best[2] - label[2]
    assert dz[False] > 0.1  # measured 0.18 m too high (one pass 0.15)
    assert abs(dz[True]) < 0.6 * abs(dz[False])  # measured -0.07 m (one pass -0.08)
