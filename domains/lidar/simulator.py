"""A small LiDAR scene simulator: ray-cast a spinning 64-beam sensor over a synthetic street.

Scene: a flat ground plane ``sensor_height`` below the sensor, cars / pedestrians / cyclists as
oriented boxes standing on it, buildings as large boxes beside the road and trees as a vertical
cylinder (trunk) under a sphere (crown). Every ray of the sensor (``beams`` elevations x
azimuth steps) takes its nearest hit, all in vectorised numpy. Returned boxes follow the KITTI LiDAR
convention used in this domain: ``[x, y, z_center, l, w, h, yaw]``.

Beams default to 64 elevations evenly spaced from +2.0 deg to -24.8 deg (HDL-64E's span);
:func:`hdl64e_elevations` gives the real sensor's two blocks (1/3 deg spacing above -8.33 deg, 1/2 deg
below), which with a 0.18 deg azimuth step matches a KITTI scan's ~120k points. Range noise is
Gaussian along the ray; ``range_noise=0`` gives exact surfaces.

Realism options used by the detector's training data (all off by default, so R-MAE data and the
tests' exact-surface checks are unchanged): cars built from a body and a narrower, shorter cabin
(``car_cabins``), per-object point dropout (``object_dropout``, dark paint and range) with a higher
rate on cabins (``glass_dropout``: LiDAR mostly passes through windows), and tightly packed traffic
with unlabelled vans and roadside walls (``traffic``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .iou import bev_intersection

# class -> (length, width, height) mean size in metres and per-axis jitter
OBJECT_SIZES = {"Car": ((3.9, 1.6, 1.56), 0.15), "Pedestrian": ((0.8, 0.6, 1.73), 0.1),
                "Cyclist": ((1.76, 0.6, 1.73), 0.1)}
REFLECTANCE = {"ground": 0.25, "Car": 0.6, "cabin": 0.1, "Pedestrian": 0.35, "Cyclist": 0.4, "building": 0.3,
               "tree": 0.15, "van": 0.5, "wall": 0.3}


def hdl64_elevations(top_deg: float = 2.0, bottom_deg: float = -24.8, beams: int = 64) -> np.ndarray:
    return np.linspace(top_deg, bottom_deg, beams)


def hdl64e_elevations() -> np.ndarray:
    """The Velodyne HDL-64E's beam layout (as in KITTI): an upper block of 32 lasers from +2.0 to -8.33 deg
    (1/3 deg apart) and a lower block of 32 from -8.83 to -24.33 deg (1/2 deg apart)."""
    return np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.33, 32)])


def hdl32e_elevations() -> np.ndarray:
    """The Velodyne HDL-32E's beam layout (as in nuScenes): 32 lasers from +10.67 to -30.67 deg, 4/3 deg
    apart (the shipped nuScenes sweep's rings: -30.61, -29.3, ..., 9.32, 10.66 deg)."""
    return np.linspace(10.67, -30.67, 32)


BEAM_LAYOUTS = {"uniform": hdl64_elevations, "hdl64e": hdl64e_elevations, "hdl32e": hdl32e_elevations}


@dataclass
class Scene:
    """Primitives of one scene (sensor frame, metres) and the labelled objects they make up."""

    boxes: np.ndarray  # [M, 7] every box primitive (object parts, then buildings)
    box_kind: list[str]  # per box: a class name, "cabin" (a car's upper part), "van", "wall" or "building"
    cylinders: np.ndarray  # [C, 4] x, y, radius, top z (bottom on the ground)
    spheres: np.ndarray  # [S, 4] x, y, z, radius
    ground_z: float
    objects: np.ndarray | None = None  # [K, 7] labelled boxes (default: the boxes whose kind is a class)
    object_kind: list[str] | None = None
    box_object: np.ndarray | None = None  # [M] which object each box primitive belongs to (-1: none)

    def __post_init__(self) -> None:
        if self.objects is None:
            own = [i for i, k in enumerate(self.box_kind) if k in OBJECT_SIZES]
            self.objects = self.boxes[own].reshape(-1, 7)
            self.object_kind = [self.box_kind[i] for i in own]
            self.box_object = np.full(len(self.box_kind), -1, np.int64)
            self.box_object[own] = np.arange(len(own))


def ray_directions(elevations_deg: np.ndarray, azimuth_step_deg: float) -> np.ndarray:
    """Unit ray directions ``[beams * azimuths, 3]`` (beam-major)."""
    el = np.deg2rad(np.asarray(elevations_deg, float))[:, None]
    az = np.deg2rad(np.arange(0.0, 360.0, azimuth_step_deg))[None, :]
    d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el) * np.ones_like(az)], -1)
    return d.reshape(-1, 3)


