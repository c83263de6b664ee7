"""MemMC-MAE end to end: recipe -> fit -> record -> detector, the shipped model, and the commands."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from maskworks.apps.recipes import find_recipe
from maskworks.core.training import fit, load_recipe
from maskworks.data import data_path
from maskworks.domains.medical.anomaly.detector import AnomalyDetector, to_unit_range
from maskworks.domains.medical.imaging.io import load_medical_image


def _tiny_folder(root: Path, n_normal: int = 40, n_abnormal: int = 6) -> Path:
    """A data folder of the shipped layout, cut from PneumoniaMNIST (train and val splits)."""
    src = data_path("cxr", "pneumoniamnist_28px")
    rows = list(csv.DictReader(open(src / "labels.csv")))
    (root / "images").mkdir(parents=True)
    out = []
    for split, n_n, n_a in [("train", n_normal, 0), ("val", 6, n_abnormal)]:
        picked = [r for r in rows if r["split"] == split and r["label"] == "normal"][:n_n] + \
                 [r for r in rows if r["split"] == split and r["label"] != "normal"][:n_a]
        for r in picked:
            shutil.copy(src / "images" / r["file"], root / "images" / r["file"])
            out.append(r)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "label", "label_int", "split"])
        w.writeheader()
        w.writerows(out)
    return root


@pytest.mark.slow  # ~20-40 s: Lightning Fabric start-up dominates
def test_tiny_recipe_trains_end_to_end_and_writes_the_record(tmp_path):
    data = _tiny_folder(tmp_path / "data")
    cfg = load_recipe(find_recipe("medical/memmc-cxr"), "smoke", [
        f"data.root={data}", "data.holdout=0.25", "trainer.max_steps=3", "trainer.batch_size=8",
        "model.embed_dim=16", "model.depth=1", "model.decoder_embed_dim=16", "model.decoder_depth=1",
        "model.memory_size=4", "trainer.log_every=1"])
    summary = fit(cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == 3 and summary["calibration_normals"] == 10  # 25 % of 40 held out
    rec = json.loads((tmp_path / "run" / "anomaly.json").read_text())
    assert rec["data"]["train_normals"] == 30 and rec["steps"] == 3
    assert rec["scoring"]["error"] == "ssim" and rec["scoring"]["standardise"] == "abs"
    assert len(rec["pixel_stats"]["mean"]) == 28 and len(rec["calibration"]["quantiles"]) == 201
    det = AnomalyDetector.load(tmp_path / "run" / "model.safetensors", device="cpu")
    assert det.model.memory_size == 4 and det.model.multi_level
    assert rec["ood"]["fitted_on"].startswith("10 held-out normal images") and len(rec["ood"]["template"]) == 14
    noise = torch.rand(40, 40).numpy()
    assert not det.analyse(noise).in_distribution  # the gate written by training refuses noise
    res = det.analyse(noise, gate=False)  # scored anyway on request
    assert res.heatmap.shape == (28, 28) and res.threshold == pytest.approx(rec["calibration"]["threshold"])


def test_shipped_model_is_small_calibrated_and_flags_the_pneumonia_example():
    w = data_path("weights", "memmc-cxr.safetensors")
    assert w.stat().st_size < 4_000_000
    rec = json.loads(data_path("weights", "memmc-cxr.json").read_text())
    assert rec["recipe"]["name"] == "memmc-cxr" and rec["data"]["train_normals"] == 1093
    assert rec["calibration"]["n"] == 121 and rec["calibration"]["specificity"] == 0.95
    det = AnomalyDetector.load(device="cpu")
    ex = data_path("examples", "anomaly")
    z = {}
    for name in ["normal_val_0183.png", "normal_val_0244.png", "pneumonia_val_0060.png", "pneumonia_val_0130.png"]:
        arr, meta = load_medical_image(ex / name)
        z[name] = det.analyse(to_unit_range(arr, meta)).z
    # values recorded when the examples were picked (data/examples/anomaly/README.md)
    assert z["normal_val_0183.png"] == pytest.approx(-0.534, abs=2e-3)
    assert z["pneumonia_val_0060.png"] == pytest.approx(3.769, abs=2e-3)
    assert max(z["normal_val_0183.png"], z["normal_val_0244.png"]) < det.calibration.threshold
    assert min(z["pneumonia_val_0060.png"], z["pneumonia_val_0130.png"]) > det.calibration.threshold


def test_predict_command_writes_heatmaps_and_skips_bad_files(tmp_path, capsys):
    from maskworks.apps.cli import main

    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\1\2\3")
    ex = data_path("examples", "anomaly", "pneumonia_val_0060.png")
    # one bad input: the good one is written, the bad one named on stderr and in summary.json, exit status 2
    assert main(["predict", "medical/anomaly", str(ex), str(bad), "--out", str(tmp_path / "out")]) == 2
    rep = json.loads((tmp_path / "out" / "pneumonia_val_0060.json").read_text())
    assert rep["anomalous"] is True and len(rep["sha256"]) == 64
    assert (tmp_path / "out" / "pneumonia_val_0060_heatmap.png").stat().st_size > 1000
    assert "skipped " in capsys.readouterr().err and not (tmp_path / "out" / "bad.json").exists()
    failed = json.loads((tmp_path / "out" / "summary.json").read_text())["failed"]
    assert [f["file"] for f in failed] == [str(bad)] and failed[0]["kind"] == "input"


def test_eval_command_on_a_small_folder(tmp_path):
    from maskworks.apps.cli import main

    data = _tiny_folder(tmp_path / "data", n_normal=0, n_abnormal=6)
    out = tmp_path / "res.json"
    assert main(["eval", "medical/anomaly", "--data", str(data), "--json", str(out), "--no-progress",
                 "--max-normals", "150"]) == 0
    res = json.loads(out.read_text())
    assert res["normal"] == 6 and res["abnormal"] == 6 and res["train_normals"] == 150 and res["synthetic_lesion_images"] == 6
    names = [r["name"] for r in res["results"]]
    assert names[0].startswith("MemMC-MAE") and "plain MAE (pixel error, mean)" in names
    assert any(n.startswith("PatchCore") for n in names)
    for r in res["results"]:
        assert 0 <= r["auroc"] <= 1 and 0 <= r["pixel_auroc"] <= 1 and 0 <= r["aupro"] <= 1
    assert (tmp_path / "res_roc.png").stat().st_size > 1000


def test_predict_command_refuses_to_judge_a_ct_and_fails_on_nan(tmp_path, capsys):
    """A CT gets a JSON saying why there is no verdict (no heatmap); a DICOM whose RescaleSlope is NaN is an
    input error (exit status 2), not a score."""
    import pydicom

    from maskworks.apps.cli import main

    ct = data_path("medical", "dicom", "CT_small.dcm")
    ds = pydicom.dcmread(ct)
    ds.RescaleSlope = "NaN"
    ds.save_as(tmp_path / "nan_slope.dcm")
    out = tmp_path / "out"
    assert main(["predict", "medical/anomaly", str(ct), str(tmp_path / "nan_slope.dcm"), "--out", str(out),
                 "--no-progress"]) == 2
    rep = json.loads((out / "CT_small.json").read_text())
    assert rep["in_distribution"] is False and rep["anomalous"] is None and rep["outputs"] == []
    assert "Modality is CT" in rep["ood_message"] and not (out / "CT_small_heatmap.png").exists()
    assert "NOT JUDGED" in capsys.readouterr().out
    failed = json.loads((out / "summary.json").read_text())["failed"]
    assert len(failed) == 1 and failed[0]["kind"] == "input" and "RescaleSlope" in failed[0]["error"]
