"""``maskworks train lidar/rmae``: R-MAE pre-training on shipped real scans plus simulated scenes.

Data: the shipped KITTI frames (minus ``data.holdout``, kept for evaluation) and the nuScenes sweep,
plus ``data.simulated`` scenes from :func:`simulate_scene` (settings from ``data.sim``, as the detector's
recipe: see :func:`~.simulator.simulator_kwargs`), each voxelised once to an occupancy grid.
Augmentation: random flip and 90-degree rotations about the sensor (exact on the square grid).
After training: reconstruction metrics and a BEV picture on the held-out KITTI frame, and the
backbone exported alone to ``backbone.safetensors`` for a detector.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from maskworks.core.io.points import read_scan
from maskworks.core.training.task import StepContext, Task, unwrap
from torch import Tensor
from torch.utils.data import Dataset

from .rmae import RMAE, augment_bev, occupancy_loss, sector_mask_occupied, visible_grid
from .simulator import recipe_sim, simulate_scene, simulator_kwargs
from .voxel import VoxelGrid


def kitti_scan(frame: str) -> np.ndarray:
    from maskworks.data import data_path

    return read_scan(data_path("3d", "kitti", "training", "velodyne", f"{frame}.bin")).points


def real_scans(kitti_dirs: list, extra_scans: list, exclude: set[str]) -> list[np.ndarray]:
    """Every scan of the KITTI folders (as stored: full scans and camera-view crops; labels unused) minus the
    ``exclude`` ids, and of the ``boxes.json`` folders (Argoverse 2, PandaSet) moved into KITTI's frame."""
    from .real_data import boxes_json_scans, frame_ids, kitti_root

    out = []
    for d in kitti_dirs:
        root = kitti_root(d)
        out += [read_scan(root / "velodyne" / f"{f}.bin").points for f in frame_ids(root) if f not in exclude]
    for folder in extra_scans:
        out += [s.points for s in boxes_json_scans(folder)]
    return out


class OccupancyScans(Dataset):
    """Occupancy grids ``{"occ": uint8 [nz, ny, nx]}`` of real and simulated scans, voxelised once."""

    def __init__(self, grid: VoxelGrid, kitti_frames: list[str], nuscenes: bool = True, simulated: int = 0,
                 sim: dict | None = None, repeat: int = 1, extra: list[np.ndarray] | None = None) -> None:
        from maskworks.data import data_path

        scans = [kitti_scan(f) for f in kitti_frames] + list(extra or [])
        if nuscenes:
            scans += [read_scan(p).points for p in sorted(data_path("3d", "nuscenes").glob("*.pcd.bin"))]
        scans += [simulate_scene(1000 + s, **simulator_kwargs(sim, 1000 + s))[0] for s in range(simulated)]
        if not scans:
            raise ValueError("no scans selected: set data.kitti_frames, data.nuscenes or data.simulated")
        self.occ = torch.stack([torch.from_numpy(grid.occupancy(s).astype(np.uint8)) for s in scans])
        self.num_real = len(scans) - simulated
        self.repeat = int(repeat)

    def __len__(self) -> int:
        return len(self.occ) * self.repeat

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"occ": self.occ[i % len(self.occ)]}




