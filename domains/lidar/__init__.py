"""Driving LiDAR: KITTI/nuScenes scan readers, KITTI labels/calibration and 3-D box geometry (numpy)."""
from .boxes import boxes_to_corners, count_points_in_boxes, points_in_rotated_box
from .io import LidarDataError, read_kitti_bin, read_nuscenes_bin

__all__ = ["LidarDataError", "boxes_to_corners", "count_points_in_boxes", "points_in_rotated_box",
           "read_kitti_bin", "read_nuscenes_bin"]
