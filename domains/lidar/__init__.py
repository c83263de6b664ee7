"""Driving LiDAR: KITTI labels/calibration, 3-D box geometry, voxel grids and a
scene simulator (numpy); scans are read by ``maskworks.core.io.points.read_scan``. R-MAE (torch) lives in ``rmae`` / ``rmae_task`` / ``rmae_eval`` and loads on demand."""
from .boxes import boxes_to_corners, count_points_in_boxes, points_in_rotated_box
from .simulator import simulate_scene
from .voxel import VoxelGrid

__all__ = ["boxes_to_corners", "count_points_in_boxes", "points_in_rotated_box", "simulate_scene", "VoxelGrid"]