class RMAETask(Task):
    """``model``: :class:`RMAE` args (grid, widths, neg_ratio); ``masking``: radial_sector settings."""

    def _build_rmae(self) -> RMAE:
        m = dict(self.cfg.get("model", {}))
        m.pop("init", None)
        mk = dict(self.cfg.get("masking") or {})
        mk.pop("name", None)
        return RMAE(grid=m.pop("grid", None), mask_ratio=float(mk.pop("ratio", 0.8)),
                    sector_deg=float(mk.pop("sector_deg", 1.0)), range_aware=bool(mk.pop("range_aware", False)), **m)

    def grid(self) -> VoxelGrid:
        g = (self.cfg.get("model") or {}).get("grid") or {}
        return VoxelGrid(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()})

    def build_model(self) -> RMAE:
        model = self._build_rmae()
        init = (self.cfg.get("model") or {}).get("init")
        if init:  # continue pre-training a whole R-MAE (e.g. the shipped one, on more scans)
            from maskworks.core.io import resolve_shipped
            from maskworks.core.training.checkpoint import load_weights

            load_weights(resolve_shipped(init), model)
        return model

    def build_dataset(self, split: str = "train") -> OccupancyScans:
        d = self.cfg.get("data", {})
        holdout = set(d.get("holdout", ["000002"]))
        if d.get("holdout_fold") is not None:
            from .detection.task import held_out_frames

            holdout |= set(held_out_frames({"holdout_fold": d["holdout_fold"], "folds": d.get("folds")}))
        frames = [f for f in d.get("kitti_frames", ["000000", "000001", "000002"]) if f not in holdout]
        extra = real_scans(d.get("kitti_dirs") or [], d.get("extra_scans") or [], holdout)
        return OccupancyScans(self.grid(), frames, bool(d.get("nuscenes", True)), int(d.get("simulated", 0)),
                              recipe_sim(d), int(d.get("repeat", 1)), extra)

    def training_step(self, model, batch, ctx: StepContext):
        raw = unwrap(model)
        occ = augment_bev(batch["occ"].bool(), ctx.rand(2))
        # one mask per scan (occupied-voxel counts differ between scans), drawn from the step's generator
        vis = []
        for o in occ:
            masked, idx = sector_mask_occupied(o, raw.voxel_grid, raw.masking, ctx.generator)
            vis.append(visible_grid(o, masked, idx))
        logits = model(torch.stack(vis))
        return occupancy_loss(logits, occ, ctx.rand(*occ.shape[1:]).to(logits.device), raw.neg_ratio)

    def on_fit_end(self, model: RMAE, run_dir: Path) -> dict:
        """Metrics + BEV picture on the held-out KITTI frame; export the backbone for a detector."""
        from maskworks.core.training.checkpoint import save_weights

        from .rmae_eval import evaluate_frames

        run_dir = Path(run_dir)
        raw = unwrap(model)
        g = raw.voxel_grid
        meta = {"what": "R-MAE BEV backbone (maskworks.domains.lidar.rmae.BEVBackbone)",
                "in_channels": raw.backbone.in_channels, "widths": list(raw.backbone.widths),
                "grid": {"x_range": list(g.x_range), "y_range": list(g.y_range), "z_range": list(g.z_range),
                         "voxel_size": g.voxel_size},
                "input": "occupancy [B, nz, ny, nx] float (height bins as channels), index [z, y, x]"}
        save_weights(raw.backbone, run_dir / "backbone.safetensors", metadata=meta)
        d = self.cfg.get("data", {})
        ev = d.get("eval_frame", "000002")
        calib = d.get("calib_frame", "000001")
        res = evaluate_frames(raw, kitti_scan(ev), kitti_scan(calib) if calib else None,
                              int(d.get("eval_repeats", 1)), run_dir / "rmae_bev.png")
        (run_dir / "rmae_eval.json").write_text(json.dumps({"frame": ev, "calib_frame": calib, **res}, indent=2))
        iou = {k: round(v["iou"], 4) for k, v in {**res["model"], **res["baselines"]}.items()}
        return {"masked_iou": iou, "backbone": str(run_dir / "backbone.safetensors"),
                "reconstruction": str(run_dir / "rmae_bev.png")}


def load_backbone(path: str | Path):
    """Rebuild the exported :class:`BEVBackbone` from ``backbone.safetensors`` (what a detector calls)."""
    from maskworks.core.training.checkpoint import load_weights, weights_metadata

    from .rmae import BEVBackbone

    meta = weights_metadata(path)
    if "widths" not in meta:
        raise ValueError(f"{path} is not an exported R-MAE backbone (no 'widths' in its metadata)")
    bb = BEVBackbone(int(meta["in_channels"]), tuple(meta["widths"]))
    load_weights(path, bb)
    return bb, meta
