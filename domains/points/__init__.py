"""3-D point clouds: file I/O (PCD/PLY/NPY/text/KITTI/nuScenes) and Point-MAE grouping (FPS, kNN)."""
