"""Point-cloud files, read in one place for every domain: ``.pcd`` (ascii / binary / binary_compressed),
``.ply``, ``.npy`` / ``.npz``, ``.xyz`` / ``.txt`` tables, KITTI ``.bin`` and nuScenes ``.pcd.bin``.

:func:`read_points` returns a :class:`PointCloud` (xyz + named features); :func:`read_scan` returns a LiDAR
scan as ``[N, 4]`` (x, y, z, intensity in [0, 1]) with notes on what was dropped. Every failure is a
:class:`~maskworks.core.io.InputError` naming the file and a fix.
"""
from maskworks.core.io.points.cloud import (
                                              DEFAULT_MAX_POINTS,
                                              NanPolicy,
                                              PointCloud,
                                              finalize,
)
from maskworks.core.io.points.pcd import read_pcd, write_pcd
from maskworks.core.io.points.ply import read_ply, write_ply
from maskworks.core.io.points.readers import (
                                              detect_format,
                                              read_kitti_bin,
                                              read_npy,
                                              read_npz,
                                              read_nuscenes_bin,
                                              read_points,
                                              read_text,
                                              write_npy,
                                              write_npz,
                                              write_points,
)
from maskworks.core.io.points.scan import (
                                              SCAN_SUFFIXES,
                                              Scan,
                                              read_scan,
                                              write_kitti_bin,
)

__all__ = ["DEFAULT_MAX_POINTS", "NanPolicy", "PointCloud", "SCAN_SUFFIXES", "Scan", "detect_format", "finalize",
           "read_kitti_bin", "read_npy", "read_npz", "read_nuscenes_bin", "read_pcd", "read_ply", "read_points",
           "read_scan", "read_text", "write_kitti_bin", "write_npy", "write_npz", "write_pcd", "write_ply",
           "write_points"]
