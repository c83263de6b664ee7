"""Training: exact resume after kill -9, data-parallel equivalence, checkpoints, configs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from maskworks.core.training import apply_overrides, load_recipe, save_checkpoint, latest_checkpoint, load_checkpoint
from maskworks.core.training.config import RecipeError
from maskworks.core.training.loop import StepBatchSampler, learning_rate

TINY = ["model.depth=1", "model.embed_dim=48", "model.num_heads=3", "model.decoder_embed_dim=32",
        "model.decoder_depth=1", "trainer.batch_size=8", "trainer.log_every=5", "trainer.warmup_steps=3"]


def train_cmd(out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "maskworks.apps.cli", "train", "image-mae-cxr", "--preset", "smoke", "--out", str(out),
           "--no-progress"]
    for s in TINY + list(extra):
        cmd += ["--set", s]
    return cmd


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def weights(run: Path) -> dict:
    return load_file(str(run / "model.safetensors"))


def test_kill_9_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    steps = ["trainer.max_steps=120", "trainer.ckpt_every=5"]
    ref = tmp_path / "ref"
    subprocess.run(train_cmd(ref, *steps), check=True, env=env(), capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(run, *steps), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = run / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if pointer.exists() and json.loads(pointer.read_text())["step"] >= 10:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = json.loads(pointer.read_text())["step"]
    assert 10 <= killed_at < 120 and killed_at % 67 != 0  # mid-epoch (539 images / batch 8 = 67 steps)
    assert not (run / "model.safetensors").exists()

    subprocess.run(train_cmd(run, *steps) + ["--resume"], check=True, env=env(), capture_output=True)
    # the interrupted run's logs are kept; the resumed one logs beside them
    assert (run / "logs" / "metrics.csv").is_file()
    assert len(list((run / "logs").glob("resumed_from_step_*/metrics.csv"))) == 1
    a, b = weights(ref), weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def logged_losses(run: Path) -> list[float]:
    import csv

    rows = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


def test_two_gloo_processes_match_one_process(tmp_path):
    """Same global batch split over 2 CPU processes (gloo) = one process: same per-step losses, and
    the same weights except where Adam's step sign is decided by float noise (gradients ~ 0)."""
    common = ["trainer.max_steps=4", "trainer.ckpt_every=100", "trainer.log_every=1"]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(train_cmd(one, *common), check=True, env=env(), capture_output=True)
    r = subprocess.run(train_cmd(two, *common, "trainer.devices=2", "trainer.accelerator=cpu"), env=env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"world_size": 2' in r.stdout
    l1, l2 = logged_losses(one), logged_losses(two)
    assert len(l1) == len(l2) == 4
    assert l1 == pytest.approx(l2, rel=1e-4)
    a, b = weights(one), weights(two)
    init = weights_after_zero_steps()
    close = total = 0
    for k in a:
        close += int(torch.isclose(a[k], b[k], rtol=1e-4, atol=1e-6).sum())
        total += a[k].numel()
    assert close / total > 0.98, close / total
    # and training moved the weights, so the comparison is not vacuous
    moved = sum(int((~torch.isclose(a[k], init[k], rtol=1e-4, atol=1e-6)).sum()) for k in init)
    assert moved / total > 0.5


def weights_after_zero_steps():
    from maskworks.core.training import load_task

    cfg = apply_overrides(load_recipe(_recipe(), "smoke"), TINY)
    torch.manual_seed(0)
    return {k: v for k, v in load_task(cfg).build_model().state_dict().items() if not k.endswith("pos_embed")}


def _recipe():
    from maskworks.apps.recipes import find_recipe

    return find_recipe("image-mae-cxr")


def test_sampler_is_stateless_and_splits_ranks():
    full = list(StepBatchSampler(20, 4, 1, 0, 1, seed=3, start_step=0, max_steps=10))
    resumed = list(StepBatchSampler(20, 4, 1, 0, 1, seed=3, start_step=6, max_steps=10))
    assert resumed == full[6:]
    r0 = list(StepBatchSampler(20, 4, 1, 0, 2, seed=3, start_step=0, max_steps=10))
    r1 = list(StepBatchSampler(20, 4, 1, 1, 2, seed=3, start_step=0, max_steps=10))
    assert [a + b for a, b in zip(r0, r1)] == full
    epoch0 = sum(full[:5], [])
    assert sorted(epoch0) == list(range(20))  # one epoch visits every sample once


def test_learning_rate_schedule():
    tr = {"lr": 1.0, "min_lr": 0.0, "warmup_steps": 4, "max_steps": 14}
    assert [learning_rate(s, tr) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(9, tr) == pytest.approx(0.5)
    assert learning_rate(14, tr) == pytest.approx(0.0)


def test_checkpoint_round_trip_and_atomic_pointer(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, 7, model, opt)
    # a half-written checkpoint (temporary folder) is ignored
    (tmp_path / "checkpoints" / ".tmp_step_00000009_1").mkdir()
    ck = latest_checkpoint(tmp_path)
    assert ck.name == "step_00000007"
    m2 = torch.nn.Linear(3, 2)
    o2 = torch.optim.AdamW(m2.parameters(), 1e-2)
    state = load_checkpoint(ck, m2, o2)
    assert state["step"] == 7 and torch.equal(m2.weight, model.weight)
    s1, s2 = opt.state_dict()["state"], o2.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"]) for i in s1)
    # checkpoints are plain safetensors + JSON: nothing to unpickle
    assert {p.name for p in ck.iterdir()} == {"model.safetensors", "optimizer.safetensors", "state.json"}


def test_recipe_presets_and_overrides(tmp_path):
    cfg = load_recipe(_recipe(), "smoke", ["trainer.lr=0.01", "model.extra.deep=3"])
    assert cfg["trainer"]["max_steps"] == 30 and cfg["trainer"]["lr"] == 0.01 and cfg["model"]["extra"]["deep"] == 3
    with pytest.raises(RecipeError, match="no preset 'nope'"):
        load_recipe(_recipe(), "nope")
    with pytest.raises(RecipeError, match="key=value"):
        apply_overrides({}, ["trainer.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


def test_bf16_autocast_and_gradient_accumulation_run(tmp_path):
    from maskworks.core.training import fit

    cfg = apply_overrides(load_recipe(_recipe(), "smoke"), TINY + [
        "trainer.max_steps=3", "trainer.accumulate=2", "trainer.precision=bf16-mixed", "trainer.log_every=1",
        "trainer.accelerator=cpu"])
    summary = fit(cfg, tmp_path, progress=False)
    losses = logged_losses(tmp_path)
    assert len(losses) == 3 and all(0 < l < 10 for l in losses)
    assert summary["steps"] == 3 and (tmp_path / "tb").is_dir() and (tmp_path / "reconstruction.png").is_file()


def test_overrides_and_recipes_read_exponent_floats_as_numbers(tmp_path):
    """``1e-3`` without a dot is a string in YAML 1.1 (PyYAML); a learning rate must be a number."""
    from maskworks.core.training import apply_overrides, load_recipe

    cfg = apply_overrides({"trainer": {"lr": 0.1}}, ["trainer.lr=1e-3", "trainer.max_steps=7", "name=x1e3"])
    assert cfg["trainer"] == {"lr": 0.001, "max_steps": 7} and cfg["name"] == "x1e3"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ntask: a:B\ntrainer: {lr: 5E-4, wd: -1e+2, steps: 10, tag: '1e-3'}\n")
    t = load_recipe(recipe)["trainer"]
    assert t == {"lr": 0.0005, "wd": -100.0, "steps": 10, "tag": "1e-3"}


def test_bad_trainer_settings_are_refused_by_name_before_a_run_starts(tmp_path, capsys):
    from maskworks.apps.cli import main
    from maskworks.core.training.loop import trainer_config

    assert trainer_config({"trainer": {"lr": 1, "max_steps": 5, "devices": "auto"}})["lr"] == 1  # an int is a number
    for bad, message in [({"max_steps": "abc"}, "trainer.max_steps must be a whole number, got 'abc'"),
                         ({"max_steps": 2.5}, "trainer.max_steps must be a whole number"),
                         ({"lr": True}, "trainer.lr must be a number"),
                         ({"max_stepz": 5}, r"unknown trainer settings \['max_stepz'\]")]:
        with pytest.raises(RecipeError, match=message):
            trainer_config({"trainer": bad})
    run = tmp_path / "run"
    assert main(["train", "image-mae-cxr", "--out", str(run), "--set", "trainer.max_steps=abc"]) == 2
    err = capsys.readouterr().err
    assert "maskworks train image-mae-cxr: trainer.max_steps must be a whole number" in err and "Traceback" not in err
    assert not run.exists()  # refused before the run folder was made
    missing = tmp_path / "nowhere.safetensors"
    assert main(["eval", "image-mae", "--weights", str(missing)]) == 2
    assert f"maskworks eval image-mae: no weights file {missing}: give the model.safetensors" in capsys.readouterr().err
    (tmp_path / "unfinished").mkdir()
    assert main(["eval", "image-mae", "--weights", str(tmp_path / "unfinished")]) == 2
    assert "has no model.safetensors: the run has not finished" in capsys.readouterr().err


@pytest.mark.parametrize("override,message", [
    ("foo.bar=1", r"unknown recipe sections \['foo'\]"),
    ("model.embed_dimm=64", r"model settings do not fit ImageMAETask.*embed_dimm"),
    ("trainer.batch_size=0", "trainer.batch_size must be above 0"),
    ("trainer.lr=0", "trainer.lr must be above 0"),
])
def test_config_mistakes_are_refused_before_the_run_folder_exists(tmp_path, capsys, override, message):
    import re

    from maskworks.apps.cli import main

    run = tmp_path / "run"
    assert main(["train", "image-mae-cxr", "--preset", "smoke", "--out", str(run), "--set", override]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err
    assert not run.exists()


def test_mistyped_names_get_a_did_you_mean(capsys):
    from maskworks.apps.cli import main

    assert main(["train", "image-mae-cx"]) == 2
    assert "no recipe 'image-mae-cx'. Did you mean image-mae-cxr?" in capsys.readouterr().err
    assert main(["bench", "mae-stp"]) == 2
    assert "unknown 'mae-stp'; Did you mean mae-step" in capsys.readouterr().err
