"""R-MAE smoke training through ``fit`` on a tiny grid; metrics, picture and backbone export."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from maskworks.apps.recipes import find_recipe
from maskworks.core.training import fit, load_recipe
from maskworks.domains.lidar.rmae_task import load_backbone

TINY = ["model.grid={x_range: [-8.0, 8.0], y_range: [-8.0, 8.0], z_range: [-3.0, 1.0], voxel_size: 0.4}",
        "model.widths=[4, 8, 8]", "data.kitti_frames=['000000']", "data.holdout=[]", "data.nuscenes=false",
        "data.simulated=1", "data.sim_azimuth_step=2.0", "data.calib_frame=null", "trainer.max_steps=2",
        "trainer.batch_size=2"]


def test_rmae_smoke_fit_exports_backbone_and_metrics(tmp_path: Path) -> None:
    cfg = load_recipe(find_recipe("lidar/rmae"), "smoke", TINY)
    out = fit(cfg, tmp_path, progress=False)
    assert out["steps"] == 2 and math.isfinite(out["final_loss"])
    assert (tmp_path / "rmae_bev.png").is_file()
    ev = json.loads((tmp_path / "rmae_eval.json").read_text())
    assert 0.79 <= ev["realised_ratio"] <= 0.81  # ratio 0.8 of the occupied voxels hidden
    assert ev["baselines"]["all occupied"]["recall"] == 1.0
    assert 0 < ev["baselines"]["all occupied"]["precision"] == ev["baselines"]["all occupied"]["iou"] < 1
    bb, meta = load_backbone(tmp_path / "backbone.safetensors")
    assert meta["widths"] == [4, 8, 8] and meta["grid"]["voxel_size"] == 0.4
    feats = bb(torch.zeros(1, 10, 40, 40))
    assert [f.shape[-1] for f in feats] == [40, 20, 10]


def test_rmae_scans_follow_the_recipe_sim_block_and_read_the_old_key_unchanged() -> None:
    import numpy as np

    from maskworks.domains.lidar.rmae_task import OccupancyScans
    from maskworks.domains.lidar.simulator import hdl64e_elevations, simulate_scene
    from maskworks.domains.lidar.voxel import VoxelGrid

    grid = VoxelGrid()
    old = OccupancyScans(grid, [], nuscenes=False, simulated=1, sim={"azimuth_step": 1.0})
    direct = grid.occupancy(simulate_scene(1000, azimuth_step_deg=1.0)[0]).astype(np.uint8)
    np.testing.assert_array_equal(old.occ[0].numpy(), direct)
    new = OccupancyScans(grid, [], nuscenes=False, simulated=1, sim={"azimuth_step": 1.0, "beams": "hdl64e",
                                                                      "traffic": True, "kerb_walls": True})
    kerb = simulate_scene(1000, azimuth_step_deg=1.0, elevations_deg=hdl64e_elevations(), traffic=True, kerb_walls=True)
    np.testing.assert_array_equal(new.occ[0].numpy(), grid.occupancy(kerb[0]).astype(np.uint8))
    assert not np.array_equal(new.occ[0].numpy(), direct)


def test_reconstruction_view_draws_input_hits_misses_and_truth_in_the_bev_orientation() -> None:
    """Panels as the detection tab's BEV (x up, y left): a wall at x = +30 m, y in [5, 15] m lands in the
    upper-left quarter; the left panel is exactly the kept occupancy, the right one the whole scan, and the
    middle one colours every hidden occupied cell green (predicted) or blue (missed)."""
    import numpy as np
    import torch

    from maskworks.domains.lidar.rmae import RMAE
    from maskworks.domains.lidar.rmae_eval import evaluate_scan, reconstruction_view

    torch.manual_seed(0)
    model = RMAE(widths=(8, 16, 32)).eval()
    g = np.mgrid[29.9:30.1:0.1, 5:15:0.1, -1.5:0.5:0.2].reshape(3, -1).T
    ring = np.c_[12 * np.cos(np.linspace(0, 2 * np.pi, 3000)), 12 * np.sin(np.linspace(0, 2 * np.pi, 3000)),
                 np.full(3000, -1.7)]
    pts = np.concatenate([g, ring]).astype(np.float32)
    with torch.no_grad():
        res = evaluate_scan(model, pts, seed=0, thresholds={"t": 0.5})
    img = reconstruction_view(res, 0.5, scale=1)
    n = model.voxel_grid.shape[1]
    assert img.shape == (n, 3 * n + 8, 3) and img.dtype == np.uint8
    left, mid, right = img[:, :n], img[:, n + 4:2 * n + 4], img[:, 2 * n + 8:]
    a = res["_arrays"]
    bev = lambda m: m.T[::-1, ::-1]  # noqa: E731  [y, x] -> rows x up, cols y left
    np.testing.assert_array_equal((right == 0).all(-1), bev(a["occ"].any(0)))
    np.testing.assert_array_equal((left == 0).all(-1), bev(a["vis"].any(0)))
    rows, cols = np.nonzero((right == 0).all(-1) & ~bev(np.hypot(*np.mgrid[-n // 2:n // 2, -n // 2:n // 2]) < 35))
    assert (rows < n // 2).all() and (cols < n // 2).all()  # the wall: x > 0 (up), y > 0 (left)
    hidden = bev((a["occ"].any(0) & a["region"][0] & ~a["vis"].any(0)))
    green = (mid == [25, 178, 25]).all(-1)
    blue = (mid == [51, 76, 229]).all(-1)
    np.testing.assert_array_equal(green | blue, hidden)
