"""Cars fitted to their returns: hand-built L-shaped returns with known heading and faces, the limits that
leave a car alone, and the shipped detector on the held-out KITTI car."""
from __future__ import annotations

import numpy as np
import pytest

from maskworks.domains.lidar.car_fit import MAX_TURN, closeness_heading, fit_car, fit_cars
from maskworks.domains.lidar.iou import bev_iou

TRUTH = np.array([20.0, 6.0, -0.9, 4.2, 1.8, 1.5, np.radians(25.0)])  # a car 21 m out, turned 25 degrees


def visible_faces(box: np.ndarray, step: float = 0.05, heights=(-0.4, 0.0, 0.4)) -> np.ndarray:
    """Returns on the two faces of ``box`` that face the sensor at the origin (an L seen from outside)."""
    c, s = np.cos(box[6]), np.sin(box[6])
    ax, ay = np.array([c, s]), np.array([-s, c])
    centre = box[:2]
    sx = -np.sign(centre @ ax) or 1.0  # which end (front / back) faces the sensor
    sy = -np.sign(centre @ ay) or 1.0
    along = np.arange(-box[3] / 2, box[3] / 2 + 1e-9, step)
    across = np.arange(-box[4] / 2, box[4] / 2 + 1e-9, step)
    side = centre + np.outer(along, ax) + sy * box[4] / 2 * ay
    end = centre + sx * box[3] / 2 * ax + np.outer(across, ay)
    xy = np.concatenate([side, end])
    return np.concatenate([np.column_stack([xy, np.full(len(xy), box[2] + h)]) for h in heights])


def test_closeness_heading_finds_the_rectangle_of_an_l():
    pts = visible_faces(TRUTH)
    assert closeness_heading(pts[:, :2]) == pytest.approx(np.radians(25.0), abs=np.radians(1.0))
    # quarter turns are the same rectangle
    turned = TRUTH.copy()
    turned[6] += np.pi / 2
    assert closeness_heading(visible_faces(turned)[:, :2]) == pytest.approx(np.radians(25.0), abs=np.radians(1.0))


def test_a_turned_and_shifted_detection_is_put_back_on_the_car():
    det = TRUTH.copy()
    det[6] -= np.radians(18.0)  # 18 degrees off, as the held-out KITTI car's box was 22
    det[:2] -= [0.45, 0.3]  # 0.54 m towards the sensor
    fitted = fit_car(visible_faces(TRUTH), det)
    assert fitted[6] == pytest.approx(TRUTH[6], abs=np.radians(1.0))
    assert np.hypot(*(fitted[:2] - TRUTH[:2])) < 0.1
    assert np.array_equal(fitted[[2, 3, 4, 5]], det[[2, 3, 4, 5]])  # height and size are the detector's
    before, after = bev_iou(TRUTH[None], det[None])[0, 0], bev_iou(TRUTH[None], fitted[None])[0, 0]
    assert before < 0.6 and after > 0.9
    # a box placed beyond the car's near faces sees only part of them within FACE_MARGIN: it gets its
    # heading, and its position moves only part of the way (never away from the car)
    beyond = TRUTH.copy()
    beyond[6] -= np.radians(18.0)
    beyond[:2] += [0.45, 0.3]
    fitted = fit_car(visible_faces(TRUTH), beyond)
    assert fitted[6] == pytest.approx(TRUTH[6], abs=np.radians(1.0))
    assert 0.1 < np.hypot(*(fitted[:2] - TRUTH[:2])) < np.hypot(*(beyond[:2] - TRUTH[:2]))


def test_the_detectors_direction_is_kept_and_only_cars_move():
    det = TRUTH.copy()
    det[6] += np.pi - np.radians(10.0)  # facing the other way, 10 degrees off: the fit turns it 10, not 170
    fitted = fit_car(visible_faces(TRUTH), det)
    assert fitted[6] == pytest.approx(TRUTH[6] + np.pi, abs=np.radians(1.0))
    boxes = np.stack([det, det])
    out = fit_cars(visible_faces(TRUTH), boxes, ["Pedestrian", "Car"])
    assert np.array_equal(out[0], det) and not np.array_equal(out[1], det)


def test_cars_are_left_alone_without_returns_or_beyond_the_limits():
    pts = visible_faces(TRUTH)
    assert np.array_equal(fit_car(pts[:10], TRUTH), TRUTH)  # too few returns
    low = visible_faces(TRUTH, heights=(-0.65,))  # 0.1 m above the box bottom: could be road
    assert np.array_equal(fit_car(low, TRUTH), TRUTH)
    far_turn = TRUTH.copy()
    far_turn[6] += MAX_TURN + np.radians(10.0)  # the L says 40 degrees: more than the fit may turn a car
    assert np.array_equal(fit_car(pts, far_turn), far_turn)
    assert np.array_equal(fit_car(np.zeros((0, 3)), TRUTH), TRUTH)
