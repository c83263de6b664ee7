"""The video/videomae-v2 recipe's smoke preset end to end (resumable, pictures, baseline figures),
and the videomae-step bench on its tiny configuration."""
from __future__ import annotations

import json

import pytest
import torch

from maskworks.apps.recipes import find_recipe
from maskworks.core.training import fit, load_recipe
from maskworks.core.training.task import load_trained
from maskworks.apps.commands.video import bench_videomae_step as bench_main
from maskworks.domains.video.bench import bench_config
from maskworks.domains.video.videomae import VideoMAE


def test_smoke_recipe_trains_and_draws_held_out_reconstructions(tmp_path):
    cfg = load_recipe(find_recipe("video/videomae-v2"), "smoke", ["trainer.max_steps=4", "trainer.ckpt_every=2"])
    full = fit(cfg, tmp_path / "full", progress=False)
    assert full["reconstruction_split"] == "val"  # the held-out clip, not a training one
    assert full["model_mse"] > 0 and full["nearest_visible_mse"] > 0
    rec = json.loads((tmp_path / "full" / "reconstruction.json").read_text())
    assert [r["clip"] for r in rec["clips"]] == ["apply_eye_makeup"]
    assert (tmp_path / "full" / "reconstructions" / "apply_eye_makeup.gif").stat().st_size > 1000
    task, model = load_trained(tmp_path / "full")
    assert isinstance(model, VideoMAE) and model.grid == (4, 4, 4)


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_same_weights(tmp_path):
    """Clip windows are a function of the index and flips and masks of (seed, step): resuming is exact."""
    recipe = find_recipe("video/videomae-v2")
    common = ["trainer.ckpt_every=2", "data.num_frames=4", "model.decoder_depth=1"]
    fit(load_recipe(recipe, "smoke", ["trainer.max_steps=4", *common]), tmp_path / "full", progress=False)
    fit(load_recipe(recipe, "smoke", ["trainer.max_steps=2", *common]), tmp_path / "part", progress=False)
    fit(load_recipe(recipe, "smoke", ["trainer.max_steps=4", *common]), tmp_path / "part", resume=True, progress=False)
    _, model = load_trained(tmp_path / "full")
    _, resumed = load_trained(tmp_path / "part")
    for (k, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_bench_counts_tokens_and_flops(tmp_path, capsys):
    dual = bench_config("tiny", steps=1, warmup=0)
    plain = bench_config("tiny", steps=1, warmup=0, decoder_mask_ratio=0.0)
    t = dual["tokens"]  # 4 frames at 64 px: grid 2 x 4 x 4 = 32, 1 of 16 places visible (90 %)
    assert t == {"grid": 32, "encoder": 2, "maskworks_decoder": 2 + 15, "huggingface_decoder": 32}
    assert plain["tokens"]["maskworks_decoder"] == 32
    # dual masking saves FLOPs; without it ours is Hugging Face's work minus embedding the hidden patches
    assert dual["maskworks_gflop_step"] < plain["maskworks_gflop_step"] <= plain["huggingface_gflop_step"]
    assert dual["huggingface_gflop_step"] == plain["huggingface_gflop_step"]
    assert dual["ratio"] > 0 and dual["flop_ratio"] > plain["flop_ratio"] >= 1.0
    out = tmp_path / "b.json"
    assert bench_main(["--configs", "tiny", "--steps", "1", "--warmup", "0", "--json", str(out)]) == 0
    assert "clips/s" in capsys.readouterr().out and json.loads(out.read_text())[0]["config"] == "tiny"
    with pytest.raises(SystemExit):
        bench_main(["--configs", "zz"])
