"""3-D point clouds: file I/O (PCD/PLY/NPY/text/KITTI/nuScenes), Point-MAE grouping (FPS, kNN) and masked
point modelling (``point_mae``, ``point_bert``, ``point_cmae`` on the ``tokenizer`` / ``encoder`` modules;
``objects`` builds the real object set, ``probe`` evaluates encoders on it).

Only the numpy I/O is imported here; ``grouping`` (torch) and ``bench`` (open3d) load on demand.
"""
from .cloud import PointCloud, PointCloudError
from .io import read_points, write_points

__all__ = ["PointCloud", "PointCloudError", "read_points", "write_points"]
