"""Driving LiDAR: KITTI/nuScenes scan readers, KITTI labels/calibration and 3-D box geometry."""