def _ray_boxes(d: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Entry distance ``[R, M]`` of rays from the origin into oriented boxes (inf on a miss), slab method."""
    if len(boxes) == 0:
        return np.full((len(d), 0), np.inf)
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    o = -boxes[:, :3]  # origin minus centre, then rotated into each box frame
    ox, oy = o[:, 0] * c + o[:, 1] * s, -o[:, 0] * s + o[:, 1] * c
    dx = d[:, :1] * c + d[:, 1:2] * s
    dy = -d[:, :1] * s + d[:, 1:2] * c
    dz = np.broadcast_to(d[:, 2:3], dx.shape)
    t_near, t_far = np.zeros_like(dx), np.full_like(dx, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for oc, dc, half in ((ox, dx, boxes[:, 3] / 2), (oy, dy, boxes[:, 4] / 2), (o[:, 2], dz, boxes[:, 5] / 2)):
            t1, t2 = (-half - oc) / dc, (half - oc) / dc
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            parallel = dc == 0
            inside = np.abs(oc) <= half
            lo = np.where(parallel, np.where(inside, -np.inf, np.inf), lo)
            hi = np.where(parallel, np.where(inside, np.inf, -np.inf), hi)
            t_near, t_far = np.maximum(t_near, lo), np.minimum(t_far, hi)
    return np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)


def _ray_spheres(d: np.ndarray, spheres: np.ndarray) -> np.ndarray:
    if len(spheres) == 0:
        return np.full((len(d), 0), np.inf)
    c, r = spheres[:, :3], spheres[:, 3]
    b = d @ c.T  # [R, S]  (|d| = 1, origin at 0): t^2 - 2 b t + |c|^2 - r^2 = 0
    disc = b**2 - ((c**2).sum(1) - r**2)
    t = b - np.sqrt(np.maximum(disc, 0))
    return np.where((disc >= 0) & (t > 0), t, np.inf)


def _ray_cylinders(d: np.ndarray, cyl: np.ndarray, ground_z: float) -> np.ndarray:
    if len(cyl) == 0:
        return np.full((len(d), 0), np.inf)
    dxy2 = (d[:, :2] ** 2).sum(1, keepdims=True)  # [R, 1]
    b = d[:, :2] @ cyl[:, :2].T
    disc = b**2 - dxy2 * ((cyl[:, :2] ** 2).sum(1) - cyl[:, 2] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (b - np.sqrt(np.maximum(disc, 0))) / dxy2
    z = t * d[:, 2:3]
    ok = (disc >= 0) & (t > 0) & (z >= ground_z) & (z <= cyl[:, 3])
    return np.where(ok, t, np.inf)


def random_scene(seed: int, num_cars: tuple[int, int] = (6, 14), num_pedestrians: tuple[int, int] = (2, 8),
                 num_cyclists: tuple[int, int] = (0, 4), num_buildings: tuple[int, int] = (4, 10),
                 num_trees: tuple[int, int] = (4, 12), sensor_height: float = 1.73, extent: float = 45.0,
                 car_cabins: bool = False, traffic: bool = False, kerb_walls: bool = False) -> Scene:
    """A street along x: objects on and beside the road, buildings and trees further out, no overlaps.

    With ``car_cabins`` each car is a body (lower 60 % of its height, full footprint) under a cabin
    (upper 40 %, 55 % of the length, 88 % of the width, slightly rearward); its label is the whole box.
    With ``traffic`` road users are packed by their rectangles (0.3 m apart) rather than by enclosing
    circles, so cars stand side by side and bumper to bumper as in real traffic, and unlabelled vans
    and roadside walls stand next to them (things a detector must not merge with a car).
    With ``kerb_walls`` (needs ``traffic``) some road sides get walls, fences or hedges along the kerb
    with cars parked in a row right beside them (0.1-1 m away), as on city streets: a detector has to
    end a car's box at the car, not at the wall behind it."""
    if kerb_walls and not traffic:
        raise ValueError("kerb_walls=True needs traffic=True (parked rows are packed by their rectangles)")
    rng = np.random.default_rng(seed)
    ground_z = -sensor_height
    placed: list[tuple[float, float, float]] = [(0.0, 0.0, 3.0)]  # keep the ego vehicle's place free
    rects: list[list[float]] = [[0.0, 0.0, 5.0, 2.4, 0.0]]  # traffic: x, y, l, w, yaw of everything on the road
    boxes, kinds, cyl, sph = [], [], [], []

    def free(x: float, y: float, r: float) -> bool:
        return all((x - px) ** 2 + (y - py) ** 2 > (r + pr) ** 2 for px, py, pr in placed)

    def rect_free(x: float, y: float, l: float, w: float, yaw: float) -> bool:
        cand = np.array([[x, y, 0, l + 0.3, w + 0.3, 1, yaw]])
        others = np.array([[a, b, 0, c + 0.3, d + 0.3, 1, e] for a, b, c, d, e in rects])
        return bool((bev_intersection(cand, others) <= 0).all())

    def add(kind: str, x: float, y: float, l: float, w: float, h: float, yaw: float, rect: bool = True,
            circle: bool = True) -> None:
        """Record a box standing on the ground (and its rectangle / enclosing circle for later overlap checks)."""
        if rect:
            rects.append([x, y, l, w, yaw])
        if circle:
            placed.append((x, y, 0.5 * float(np.hypot(l, w)) + 0.2))
        boxes.append([x, y, ground_z + h / 2, l, w, h, yaw])
        kinds.append(kind)

    def place(kind: str, count: int, xy_fn, size_fn, yaw_fn) -> None:
        for _ in range(count):
            for _ in range(30):  # rejection sampling
                x, y = xy_fn()
                l, w, h = size_fn()
                if traffic and kind != "building":
                    yaw = yaw_fn()
                    if rect_free(x, y, l, w, yaw):
                        add(kind, x, y, l, w, h, yaw)
                        break
                    continue
                if free(x, y, 0.5 * float(np.hypot(l, w)) + 0.2):
                    add(kind, x, y, l, w, h, yaw_fn(), rect=False)
                    break

    def n(rng_pair: tuple[int, int]) -> int:
        return int(rng.integers(rng_pair[0], rng_pair[1] + 1))

    def size(cls: str):
        mean, jit = OBJECT_SIZES[cls]
        return lambda: tuple(float(m * (1 + jit * rng.uniform(-1, 1))) for m in mean)

    road = lambda: (float(rng.uniform(-extent, extent)), float(rng.choice([-1, 1]) * rng.uniform(1.5, 8.0)))
    cars = n(num_cars)
    if kerb_walls:
        cars -= park_along_walls(rng, extent, size("Car"), rect_free, add, cars)
    place("Car", cars, road, size("Car"), lambda: float(rng.choice([0, np.pi]) + rng.normal(0, 0.15)))
    walk = lambda: (float(rng.uniform(-30, 30)), float(rng.choice([-1, 1]) * rng.uniform(6.0, 11.0)))
    place("Pedestrian", n(num_pedestrians), walk, size("Pedestrian"), lambda: float(rng.uniform(-np.pi, np.pi)))
    place("Cyclist", n(num_cyclists), road, size("Cyclist"), lambda: float(rng.choice([0, np.pi]) + rng.normal(0, 0.2)))
    if traffic:
        place("van", int(rng.integers(1, 5)), road,
              lambda: (float(rng.uniform(4.8, 7.0)), float(rng.uniform(1.9, 2.4)), float(rng.uniform(1.9, 2.8))),
              lambda: float(rng.choice([0, np.pi]) + rng.normal(0, 0.1)))
        place("wall", int(rng.integers(1, 5)),
              lambda: (float(rng.uniform(-extent, extent)), float(rng.choice([-1, 1]) * rng.uniform(3.5, 11.0))),
              lambda: (float(rng.uniform(4.0, 25.0)), float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.6, 2.5))),
              lambda: float(rng.normal(0, 0.05)))
    side = lambda: (float(rng.uniform(-extent, extent)), float(rng.choice([-1, 1]) * rng.uniform(14.0, 30.0)))
    place("building", n(num_buildings), side,
          lambda: (float(rng.uniform(8, 25)), float(rng.uniform(6, 12)), float(rng.uniform(4, 12))),
          lambda: float(rng.normal(0, 0.1)))
    for _ in range(n(num_trees)):
        for _ in range(30):
            x, y = float(rng.uniform(-extent, extent)), float(rng.choice([-1, 1]) * rng.uniform(10.0, 13.0))
            crown = float(rng.uniform(1.2, 2.5))
            if free(x, y, crown):
                placed.append((x, y, crown))
                trunk_top = ground_z + float(rng.uniform(1.5, 3.0))
                cyl.append([x, y, float(rng.uniform(0.15, 0.3)), trunk_top])
                sph.append([x, y, trunk_top + crown * 0.8, crown])
                break
    boxes = np.asarray(boxes, float).reshape(-1, 7)
    cyl, sph = np.asarray(cyl, float).reshape(-1, 4), np.asarray(sph, float).reshape(-1, 4)
    if not car_cabins:
        return Scene(boxes, kinds, cyl, sph, ground_z)
    own = [i for i, k in enumerate(kinds) if k in OBJECT_SIZES]
    prims, prim_kind, prim_obj = [], [], []
    for i, (b, k) in enumerate(zip(boxes, kinds)):
        j = own.index(i) if i in own else -1
        if k != "Car":
            prims.append(b), prim_kind.append(k), prim_obj.append(j)
            continue
        x, y, _, l, w, h, yaw = b
        hb = 0.6 * h
        prims.append([x, y, ground_z + hb / 2, l, w, hb, yaw]), prim_kind.append("Car"), prim_obj.append(j)
        back = -0.08 * l  # cabins sit a little behind the centre
        prims.append([x + back * np.cos(yaw), y + back * np.sin(yaw), ground_z + hb + 0.2 * h, 0.55 * l, 0.88 * w,
                      0.4 * h, yaw]), prim_kind.append("cabin"), prim_obj.append(j)
    return Scene(np.asarray(prims, float).reshape(-1, 7), prim_kind, cyl, sph, ground_z, boxes[own].reshape(-1, 7),
                 [kinds[i] for i in own], np.asarray(prim_obj, np.int64))


