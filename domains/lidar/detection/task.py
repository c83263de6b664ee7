"""``maskworks train lidar/detector``: the detector trained on :mod:`.scenes`, from an R-MAE backbone or not."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from maskworks.core.io import resolve_shipped
from maskworks.core.training.task import StepContext, Task, unwrap

from ..simulator import recipe_sim
from .model import BEVDetector, make_grid
from .scenes import DetectionScans, augment
from .targets import build_targets, detection_loss


FOLDS_FILE = Path(__file__).resolve().with_name("kitti_folds.yaml")  # not a recipe: beside the task


def kitti_folds(path: str | Path | None = None) -> list[list[str]]:
    """The cross-validation folds of the real labelled KITTI frames (``detection/kitti_folds.yaml``)."""
    from maskworks.core.training.config import parse_yaml

    return [[str(f) for f in fold] for fold in parse_yaml(Path(path or FOLDS_FILE).read_text())["folds"]]


def held_out_frames(data: dict) -> list[str]:
    """The frames a real-data recipe leaves out: fold ``data.holdout_fold`` of :func:`kitti_folds` and
    ``data.holdout``."""
    out = list(map(str, data.get("holdout") or []))
    k = data.get("holdout_fold")
    if k is not None:
        folds = kitti_folds(data.get("folds"))
        if not 0 <= int(k) < len(folds):
            raise ValueError(f"data.holdout_fold {k}: there are {len(folds)} folds (0..{len(folds) - 1})")
        out += folds[int(k)]
    return out


class DetectorTask(Task):
    """``model``: grid, widths, head_channels, ``pretrained`` (an R-MAE ``backbone.safetensors``, or null for
    random init), ``init`` (a trained detector's ``model.safetensors`` to start from: fine-tuning on
    another grid, since every layer is convolutional); ``loss``: ``reg_weight`` (the box-regression L1 against
    the heatmap focal loss).

    ``data`` with ``window`` (round 8, real scans; :class:`~.real_scenes.WindowScans`): kitti_dirs, frames,
    holdout_fold (a fold of ``detection/kitti_folds.yaml`` left out), holdout, extra_scans (``boxes.json``
    folders: Argoverse 2, PandaSet), simulated / sim, repeat (per source), passes, sample (database sampling per
    class). Without ``window`` (rounds 1-7, simulated scenes): simulated, paste, kitti_frames, holdout, repeat."""

    SECTIONS = {"loss": {"reg_weight": 1.0}}

    def build_model(self) -> BEVDetector:
        m = dict(self.cfg.get("model", {}))
        pre = m.pop("pretrained", None)
        init = m.pop("init", None)
        model = BEVDetector(grid=m.pop("grid", None), **m)
        if init:
            if pre:
                raise ValueError(f"model.init ({init}) and model.pretrained ({pre}) both set: a detector started from "
                                 "trained weights already has its backbone; set model.pretrained=null")
            from maskworks.core.training.checkpoint import load_weights

            from .inference import detector_weights

            try:
                path, _ = detector_weights(resolve_shipped(init))
            except ValueError as e:
                raise ValueError(f"model.init: {e}") from None
            try:
                load_weights(path, model)
            except (RuntimeError, ValueError) as e:
                raise ValueError(f"model.init: {path} does not fit the recipe's model (same model.widths and "
                                 f"model.head_channels as that run are needed): {str(e)[:300]}") from None
            return model
        if pre:
            from ..rmae_task import load_backbone

            bb, meta = load_backbone(resolve_shipped(pre))
            if tuple(meta["widths"]) != model.backbone.widths or int(meta["in_channels"]) != model.backbone.in_channels:
                raise ValueError(f"{pre}: backbone widths {meta['widths']} / {meta['in_channels']} channels do not match "
                                 f"model.widths {list(model.backbone.widths)}; set model.widths to the backbone's")
            model.backbone.load_state_dict(bb.state_dict())
        return model

    def window(self):
        """The training window of a real-data recipe (None for the simulated-scene recipes)."""
        if not hasattr(self, "_window"):
            d = self.cfg.get("data", {})
            self._window = None
            if d.get("window"):
                from .real_scenes import window_grid

                g = make_grid((self.cfg.get("model") or {}).get("grid"))
                self._window = window_grid(float(d["window"]), g.z_range, g.voxel_size)
        return self._window

    def build_dataset(self, split: str = "train"):
        d = self.cfg.get("data", {})
        if d.get("window"):
            return self.build_real_dataset(d)
        holdout = set(d.get("holdout", ["000002"]))
        frames = [f for f in d.get("kitti_frames", ["000000", "000001"]) if f not in holdout]
        grid = make_grid((self.cfg.get("model") or {}).get("grid"))
        return DetectionScans(grid, frames, int(d.get("simulated", 16)), recipe_sim(d),
                              int(d.get("paste", 6)), holdout, int(d.get("repeat", 1)), int(d.get("real_repeat", 2)),
                              seed=int((self.cfg.get("trainer") or {}).get("seed", 0)),
                              far_prob=float(d.get("paste_far", 0.0)), max_range=float(d.get("paste_max_range", 50.0)),
                              rotate=d.get("rotate") or None)

    def build_real_dataset(self, d: dict):
        from ..real_data import boxes_json_scans, kitti_frames
        from .real_scenes import WindowScans, simulated_scans

        held = set(held_out_frames(d))
        scans = kitti_frames(d.get("kitti_dirs") or ["shipped:3d/kitti/training"], d.get("frames"), exclude=held)
        for folder in d.get("extra_scans") or []:
            scans += boxes_json_scans(folder)
        scans += simulated_scans(int(d.get("simulated", 0)), recipe_sim(d))
        return WindowScans(self.window(), scans, dict(d.get("repeat") or {}), int(d.get("passes", 1)),
                           seed=int((self.cfg.get("trainer") or {}).get("seed", 0)), sample=d.get("sample"),
                           min_points=int(d.get("min_points", 5)), normalise=tuple(d.get("normalise_sizes") or ()))

    def training_step(self, model, batch, ctx: StepContext):
        raw = ctx.model
        window = self.window()
        if window is not None:  # augmented in point space by the dataset
            occ, boxes, grid = batch["occ"], batch["boxes"], window
        else:
            occ, boxes = augment(batch["occ"], batch["boxes"], ctx.rand(2))
            grid = raw.voxel_grid
        tg = [build_targets(b.double().numpy(), lab.numpy(), grid, raw.stride) for b, lab in zip(boxes, batch["labels"])]
        tgt = {k: torch.from_numpy(np.stack([t[k] for t in tg])).to(occ.device) for k in tg[0]}
        return detection_loss(model(occ), tgt, float(self.section("loss")["reg_weight"]))

    def on_fit_end(self, model: BEVDetector, run_dir: Path) -> dict:
        """AP on the held-out KITTI frame and, separately, on the training frames."""
        run_dir = Path(run_dir)
        from ..kitti_metric import json_safe
        from .evaluate import evaluate_on_kitti
        from .inference import LidarDetector

        if self.window() is not None:  # a real-data run: its predictions on the frames it left out
            from .crossval import save_fold_predictions

            path = save_fold_predictions(unwrap(model), self.cfg, run_dir)
            return {"out_of_fold_predictions": str(path) if path else None}
        res = evaluate_on_kitti(LidarDetector(unwrap(model).eval(), self.cfg), self.cfg.get("data", {}))

        (run_dir / "detection_eval.json").write_text(json.dumps(json_safe(res), indent=2))
        return {k: {"Car BEV/3D moderate strict": [v["strict"]["Car"]["bev"]["moderate"], v["strict"]["Car"]["3d"]["moderate"]],
                    "Car BEV/3D moderate loose": [v["loose"]["Car"]["bev"]["moderate"], v["loose"]["Car"]["3d"]["moderate"]]}
                for k, v in res.items() if isinstance(v, dict) and "strict" in v}


