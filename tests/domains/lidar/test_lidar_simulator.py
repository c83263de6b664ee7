"""The LiDAR scene simulator: determinism, points on surfaces, beam elevations."""
from __future__ import annotations

import numpy as np

from maskworks.domains.lidar.boxes import points_in_rotated_box
from maskworks.domains.lidar.simulator import cast, hdl64_elevations, random_scene, simulate_scene


def test_simulator_is_deterministic_under_a_seed() -> None:
    a = simulate_scene(3, azimuth_step_deg=1.0)
    b = simulate_scene(3, azimuth_step_deg=1.0)
    c = simulate_scene(4, azimuth_step_deg=1.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] and set(a[2]) <= {"Car", "Pedestrian", "Cyclist"}
    assert a[0].shape[1] == 4 and a[1].shape == (len(a[2]), 7) and a[0].dtype == np.float32
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_points_lie_on_surfaces_and_boxes_follow_the_kitti_lidar_convention() -> None:
    scene = random_scene(5)
    pts, src = cast(scene, hdl64_elevations(), azimuth_step_deg=1.0, range_noise=0.0)
    ground = pts[src == -1]
    assert len(ground) > 1000
    np.testing.assert_allclose(ground[:, 2], -1.73, atol=1e-4)  # ground points at the ground height
    m = len(scene.boxes)
    for j in range(m):  # every box hit lies on its box (surface, within 1 mm)
        hits = pts[src == j]
        if len(hits):
            grown = scene.boxes[j].copy()
            grown[3:6] += 2e-3
            assert points_in_rotated_box(hits, grown[None])[0].all()
            shrunk = scene.boxes[j].copy()
            shrunk[3:6] -= 2e-2
            assert not points_in_rotated_box(hits, shrunk[None])[0].any()  # on the surface, not inside
    # boxes stand on the ground: z_center - h / 2 == ground
    np.testing.assert_allclose(scene.boxes[:, 2] - scene.boxes[:, 5] / 2, -1.73, atol=1e-9)
    trunk = pts[(src >= m) & (src < m + len(scene.cylinders))]
    assert len(trunk) > 0
    d = np.hypot(trunk[:, 0:1] - scene.cylinders[:, 0], trunk[:, 1:2] - scene.cylinders[:, 1])
    assert np.abs(d - scene.cylinders[:, 2]).min(1).max() < 1e-3  # trunk hits at the trunk radius
    crowns = pts[src >= m + len(scene.cylinders)]
    d = np.linalg.norm(crowns[:, None, :3] - scene.spheres[None, :, :3], axis=-1)
    assert np.abs(d - scene.spheres[:, 3]).min(1).max() < 1e-3  # crown hits on the sphere


