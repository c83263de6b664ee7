"""Real labelled scans for training and evaluation, all in the KITTI LiDAR frame (metres, x forward, y left,
z up, sensor 1.73 m above the road):

- KITTI-layout folders (``velodyne/``, ``label_2/``, ``calib/``; 360-degree scans and camera-FOV crops alike):
  :func:`kitti_frames`. For training, a full scan is cut to camera 2's view (:func:`camera_fov_mask`), because
  KITTI labels only what the camera sees: an unlabelled car behind the sensor would be taught as background.
- Samples in the ``boxes.json`` + ``*.bin`` layout of the shared Argoverse 2 and PandaSet frames
  (:func:`boxes_json_scans`): their own frames (AV2: origin at the rear axle, ground ~0.3-0.4 m below it;
  PandaSet: ground ~0.3 m below the sensor) moved so that the road sits where KITTI's does.

Paths may be ``shipped:...`` (the repository's data) and may hold environment variables (``$KITTI_MORE/training``):
a path that does not exist gets one error naming it and what to set.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from maskworks.core.io import InputError, resolve_shipped

from .kitti import KittiCalib, KittiObject, labels_to_lidar_boxes, read_calib, read_label

KITTI_GROUND_Z = -1.73  # the road under KITTI's Velodyne (it sits 1.73 m above it)
TARGET_CLASSES = ("Car", "Pedestrian", "Cyclist")


@dataclass
class RealScan:
    """One labelled scan: points ``[N, 4]`` (x, y, z, reflectance), boxes ``[M, 7]`` with class names (every
    labelled object, DontCare excluded; non-target classes such as Van kept for collision checks), and for
    KITTI frames the label objects and calibration."""

    name: str
    points: np.ndarray
    boxes: np.ndarray
    classes: list[str]
    source: str = "kitti"
    fov_only: bool = True  # only camera 2's view is labelled (and, once cropped, present)
    calib: KittiCalib | None = None
    objects: list[KittiObject] = field(default_factory=list)


def resolve_data_path(path: str | Path, what: str = "data folder") -> Path:
    """``shipped:...`` or a filesystem path with ``$VARS`` expanded; refused with a fix when missing."""
    raw = str(path)
    expanded = os.path.expandvars(raw)
    if "$" in expanded:
        var = expanded[expanded.index("$"):].split("/")[0]
        raise InputError(raw, f"the {what} path uses {var}, which is not set",
                         f"export {var.strip('${}')}=/path/to/the/folder (docs/3d/detection.md says where to get it) "
                         "or override the recipe's path with --set")
    p = resolve_shipped(expanded)
    if not Path(p).exists():
        raise InputError(p, f"no such {what}", "give an existing folder (docs/3d/detection.md lists the data and "
                         "where to get it)")
    return Path(p)


def kitti_root(path: str | Path) -> Path:
    """The folder holding ``velodyne/``, ``label_2/`` and ``calib/`` (``path`` itself or ``path/training``)."""
    root = resolve_data_path(path, "KITTI folder")
    for cand in (root, root / "training"):
        if all((cand / d).is_dir() for d in ("velodyne", "label_2", "calib")):
            return cand
    raise InputError(root, "no velodyne/, label_2/ and calib/ folders here or under training/",
                     "give a KITTI object folder (velodyne/<id>.bin, label_2/<id>.txt, calib/<id>.txt)")


def camera_fov_mask(points: np.ndarray, calib: KittiCalib, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Bool ``[N]``: points in front of camera 2 (depth > 0.001 m) that project inside its image, the crop
    behind KITTI's ``velodyne_reduced`` (mmdetection3d's ``remove_outside_points`` / OpenPCDet's
    ``get_fov_flag``). ``image_shape`` (height, width) defaults to KITTI's 375 x 1242."""
    from .kitti import IMAGE_SHAPE

    h, w = image_shape or IMAGE_SHAPE
    uv, depth = calib.rect_to_image(calib.lidar_to_rect(np.asarray(points)[:, :3]))
    return (depth > 0.001) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)


def frame_ids(root: Path) -> list[str]:
    """Ids with a scan, a label and a calibration file, sorted."""
    return sorted(p.stem for p in (root / "label_2").glob("*.txt")
                  if (root / "velodyne" / f"{p.stem}.bin").is_file() and (root / "calib" / f"{p.stem}.txt").is_file())


