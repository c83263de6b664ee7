"""``maskworks bench spark-step`` with tiny settings: fields present, times and ratios positive."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from maskworks.apps.commands.medical import bench_spark_step as main

torch.set_num_threads(1)


def test_spark_step_bench_tiny(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["--size", "64", "--batch", "2", "--steps", "1", "--warmup", "0", "--decoder-width", "32",
                 "--device", "cpu", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["peer"] for r in res] == ["dense-recon", "classify"]
    for r in res:
        assert r["mask_grid"] == [2, 2] and r["device"] == "cpu" and r["batch"] == 2
        for k in ("spark_step_ms", "dense_step_ms", "spark_img_s", "dense_img_s", "ratio"):
            assert math.isfinite(r[k]) and r[k] > 0, k
        assert abs(r["ratio"] - r["dense_step_ms"] / r["spark_step_ms"]) < 0.01 * r["ratio"] + 1e-3  # ms keep 4+ digits
    assert "ratio" in capsys.readouterr().out
