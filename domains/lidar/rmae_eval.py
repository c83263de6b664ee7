"""Occupancy reconstruction quality of R-MAE on a real scan, next to training-free baselines.

On one scan: draw a radial sector mask (seeded), run the model on the kept voxels and score the
predicted occupancy inside the masked sectors (every voxel of every BEV cell whose azimuth sector
had masked voxels, all heights) against the scan's true occupancy: precision, recall, IoU.
Baselines on the same mask: "all occupied" and "copy nearest kept sector" (rotate the kept
occupancy of the angularly nearest kept sector into the masked one, same range and height).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .rmae import RMAE, sector_mask_occupied, sector_of_cells, visible_grid
from .voxel import VoxelGrid


def prf(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = float((pred & truth).sum())
    fp, fn = float((pred & ~truth).sum()), float((~pred & truth).sum())
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "iou": tp / max(tp + fp + fn, 1)}


def copy_nearest_sector(vis: np.ndarray, region_cells: np.ndarray, cell_sector: np.ndarray, kept: np.ndarray,
                        grid: VoxelGrid, sector_deg: float) -> np.ndarray:
    """For each region cell, the visible occupancy column at the same range in the nearest kept sector."""
    n_sec = int(math.ceil(360 / sector_deg))
    kept_ids = np.flatnonzero(kept)
    out = np.zeros_like(vis)
    if len(kept_ids) == 0:
        return out
    s = np.arange(n_sec)
    diff = (kept_ids[None, :] - s[:, None] + n_sec // 2) % n_sec - n_sec // 2  # signed circular distance
    nearest_shift = diff[s, np.abs(diff).argmin(1)]  # [n_sec] sectors to rotate by
    iy, ix = np.nonzero(region_cells)
    theta = np.deg2rad(nearest_shift[cell_sector[iy, ix]] * sector_deg)
    x = grid.x_range[0] + (ix + 0.5) * grid.voxel_size
    y = grid.y_range[0] + (iy + 0.5) * grid.voxel_size
    xr, yr = x * np.cos(theta) - y * np.sin(theta), x * np.sin(theta) + y * np.cos(theta)
    jx = np.floor((xr - grid.x_range[0]) / grid.voxel_size).astype(int)
    jy = np.floor((yr - grid.y_range[0]) / grid.voxel_size).astype(int)
    nz, ny, nx = grid.shape
    ok = (jx >= 0) & (jx < nx) & (jy >= 0) & (jy < ny)
    out[:, iy[ok], ix[ok]] = vis[:, jy[ok], jx[ok]]
    return out


@torch.no_grad()
def evaluate_scan(model: RMAE, points: np.ndarray, seed: int = 0, thresholds: dict[str, float] | None = None) -> dict:
    """Metrics of the model (at each named probability threshold) and the baselines on one scan."""
    grid, strategy = model.voxel_grid, model.masking
    occ = torch.from_numpy(grid.occupancy(points))
    masked, idx = sector_mask_occupied(occ, grid, strategy, torch.Generator().manual_seed(seed))
    vis = visible_grid(occ, masked, idx)
    dev = next(model.parameters()).device
    prob = torch.sigmoid(model(vis[None].to(dev)))[0].cpu().numpy()
    cell_sector = sector_of_cells(grid, strategy.sector_deg)
    n_sec = int(math.ceil(360 / strategy.sector_deg))
    idx_np, masked_np = idx.numpy(), masked.numpy()
    masked_sec = np.zeros(n_sec, bool)
    masked_sec[cell_sector[idx_np[masked_np, 1], idx_np[masked_np, 2]]] = True
    kept_sec = np.zeros(n_sec, bool)
    kept_sec[cell_sector[idx_np[~masked_np, 1], idx_np[~masked_np, 2]]] = True
    region_cells = masked_sec[cell_sector]
    region = np.broadcast_to(region_cells, occ.shape)
    truth = occ.numpy()[region]
    vis_np = vis.numpy()
    res = {"masked_voxels": int(masked_np.sum()), "occupied_voxels": int(len(masked_np)),
           "realised_ratio": float(masked_np.mean()), "region_voxels": int(region.sum()),
           "region_occupancy_rate": float(truth.mean()), "model": {}, "baselines": {}}
    for name, thr in (thresholds or {"0.5": 0.5}).items():
        res["model"][f"threshold {name}"] = {**prf(prob[region] > thr, truth), "threshold": float(thr)}
    res["baselines"]["all occupied"] = prf(np.ones_like(truth), truth)
    copy = copy_nearest_sector(vis_np, region_cells, cell_sector, kept_sec, grid, strategy.sector_deg)
    res["baselines"]["copy nearest kept sector"] = prf(copy[region], truth)
    res["_arrays"] = {"occ": occ.numpy(), "vis": vis_np, "prob": prob, "region": region}
    return res


def best_threshold(model: RMAE, points: np.ndarray, seed: int = 1) -> float:
    """Threshold maximising masked-region IoU on a calibration scan (never the evaluated one)."""
    r = evaluate_scan(model, points, seed)
    a = r["_arrays"]
    prob, truth = a["prob"][a["region"]], a["occ"][a["region"]]
    grid = np.linspace(0.05, 0.95, 19)
    return float(grid[int(np.argmax([prf(prob > t, truth)["iou"] for t in grid]))])


def masked_sector_rgb(res: dict, threshold: float, hidden_shade: tuple[float, float, float] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BEV ``[ny, nx]`` true and kept occupancy, and an RGB map of :func:`evaluate_scan`'s result at
    ``p > threshold``: kept grey, hits green, false alarms red, misses blue (the rest of the hidden
    sectors ``hidden_shade``, else white)."""
    a = res["_arrays"]
    occ, vis, region = a["occ"].any(0), a["vis"].any(0), a["region"][0]
    pred = ((a["prob"] > threshold) & a["region"]).any(0)
    truth_m = occ & region & ~vis
    rgb = np.ones((*occ.shape, 3))
    if hidden_shade is not None:
        rgb[region & ~pred & ~truth_m] = hidden_shade
    rgb[vis] = (0.6, 0.6, 0.6)
    rgb[pred & truth_m] = (0.1, 0.7, 0.1)
    rgb[pred & ~truth_m & region] = (0.9, 0.3, 0.3)
    rgb[~pred & truth_m] = (0.2, 0.3, 0.9)
    return occ, vis, rgb