def read_kitti_frame(root: Path, frame: str, crop_to_fov: bool = True) -> RealScan:
    """One KITTI frame; ``crop_to_fov`` keeps camera 2's view only (a crop already is one: it stays whole)."""
    from maskworks.core.io.points import read_scan

    calib = read_calib(root / "calib" / f"{frame}.txt")
    objects = read_label(root / "label_2" / f"{frame}.txt")
    pts = read_scan(root / "velodyne" / f"{frame}.bin").points
    if pts.shape[1] < 4:
        pts = np.concatenate([pts, np.zeros((len(pts), 1), pts.dtype)], 1)
    if crop_to_fov:
        pts = pts[camera_fov_mask(pts, calib)]
    labelled = [o for o in objects if o.type != "DontCare"]
    boxes, classes = labels_to_lidar_boxes(labelled, calib)
    return RealScan(frame, np.ascontiguousarray(pts[:, :4], np.float32), boxes, classes, "kitti", True, calib, objects)


def kitti_frames(dirs: list[str | Path], frames: list[str] | None = None, exclude: set[str] | frozenset = frozenset(),
                 crop_to_fov: bool = True) -> list[RealScan]:
    """Every frame of the KITTI folders ``dirs`` (an id found in several folders is read from the first),
    restricted to ``frames`` when given, minus ``exclude``."""
    seen: dict[str, Path] = {}
    for d in dirs:
        root = kitti_root(d)
        for f in frame_ids(root):
            seen.setdefault(f, root)
    if frames is not None:
        missing = [f for f in frames if f not in seen]
        if missing:
            raise InputError(", ".join(map(str, dirs)), f"frames {missing} are in none of these KITTI folders",
                             "add the folder that holds them to data.kitti_dirs")
        wanted = list(frames)
    else:
        wanted = sorted(seen)
    return [read_kitti_frame(seen[f], f, crop_to_fov) for f in wanted if f not in exclude]


def boxes_json_scans(folder: str | Path, min_points: int = 0) -> list[RealScan]:
    """The scans of a ``boxes.json`` + ``*.bin`` folder (the shared Argoverse 2 ``av2/`` and PandaSet
    ``pandaset/`` samples), moved into KITTI's LiDAR frame: z shifted so that the road is at -1.73 m (AV2:
    from each sweep's ``ground_z_mode_m``; PandaSet: from ``median_car_bottom_z_m``). Classes are the files'
    ``kitti_class`` (None -> "DontCare-like" other objects, kept for collision checks as "Other")."""
    from maskworks.core.io.points import read_scan

    folder = resolve_data_path(folder, "boxes.json folder")
    meta_path = folder / "boxes.json"
    if not meta_path.is_file():
        raise InputError(folder, "no boxes.json here", "give the av2/ or pandaset/ folder of the shared samples")
    meta = json.loads(meta_path.read_text())
    if "sweeps" in meta:  # Argoverse 2: several sweeps
        items = [(s["file"], s["boxes"], s["ground_z_mode_m"], "av2") for s in meta["sweeps"]]
    else:  # PandaSet: one frame
        bins = sorted(folder.glob("*.bin"))
        if len(bins) != 1:
            raise InputError(folder, f"{len(bins)} .bin files next to a single-frame boxes.json", "keep one scan")
        items = [(bins[0].name, meta["boxes"], meta["median_car_bottom_z_m"], "pandaset")]
    out = []
    for name, boxes, ground, source in items:
        pts = read_scan(folder / name).points[:, :4].astype(np.float32).copy()
        dz = KITTI_GROUND_Z - float(ground)
        pts[:, 2] += dz
        b = np.array([o["box"] for o in boxes], np.float64).reshape(-1, 7)
        b[:, 2] += dz
        counts = np.array([o.get("points_in_box", o.get("num_interior_pts", 0)) for o in boxes])
        classes = [o.get("kitti_class") or "Other" for o in boxes]
        classes = [c if n >= min_points else "Other" for c, n in zip(classes, counts)]
        out.append(RealScan(f"{source}/{Path(name).stem}", np.ascontiguousarray(pts), b, classes, source, False))
    return out
