import math
import subprocess
import sys

import pytest

from maskworks.apps.cli import BENCHES, EVALS, PREDICTS, main


def run(*args):
    return subprocess.run([sys.executable, "-m", "maskworks.apps.cli", *args], capture_output=True, text=True)


def test_every_subcommand_has_help_that_explains():
    for cmd, phrase in [("train", "--resume"), ("eval", "Entries"), ("predict", "Entries"), ("bench", "peer"),
                        ("demo", "127.0.0.1"), ("masks", "strategy")]:
        r = run(cmd, "--help")
        assert r.returncode == 0 and phrase in r.stdout, (cmd, r.stdout)


def test_entries_are_registered_and_importable():
    import importlib

    assert "mae-step" in BENCHES and "image-mae" in EVALS and "image-mae" in PREDICTS
    for table in (BENCHES, EVALS, PREDICTS):
        for name, entry in table.items():
            mod, fn = entry.split(":")
            assert callable(getattr(importlib.import_module(mod), fn)), name


def test_unknown_entry_and_recipe_are_explained(capsys):
    assert main(["bench", "nope"]) == 2
    assert "choose one of" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no recipe 'nope'.*image-mae-cxr"):
        main(["train", "nope"])


def test_train_list_shows_recipes(capsys):
    assert main(["train", "--list"]) == 0
    assert "image-mae-cxr" in capsys.readouterr().out


def test_mae_step_bench_reports_a_ratio():
    from maskworks.core.bench import bench_config

    r = bench_config("tiny", steps=2, warmup=1)
    assert r["maskworks_img_s"] > 0 and r["huggingface_img_s"] > 0
    assert math.isclose(r["ratio"], r["maskworks_img_s"] / r["huggingface_img_s"], rel_tol=0.01)


def test_mae_step_bench_compiles_both_models_when_asked():
    from maskworks.core.bench import bench_config

    r = bench_config("tiny", steps=1, warmup=1, compile=True)
    assert r["compiled"] and r["maskworks_img_s"] > 0 and r["huggingface_img_s"] > 0


def test_masks_command_draws_every_strategy(tmp_path):
    from maskworks.apps.mask_gallery import STRATEGY_CHOICES, draw_all

    paths = draw_all(None, tmp_path)
    assert len(paths) == 1 + len(STRATEGY_CHOICES) and all(p.stat().st_size > 1000 for p in paths)


def test_shipped_image_mae_beats_training_free_inpainters(tmp_path):
    """The shipped model, on the 247 NIH validation images it never saw."""
    import json

    out = tmp_path / "eval.json"
    assert main(["eval", "image-mae", "--repeats", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    mse = r["masked_patch_mse"]
    assert r["images"] == 247 and r["split"] == "valid"
    assert mse["maskworks MAE"] < 0.6 * min(mse["nearest visible patch"], mse["mean visible pixel"])


def test_predict_writes_reconstructions_and_skips_unreadable_files(tmp_path, capsys):
    from maskworks.data import data_path

    img = next(iter(sorted((data_path("cxr", "nih_64px") / "images").glob("*.png"))))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", "image-mae", str(img), str(bad), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / f"{img.stem}_reconstruction.png").is_file()
    assert "bad.png: not a readable image" in capsys.readouterr().out