def save_bev_picture(res: dict, grid: VoxelGrid, path: Path, threshold: float) -> None:
    """BEV panels: kept sectors (input), prediction in masked sectors (TP/FP/FN), full true scan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    occ, vis, rgb = masked_sector_rgb(res, threshold)
    ext = (*grid.x_range, *grid.y_range)
    fig, ax = plt.subplots(1, 3, figsize=(15, 5))
    ax[0].imshow(np.where(vis, 0.0, 1.0), cmap="gray", origin="lower", extent=ext, vmin=0, vmax=1)
    ax[0].set_title(f"input: kept sectors ({100 * (1 - res['realised_ratio']):.0f} % of occupied voxels)")
    ax[1].imshow(rgb, origin="lower", extent=ext)
    ax[1].set_title(f"masked sectors, p > {threshold:.2f}: green TP, red FP, blue FN")
    ax[2].imshow(np.where(occ, 0.0, 1.0), cmap="gray", origin="lower", extent=ext, vmin=0, vmax=1)
    ax[2].set_title("true occupancy (BEV, any height)")
    for x in ax:
        x.set_xlabel("x forward (m)")
        x.set_ylabel("y left (m)")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def reconstruction_view(res: dict, threshold: float, scale: int = 2) -> np.ndarray:
    """:func:`evaluate_scan`'s result as one RGB image ``[H, 3 W, 3]`` uint8 of three bird's-eye panels, x up,
    y left, sensor at the centre (as the detection tab's BEV): the kept sectors (the model's only input),
    the masked sectors with the model's occupancy at ``p > threshold`` (green hit, red false alarm, blue
    missed, grey kept), and the whole true scan. For showing what R-MAE learned on a user's own scan."""
    occ, vis, mid = masked_sector_rgb(res, threshold, hidden_shade=(0.93, 0.93, 0.97))
    left, right = np.ones_like(mid), np.ones_like(mid)
    left[vis], right[occ] = 0.0, 0.0
    panels = [np.transpose(x, (1, 0, 2))[::-1, ::-1] for x in (left, mid, right)]  # [y, x] -> rows x (up), cols y (left)
    gap = np.full((panels[0].shape[0], 4, 3), 0.35)
    img = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], 1)
    img = img.repeat(scale, 0).repeat(scale, 1)
    return (img * 255).astype(np.uint8)


def evaluate_frames(model: RMAE, eval_points: np.ndarray, calib_points: np.ndarray | None, repeats: int = 3,
                    picture: Path | None = None) -> dict:
    """Mean metrics over ``repeats`` seeded masks; thresholds 0.5 and (if given) calibrated on another scan."""
    thresholds = {"0.5": 0.5}
    if calib_points is not None:
        thresholds["calibrated"] = best_threshold(model, calib_points)
    runs = [evaluate_scan(model, eval_points, seed, thresholds) for seed in range(repeats)]
    if picture is not None:
        save_bev_picture(runs[0], model.voxel_grid, picture, thresholds.get("calibrated", 0.5))
    out = {k: runs[0][k] for k in ("occupied_voxels", "masked_voxels", "realised_ratio")}
    out["region_occupancy_rate"] = float(np.mean([r["region_occupancy_rate"] for r in runs]))
    for group in ("model", "baselines"):
        out[group] = {name: {m: float(np.mean([r[group][name][m] for r in runs])) for m in runs[0][group][name]}
                      for name in runs[0][group]}
    out["repeats"] = repeats
    return out
