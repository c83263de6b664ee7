"""Driving LiDAR: KITTI/nuScenes scan readers, KITTI labels/calibration, 3-D box geometry, voxel grids and a
scene simulator (numpy). R-MAE (torch) lives in ``rmae`` / ``rmae_task`` / ``rmae_eval`` and loads on demand."""
from .boxes import boxes_to_corners, count_points_in_boxes, points_in_rotated_box
from .io import LidarDataError, read_kitti_bin, read_nuscenes_bin
from .simulator import simulate_scene
from .voxel import VoxelGrid

__all__ = ["LidarDataError", "boxes_to_corners", "count_points_in_boxes", "points_in_rotated_box",
           "read_kitti_bin", "read_nuscenes_bin", "simulate_scene", "VoxelGrid"]
