"""Voxelisation against a numpy reference, and radial sector masks of a real KITTI scan."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from maskworks.core.masking import RadialSectorMasking
from maskworks.data import data_path
from maskworks.core.io.points import read_scan
from maskworks.domains.lidar.rmae import occupancy_loss, sector_mask_occupied, visible_grid
from maskworks.domains.lidar.voxel import VoxelGrid


def test_voxel_counts_match_a_loop_reference() -> None:
    grid = VoxelGrid((-2.0, 2.0), (-2.0, 2.0), (-1.0, 1.0), 0.5)
    assert grid.shape == (4, 8, 8)
    pts = np.random.default_rng(0).uniform(-2.5, 2.5, (500, 3))
    ref = np.zeros(grid.shape, np.int64)
    for x, y, z in pts:
        if -2 <= x < 2 and -2 <= y < 2 and -1 <= z < 1:
            ref[int((z + 1) // 0.5), int((y + 2) // 0.5), int((x + 2) // 0.5)] += 1
    got = grid.counts(pts)
    np.testing.assert_array_equal(got, ref)
    assert got.sum() == ref.sum() > 0
    # a hand-placed point: x=0.1, y=-1.9, z=0.6 -> ix 4, iy 0, iz 3; its centre is (0.25, -1.75, 0.75)
    idx, inside = grid.index(np.array([[0.1, -1.9, 0.6]]))
    assert inside[0] and idx[0].tolist() == [3, 0, 4]
    np.testing.assert_allclose(grid.centers(idx), [[0.25, -1.75, 0.75]])
    with pytest.raises(ValueError, match="whole number"):
        VoxelGrid((-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0), 0.3)


def test_sector_mask_of_real_kitti_scan_is_contiguous_and_at_ratio() -> None:
    grid = VoxelGrid()
    pts = read_scan(data_path("3d", "kitti", "training", "velodyne", "000000.bin")).points
    occ = torch.from_numpy(grid.occupancy(pts))
    strategy = RadialSectorMasking(0.8, sector_deg=1.0)
    masked, idx = sector_mask_occupied(occ, grid, strategy, torch.Generator().manual_seed(0))
    n = len(idx)
    assert n > 5_000  # 8,428 occupied 0.4 m voxels in frame 000000
    assert int(masked.sum()) == n - int(np.floor(n * 0.2 + 1e-6))  # exact count: 80 % hidden
    centres = torch.from_numpy(grid.centers(idx.numpy())).float()
    sector = strategy.sector_index(centres)
    # whole sectors: every sector is entirely hidden or entirely kept, except at most the one the
    # fixed count cuts through
    mixed = [s for s in sector.unique().tolist() if 0 < masked[sector == s].float().mean() < 1]
    assert len(mixed) <= 1
    kept_sectors = sector[~masked].unique()
    assert 0.1 < len(kept_sectors) / len(sector.unique()) < 0.4
    vis = visible_grid(occ, masked, idx)
    assert int(vis.sum()) == n - int(masked.sum()) and not (vis & ~occ).any()


def test_occupancy_loss_balances_positives_and_sampled_negatives() -> None:
    occ = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    occ[0, 0, 0, :2] = True  # 2 positives
    logits = torch.zeros(1, 2, 4, 4)
    u = torch.rand(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    # all logits 0: positives and negatives each cost log 2
    assert float(occupancy_loss(logits, occ, u, neg_ratio=1.0)) == pytest.approx(2 * np.log(2), rel=1e-6)
    perfect = torch.where(occ, 20.0, -20.0)
    assert float(occupancy_loss(perfect, occ, u)) < 1e-6
    # only the 2 empty voxels with the smallest draws are negatives: a wrong logit elsewhere is free
    neg_order = u.masked_fill(occ, 2).flatten().argsort()
    wrong = perfect.clone().flatten()
    wrong[neg_order[5]] = 20.0
    assert float(occupancy_loss(wrong.view_as(perfect), occ, u)) < 1e-6
    wrong[neg_order[0]] = 20.0
    assert float(occupancy_loss(wrong.view_as(perfect), occ, u)) == pytest.approx(20 / 2, rel=1e-3)


def test_copy_nearest_kept_sector_baseline_rotates_the_kept_column() -> None:
    from maskworks.domains.lidar.rmae import sector_of_cells
    from maskworks.domains.lidar.rmae_eval import copy_nearest_sector

    grid = VoxelGrid((-2.0, 2.0), (-2.0, 2.0), (0.0, 0.5), 0.5)  # 1 x 8 x 8
    vis = np.zeros(grid.shape, bool)
    vis[0, 4, 6] = True  # centre (x, y) = (1.25, 0.25): sector 0 of four 90-degree sectors
    cell_sector = sector_of_cells(grid, 90.0)
    assert cell_sector[4, 6] == 0 and cell_sector[6, 3] == 1  # (x, y) = (-0.25, 1.25) is in sector 1
    kept = np.array([True, False, False, False])
    region = cell_sector == 1
    out = copy_nearest_sector(vis, region, cell_sector, kept, grid, 90.0)
    # sector 1's nearest kept sector is 0: rotating (-0.25, 1.25) by -90 deg lands on (1.25, 0.25)
    assert out[0, 6, 3] and int(out.sum()) == 1
