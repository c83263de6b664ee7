"""Point-MAE smoke training through ``fit`` with tiny overrides; the saved model reloads exactly."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from maskworks.apps.recipes import find_recipe
from maskworks.core.training import fit, load_recipe
from maskworks.core.training.task import load_trained

TINY = ["data.pcl_scans=none", "data.scene_crops=1", "data.repeat=1", "trainer.max_steps=2", "trainer.batch_size=4",
        "trainer.log_every=1", "trainer.ckpt_every=2", "model.depth=1", "model.decoder_depth=1",
        "model.embed_dim=32", "model.num_heads=2", "model.decoder_num_heads=2", "model.tokenizer_hidden=8"]


def test_point_mae_smoke_fit_and_reload(tmp_path: Path) -> None:
    cfg = load_recipe(find_recipe("points/point-mae"), "smoke", TINY)
    out = fit(cfg, tmp_path, progress=False)
    assert out["steps"] == 2 and math.isfinite(out["final_loss"])
    assert 0 < out["masked_chamfer_l2"] < 1.0  # unit-sphere clouds: Chamfer-L2 of groups is small
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "reconstruction.png").is_file()
    _, model = load_trained(tmp_path)
    x = torch.randn(2, 1024, 3)
    f = model.encoder.features(x)
    assert f.shape == (2, 64) and torch.isfinite(f).all()
