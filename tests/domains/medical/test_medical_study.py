"""The label-fraction study end to end on a generated folder: JSON structure, exact stratified
counts, and a learnable synthetic task reaching AUC > 0.8 with all labels."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskworks.apps.commands.medical import eval_label_fractions as main

from test_medical_pretrain import write_folder  # noqa: E402  (tests/domains/medical on sys.path)

torch.set_num_threads(1)


@pytest.mark.slow  # ~25 s of CPU: two 1-step pre-trainings through fit, 6 fine-tunes
def test_label_fraction_study_end_to_end(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", ["normal"] * 24 + ["abnormal"] * 16)  # no split column
    out, js = tmp_path / "out", tmp_path / "res.json"
    rc = main(["--data", str(data), "--out", str(out), "--json", str(js), "--fractions", "1,0.5", "--seeds", "1",
               "--pretrain-steps", "1", "--pretrain-batch", "8", "--finetune-steps", "2", "--batch-size", "8",
               "--probe-epochs", "20", "--no-progress"])
    assert rc == 0
    res = json.loads(js.read_text())
    assert json.loads((out / "results.json").read_text())["summary"] == res["summary"]
    assert (out / "auc_vs_fraction.png").stat().st_size > 10_000 and (out / "metrics_vs_fraction.png").is_file() and "| fraction |" in (out / "results.md").read_text()
    # stratified 20 % hold-out: normal floor(4.8 + .5) = 5, abnormal floor(3.2 + .5) = 3
    assert res["eval_counts"] == {"abnormal": 3, "normal": 5} and res["train_counts"] == {"abnormal": 13, "normal": 19}
    # fraction 0.5 of (19, 13): floor(9.5 + .5) = 10, floor(6.5 + .5) = 7
    assert res["subset_counts"] == {"1.0": {"0": {"abnormal": 13, "normal": 19}},
                                    "0.5": {"0": {"abnormal": 7, "normal": 10}}}
    assert res["n_labelled"] == {"1.0": 32, "0.5": 17}
    assert res["methods"] == ["spark", "moco", "random"] and len(res["runs"]) == 3 * 2
    assert Path(res["settings"]["weights"]["spark"]).is_file() and Path(res["settings"]["weights"]["moco"]).is_file()
    for stage in ("probe", "finetune"):
        for method in ("spark", "moco", "random"):
            for frac in ("1.0", "0.5"):
                cell = res["summary"][stage][method][frac]
                assert set(cell) == {f"{k}_{s}" for k in ("accuracy", "auc", "balanced_accuracy")
                                     for s in ("mean", "std", "ci95")} | {"seeds"}
                assert cell["accuracy_ci95"] is None  # one seed: no interval
                assert cell["seeds"] == 1 and cell["auc_std"] == 0.0 and 0 <= cell["accuracy_mean"] <= 1
            assert res["summary"][stage][method]["1.0"]["auc_mean"] > 0.8  # a bright square is learnable


def test_label_fraction_study_clear_errors(tmp_path: Path, capsys) -> None:
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "labels.csv" in capsys.readouterr().err
    data = write_folder(tmp_path / "d", ["normal", "abnormal"] * 4)
    assert main(["--data", str(data), "--methods", "spark,byol", "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert "byol" in capsys.readouterr().err