def park_along_walls(rng: np.random.Generator, extent: float, car_size, rect_free, add, max_cars: int) -> int:
    """:func:`random_scene`'s kerbside rows: on each road side with probability 0.6, one to three wall /
    fence / hedge segments parallel to the road (|y| 3.5-7 m, 8-40 m long, 0.1-0.5 m thick, 0.5-2.5 m
    high) and cars parked bumper to bumper along their road face, 0.1-1.0 m from it, recorded through the
    caller's ``add``; returns how many cars it parked (at most ``max_cars``)."""
    parked = 0
    for side in (-1.0, 1.0):
        if rng.random() >= 0.6:
            continue
        y_face = side * float(rng.uniform(3.5, 7.0))  # the wall's road-facing surface
        for _ in range(int(rng.integers(1, 4))):
            length, thick, height = float(rng.uniform(8, 40)), float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.5, 2.5))
            x0 = float(rng.uniform(-extent, extent - length))
            wall = [x0 + length / 2, y_face + side * thick / 2, length, thick, 0.0]
            if not rect_free(*wall):
                continue
            add("wall", *wall[:4], height, 0.0, circle=False)  # a circle round a long wall would clear blocks of trees
            x = x0 + float(rng.uniform(0.0, 3.0))
            while parked < max_cars:
                l, w, h = car_size()
                if x + l > x0 + length:
                    break
                gap = float(rng.uniform(0.1, 1.0))
                car = [x + l / 2, y_face - side * (gap + w / 2), l, w, float(rng.choice([0, np.pi]) + rng.normal(0, 0.03))]
                # rect_free keeps 0.3 m between rectangles, but a parked car may stand closer to its wall
                if rect_free(*car) or gap < 0.3 and rect_free(car[0], car[1] - side * 0.3, l, w, car[4]):
                    add("Car", car[0], car[1], l, w, h, car[4])
                    parked += 1
                x += l + float(rng.uniform(0.5, 4.0))
    return parked


