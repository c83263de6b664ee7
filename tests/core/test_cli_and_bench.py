import json
import math
import re
import subprocess
import sys

import pytest
import torch

from maskworks.apps.cli import BENCHES, EVALS, PREDICTS, main


def run(*args):
    return subprocess.run([sys.executable, "-m", "maskworks.apps.cli", *args], capture_output=True, text=True)


def test_every_subcommand_has_help_that_explains():
    for cmd, phrase in [("train", "--resume"), ("eval", "Entries"), ("predict", "Entries"), ("bench", "peer"),
                        ("demo", "127.0.0.1"), ("masks", "strategy")]:
        r = run(cmd, "--help")
        assert r.returncode == 0 and phrase in r.stdout, (cmd, r.stdout)


def test_every_option_of_every_command_says_what_it_does(monkeypatch):
    """Each argument of the top-level commands and of every eval/predict/bench entry has a help text
    (recorded as the parsers are built, then each ``--help`` is asked for)."""
    import argparse

    unexplained = []
    add = argparse._ActionsContainer.add_argument

    def recording_add(self, *args, **kwargs):
        action = add(self, *args, **kwargs)
        if not action.help and not isinstance(action, argparse._SubParsersAction):
            unexplained.append("/".join(action.option_strings) or action.dest)
        return action

    monkeypatch.setattr(argparse._ActionsContainer, "add_argument", recording_add)
    commands = [["--help"], ["train", "--help"], ["demo", "--help"], ["masks", "--help"]]
    commands += [[kind, name, "--help"] for kind, table in [("eval", EVALS), ("predict", PREDICTS),
                                                            ("bench", BENCHES)] for name in table]
    for argv in commands:
        unexplained.clear()
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0 and not unexplained, (argv, unexplained)


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
    assert main(["train", "nope"]) == 2
    assert re.search("no recipe 'nope'.*image-mae-cxr", capsys.readouterr().err)


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
    assert r["compiled"] == "both" and r["maskworks_img_s"] > 0 and r["huggingface_img_s"] > 0
    with pytest.raises(ValueError, match="compile must be one of"):
        bench_config("tiny", steps=1, warmup=1, compile="hf")


def test_mae_step_bench_runs_bf16_on_cpu_when_asked(capsys):
    """bf16 is an autocast context: linears compute in bf16 inside it and in fp32 without it."""
    from maskworks.apps.commands.core import bench_mae_step as main
    from maskworks.core.bench import bench_config, precision

    lin, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with precision(torch.device("cpu"), "bf16"):
        assert lin(x).dtype == torch.bfloat16
    with precision(torch.device("cpu"), "fp32"):
        assert lin(x).dtype == torch.float32
    r = bench_config("tiny", steps=1, warmup=1, dtype="bf16", device="cpu")
    assert r["dtype"] == "bf16" and r["maskworks_img_s"] > 0 and r["huggingface_img_s"] > 0
    with pytest.raises(ValueError, match="dtype must be one of"):
        bench_config("tiny", steps=1, warmup=1, dtype="fp16")
    assert main(["--configs", "tiny,tiny", "--steps", "1", "--warmup", "1", "--device", "cpu", "--dtype", "both"]) == 0
    out = capsys.readouterr().out
    assert out.count("cpu fp32 |") == 2 and out.count("cpu bf16 |") == 2  # both dtypes for every configuration


def test_mae_step_flops_match_a_hand_count():
    """Both models' FLOPs per step at the tiny configuration, counted by hand (2 per multiply-add;
    a linear costs 2MKN forward and 4MKN backward, 2MKN when its input needs no gradient; attention
    4 B Sq Sk D forward and 10 B Sq Sk D backward, as flash attention recomputes the scores). The
    difference is exactly the work we skip."""
    from maskworks.core.bench import CONFIGS, build_pair, step_flops

    c = CONFIGS["tiny"]
    b, d, dd, p = c["batch"], c["embed_dim"], c["decoder_embed_dim"], 16 * 16 * 3
    n = (c["image"] // 16) ** 2
    vis = n // 4  # 75 % masking
    ne, nd, q = 1 + vis, 1 + n, n - vis  # encoder tokens, decoder tokens, predicted tokens

    def linear(m, k, out, input_grad=True):
        return (6 if input_grad else 4) * b * m * k * out

    def attention(sq, sk, dim):
        return 14 * b * sq * sk * dim

    def block(tokens, dim):  # qkv, attention, output projection, MLP
        return linear(tokens, dim, 3 * dim) + attention(tokens, tokens, dim) + linear(tokens, dim, dim) \
            + linear(tokens, dim, 4 * dim) + linear(tokens, 4 * dim, dim)

    shared = c["depth"] * block(ne, d) + linear(ne, d, dd) + (c["decoder_depth"] - 1) * block(nd, dd)
    theirs = shared + linear(n, p, d, input_grad=False) + block(nd, dd) + linear(nd, dd, p)
    # ours: visible patches only; the last block's queries, projection and MLP and the head on masked tokens only
    last = linear(nd, dd, 3 * dd) + attention(q, nd, dd) + linear(q, dd, dd) + linear(q, dd, 4 * dd) + linear(q, 4 * dd, dd)
    ours = shared + linear(vis, p, d, input_grad=False) + last + linear(q, dd, p)
    model, hf, x = build_pair("tiny")
    assert step_flops(lambda: model(x).loss) == ours
    assert step_flops(lambda: hf(pixel_values=x).loss) == theirs > ours


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
    # one unreadable input: the good one is written, the bad one reported, and the exit status says so (2)
    assert main(["predict", "image-mae", str(img), str(bad), "--out", str(tmp_path / "out")]) == 2
    assert (tmp_path / "out" / f"{img.stem}_reconstruction.png").is_file()
    assert "bad.png: not a readable image" in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [f["file"] for f in summary["failed"]] == [str(bad)]
