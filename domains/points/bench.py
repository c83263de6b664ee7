"""FPS benchmark: our batched-torch FPS and what ``farthest_point_sample`` uses by default (``auto``: open3d's
C++ on the CPU, torch on a GPU) against open3d's ``farthest_point_down_sample`` on real clouds.

All start from point 0, so on the same cloud they should pick the same samples; the bench reports the time
ratios (torch / open3d and auto / open3d, median of ``repeats`` runs), the coverage radius of each sample set
(max distance from any point to its nearest sample; lower is better) and the fraction of shared samples.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np
import torch
from maskworks.data import data_path

from .grouping import coverage_radius, farthest_point_sample
from maskworks.core.io.points import read_points

DEFAULT_CLOUDS: tuple[tuple[str, ...], ...] = (
    ("3d", "pcl_scans", "milk.pcd"),
    ("3d", "pcl_scans", "rops_cloud.pcd"),
    ("3d", "kitti", "training", "velodyne", "000000.bin"),
)


def _median_times_alternating(fns: list[Callable[[], Any]], repeats: int) -> list[tuple[float, Any]]:
    """Median time of each of ``fns``, called in turn round after round, so drifts of the machine (another
    process, the clock) fall on all of them alike rather than on whichever ran last."""
    times: list[list[float]] = [[] for _ in fns]
    results: list[Any] = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - t0)
    return [(statistics.median(t), r) for t, r in zip(times, results)]


def _import_open3d() -> Any:
    try:
        import open3d as o3d  # noqa: PLC0415 - optional, heavy
    except ImportError as e:  # e.g. a missing system libusb-1.0 for open3d-cpu wheels
        raise RuntimeError(f"open3d is needed to compare FPS but failed to import ({e}); install "
                           "maskworks[points] (and the system library it names, e.g. libusb-1.0-0)") from e
    return o3d


def bench_fps(repeats: int = 5, num_samples: int = 1024, clouds: list[str] | None = None,
              device: str = "cpu") -> dict[str, Any]:
    """Time our FPS against open3d on the same clouds; returns a JSON-friendly dict.

    ``clouds``: point-cloud file paths (default: shipped milk, rops_cloud and a KITTI scan).
    ``device``: where our FPS runs (open3d always runs on CPU); CUDA runs are synchronised.
    """
    o3d = _import_open3d()
    paths = clouds if clouds is not None else [str(data_path(*p)) for p in DEFAULT_CLOUDS]
    rows = []
    for p in paths:
        cloud = read_points(p)
        xyz = torch.from_numpy(cloud.xyz).to(device)
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.xyz.astype(np.float64)))

        def ours(backend: str = "torch") -> torch.Tensor:
            idx = farthest_point_sample(xyz, num_samples, start_idx=0, backend=backend)
            if xyz.is_cuda:
                torch.cuda.synchronize()
            return idx

        farthest_point_sample(xyz, min(num_samples, 8), backend="torch")  # warm-up (allocator, kernels)
        (t_ours, idx), = _median_times_alternating([ours], repeats)
        (t_auto, idx_auto), (t_o3d, down) = _median_times_alternating(
            [lambda: ours("auto"), lambda: pcd.farthest_point_down_sample(num_samples, 0)], repeats)
        ours_pts = xyz[idx]
        o3d_pts = torch.from_numpy(np.asarray(down.points)).to(xyz)
        shared = len({tuple(r) for r in ours_pts.cpu().numpy().tolist()}
                     & {tuple(r) for r in o3d_pts.cpu().numpy().tolist()})
        rows.append({
            "cloud": str(p), "num_points": len(cloud), "ours_s": t_ours, "open3d_s": t_o3d,
            "ratio_ours_over_open3d": t_ours / t_o3d, "auto_s": t_auto, "ratio_auto_over_open3d": t_auto / t_o3d,
            "auto_equals_torch": bool(torch.equal(idx_auto.cpu(), idx.cpu())),
            "coverage_radius_ours": float(coverage_radius(xyz, ours_pts)),
            "coverage_radius_open3d": float(coverage_radius(xyz, o3d_pts)),
            "shared_sample_fraction": shared / num_samples,
        })
    return {
        "num_samples": num_samples, "repeats": repeats, "device": device,
        "torch_threads": torch.get_num_threads(), "open3d_version": o3d.__version__,
        "median_ratio": statistics.median(r["ratio_ours_over_open3d"] for r in rows),
        "median_ratio_auto": statistics.median(r["ratio_auto_over_open3d"] for r in rows),
        "clouds": rows,
    }