def cast(scene: Scene, elevations_deg: np.ndarray, azimuth_step_deg: float = 0.35, max_range: float = 80.0,
         range_noise: float = 0.0, rng: np.random.Generator | None = None, chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Hit points ``[N, 4]`` (x, y, z, reflectance) and the index of the surface each came from
    (-1 ground, ``0..M-1`` boxes, ``M..`` cylinders then spheres)."""
    d_all = ray_directions(elevations_deg, azimuth_step_deg)
    out_pts, out_src = [], []
    c = len(scene.cylinders)
    refl = np.array([REFLECTANCE[k] for k in scene.box_kind] + [REFLECTANCE["tree"]] * (c + len(scene.spheres)))
    for s in range(0, len(d_all), chunk):
        d = d_all[s:s + chunk]
        with np.errstate(divide="ignore"):
            t_ground = np.where(d[:, 2] < 0, scene.ground_z / np.where(d[:, 2] < 0, d[:, 2], -1), np.inf)
        t = np.concatenate([t_ground[:, None], _ray_boxes(d, scene.boxes),
                            _ray_cylinders(d, scene.cylinders, scene.ground_z), _ray_spheres(d, scene.spheres)], 1)
        src = t.argmin(1)
        best = t[np.arange(len(d)), src]
        hit = best <= max_range
        r = best[hit]
        if range_noise > 0:
            r = r + (rng or np.random.default_rng(0)).normal(0, range_noise, r.shape)
        src = src[hit] - 1
        reflect = np.where(src < 0, REFLECTANCE["ground"], refl[np.maximum(src, 0)] if len(refl) else 0.0)
        out_pts.append(np.concatenate([d[hit] * r[:, None], reflect[:, None]], 1))
        out_src.append(src)
    return np.concatenate(out_pts).astype(np.float32), np.concatenate(out_src)


def simulate_scene(seed: int, *, azimuth_step_deg: float = 0.35, elevations_deg: np.ndarray | None = None,
                   max_range: float = 80.0, range_noise: float = 0.01, sensor_height: float = 1.73,
                   object_dropout: tuple[float, float] = (0.0, 0.0), glass_dropout: tuple[float, float] = (0.0, 0.0),
                   **scene_kwargs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One simulated scan: ``points [N, 4]`` (x, y, z, reflectance), ``boxes [M, 7]`` of the labelled
    objects (``[x, y, z_center, l, w, h, yaw]``) and their classes (``Car``, ``Pedestrian``,
    ``Cyclist``). Deterministic for a seed. Boxes of fully occluded objects are kept (0 points).

    ``object_dropout=(lo, hi)``: each object loses a fraction of its returns drawn from U(lo, hi);
    ``glass_dropout``: the same for car cabins (needs ``car_cabins=True``)."""
    scene = random_scene(seed, sensor_height=sensor_height, **scene_kwargs)
    el = hdl64_elevations() if elevations_deg is None else np.asarray(elevations_deg, float)
    rng = np.random.default_rng(seed + 7919)
    pts, src = cast(scene, el, azimuth_step_deg, max_range, range_noise, rng)
    if max(object_dropout[1], glass_dropout[1]) > 0 and len(scene.boxes):
        drop_obj = rng.uniform(*object_dropout, len(scene.objects))
        rate = np.where(scene.box_object >= 0, drop_obj[np.maximum(scene.box_object, 0)], 0.0)
        cabin = np.array([k == "cabin" for k in scene.box_kind])
        rate[cabin] = 1 - (1 - rate[cabin]) * (1 - rng.uniform(*glass_dropout, int(cabin.sum())))
        on_box = (src >= 0) & (src < len(scene.boxes))
        p_drop = np.zeros(len(pts))
        p_drop[on_box] = rate[src[on_box]]
        pts = pts[rng.random(len(pts)) >= p_drop]
    boxes = scene.objects.astype(np.float32) if len(scene.objects) else np.zeros((0, 7), np.float32)
    return pts, boxes, list(scene.object_kind)


# ----------------------------------------------------------------------------- recipes
def recipe_sim(data_cfg: dict | None) -> dict:
    """A recipe's ``data.sim`` block (the first recipes' ``data.sim_azimuth_step`` read as its azimuth step)."""
    d = data_cfg or {}
    sim = dict(d.get("sim") or {})
    if "sim_azimuth_step" in d:
        sim.setdefault("azimuth_step", float(d["sim_azimuth_step"]))
    return sim


def simulator_kwargs(sim: dict | None, seed: int) -> dict:
    """``simulate_scene`` keyword arguments from a recipe's ``data.sim`` block for scene ``seed``.

    Keys: ``extent`` (the street runs over x in [-extent, extent] m; default 45), ``num_cars`` ([lo, hi]
    cars per scene; default [6, 14]), ``azimuth_step`` (deg), ``beams`` (``uniform``, ``hdl64e`` or
    ``hdl32e``; or a list of them with a list ``azimuth_step`` of the same length, one sensor drawn per
    scene from the seed), ``car_cabins``, ``traffic``, ``kerb_walls``, ``object_dropout`` and
    ``glass_dropout`` ([lo, hi] fractions), ``sensor_height`` (metres, or [lo, hi] drawn per scene from the
    seed, so a scene is the same in every run). Used by both the detector's and R-MAE's recipes."""
    sim = dict(sim or {})
    unknown = set(sim) - {"azimuth_step", "beams", "car_cabins", "traffic", "kerb_walls", "object_dropout",
                          "glass_dropout", "sensor_height", "extent", "num_cars"}
    if unknown:
        raise ValueError(f"data.sim: unknown keys {sorted(unknown)}")
    beams, step = sim.get("beams", "uniform"), sim.get("azimuth_step", 0.35)
    if isinstance(beams, (list, tuple)):
        if not isinstance(step, (list, tuple)) or len(step) != len(beams) or not beams:
            raise ValueError(f"data.sim.beams is a list of sensors {list(beams)}: give azimuth_step as a list of "
                             f"the same length (one step per sensor), not {step!r}")
        i = int(np.random.default_rng([seed, 23]).integers(len(beams)))
        beams, step = beams[i], step[i]
    if beams not in BEAM_LAYOUTS:
        raise ValueError(f"data.sim.beams must be one of {sorted(BEAM_LAYOUTS)} (or a list of them), not {beams!r}")
    h = sim.get("sensor_height", 1.73)
    if isinstance(h, (list, tuple)):
        h = float(np.random.default_rng([seed, 17]).uniform(*h))
    kw = {"azimuth_step_deg": float(step), "sensor_height": float(h),
          "car_cabins": bool(sim.get("car_cabins", False)), "traffic": bool(sim.get("traffic", False)),
          "kerb_walls": bool(sim.get("kerb_walls", False)),
          "object_dropout": tuple(sim.get("object_dropout", (0.0, 0.0))),
          "glass_dropout": tuple(sim.get("glass_dropout", (0.0, 0.0)))}
    if beams != "uniform":
        kw["elevations_deg"] = BEAM_LAYOUTS[beams]()
    if "extent" in sim:
        kw["extent"] = float(sim["extent"])
    if "num_cars" in sim:
        lo, hi = (int(v) for v in sim["num_cars"])
        kw["num_cars"] = (lo, hi)
    return kw