def test_beam_elevations_match_the_configured_beams() -> None:
    el = hdl64_elevations()
    assert len(el) == 64 and el[0] == 2.0 and el[-1] == -24.8
    scene = random_scene(1)
    pts, _ = cast(scene, el, azimuth_step_deg=2.0, range_noise=0.0)
    elev = np.rad2deg(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
    nearest = np.abs(elev[:, None] - el[None]).min(1)
    assert nearest.max() < 1e-3  # every point is on one of the 64 beams
    seen = np.unique(np.abs(elev[:, None] - el[None]).argmin(1))
    assert len(seen) >= 60  # nearly every beam returns something (upper beams may see only sky)


def test_hdl64e_layout_has_two_blocks_and_every_point_is_on_a_beam() -> None:
    from maskworks.domains.lidar.simulator import hdl64e_elevations

    el = hdl64e_elevations()
    assert len(el) == 64 and el[0] == 2.0 and el[31] == -8.33 and el[32] == -8.83 and el[-1] == -24.33
    np.testing.assert_allclose(np.diff(el[:32]), -10.33 / 31)  # ~1/3 deg apart in the upper block
    np.testing.assert_allclose(np.diff(el[32:]), -0.5)  # 1/2 deg in the lower block
    pts, _ = cast(random_scene(2), el, azimuth_step_deg=2.0, range_noise=0.0)
    elev = np.rad2deg(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
    assert np.abs(elev[:, None] - el[None]).min(1).max() < 1e-3


def test_car_cabins_keep_the_labels_and_put_the_cabin_inside_the_car_box() -> None:
    plain, cabins = random_scene(7), random_scene(7, car_cabins=True)
    np.testing.assert_array_equal(plain.objects, cabins.objects)  # same objects, same labels
    assert plain.object_kind == cabins.object_kind
    cars = [i for i, k in enumerate(cabins.object_kind) if k == "Car"]
    assert cabins.box_kind.count("cabin") == len(cars) > 0
    pts, src = cast(cabins, hdl64_elevations(), azimuth_step_deg=0.5, range_noise=0.0)
    for j in cars:
        car = cabins.objects[j]
        parts = np.nonzero(cabins.box_object == j)[0]
        assert [cabins.box_kind[p] for p in parts] == ["Car", "cabin"]
        hits = pts[np.isin(src, parts)]
        grown = car.copy()
        grown[3:6] += 2e-3
        assert points_in_rotated_box(hits, grown[None])[0].all()  # every part lies inside the label box
        body, cabin = cabins.boxes[parts]
        assert cabin[4] < body[4] and cabin[3] < body[3]  # a narrower, shorter cabin ...
        np.testing.assert_allclose(cabin[2] - cabin[5] / 2, body[2] + body[5] / 2)  # ... sitting on the body
        np.testing.assert_allclose(cabin[2] + cabin[5] / 2, car[2] + car[5] / 2)  # whose roof is the car's roof


def test_object_dropout_thins_objects_and_leaves_the_rest() -> None:
    a = simulate_scene(11, azimuth_step_deg=0.5, range_noise=0.0)
    b = simulate_scene(11, azimuth_step_deg=0.5, range_noise=0.0, object_dropout=(0.5, 0.5))
    np.testing.assert_array_equal(a[1], b[1])
    from maskworks.domains.lidar.boxes import count_points_in_boxes

    na, nb = count_points_in_boxes(a[0], a[1]).sum(), count_points_in_boxes(b[0], b[1]).sum()
    assert abs(nb / na - 0.5) < 0.05, (na, nb)  # binomial(na, 0.5): thousands of points, 5 % is > 5 sigma
    grown = a[1].copy()
    grown[:, 3:6] += 0.01
    rest = lambda p: p[~points_in_rotated_box(p, grown).any(0)]
    np.testing.assert_array_equal(rest(a[0]), rest(b[0]))  # road, buildings and trees are untouched


def test_traffic_packs_road_users_closer_than_circles_and_adds_unlabelled_clutter() -> None:
    from maskworks.domains.lidar.iou import bev_intersection

    gaps = {}
    for traffic in (False, True):
        closest = []
        for seed in range(6):
            sc = random_scene(seed, traffic=traffic)
            road = sc.boxes[[k != "building" for k in sc.box_kind]]
            inter = bev_intersection(road, road)
            np.fill_diagonal(inter, 0)
            assert inter.max() == 0  # nothing overlaps
            cars = sc.objects[[k == "Car" for k in sc.object_kind]]
            d = np.hypot(*(cars[:, None, :2] - cars[None, :, :2]).transpose(2, 0, 1))
            np.fill_diagonal(d, np.inf)
            closest.append(d.min())
            if traffic:
                assert {"van", "wall"} & set(sc.box_kind) and not {"van", "wall"} & set(sc.object_kind)
        gaps[traffic] = min(closest)
    # circles keep car centres >= 2 x (half diagonal + 0.2) ~ 4.6 m apart; rectangles allow side by side
    assert gaps[False] > 4.0 and gaps[True] < 3.5, gaps


def test_kerb_walls_park_cars_in_rows_beside_walls_without_overlaps() -> None:
    import pytest

    from maskworks.domains.lidar.iou import bev_intersection

    def parked_beside_walls(kerb_walls: bool) -> tuple[int, int]:
        beside = total = 0
        for seed in range(10):
            sc = random_scene(seed, traffic=True, kerb_walls=kerb_walls)
            road = sc.boxes[[k != "building" for k in sc.box_kind]]
            inter = bev_intersection(road, road)
            np.fill_diagonal(inter, 0)
            assert inter.max() == 0  # nothing overlaps, walls included
            assert "wall" not in sc.object_kind  # walls stay unlabelled
            walls = sc.boxes[[k == "wall" for k in sc.box_kind]]
            cars = sc.objects[[k == "Car" for k in sc.object_kind]]
            total += len(cars)
            for c in cars:  # along a wall, within its length, 0.1-1 m from its face
                for w in walls:
                    gap = abs(c[1] - w[1]) - (c[4] + w[4]) / 2
                    if (abs(c[0] - w[0]) + c[3] / 2 <= w[3] / 2 + 1e-6 and 0.1 - 1e-6 <= gap <= 1.0 + 1e-6
                            and abs(np.sin(c[6] - w[6])) < 0.15):
                        beside += 1
                        break
        return beside, total

    on, off = parked_beside_walls(True), parked_beside_walls(False)
    assert on[0] >= 0.25 * on[1] and off[0] <= 0.05 * off[1], (on, off)
    np.testing.assert_array_equal(random_scene(3, traffic=True).boxes, random_scene(3, traffic=True, kerb_walls=False).boxes)
    with pytest.raises(ValueError, match="needs traffic"):
        random_scene(3, kerb_walls=True)
