"""Pre-training recipes (spark-cxr, spark-ct, moco-cxr) through ``fit``: finite losses, exported
backbones that load into fresh dense backbones with identical features; data splits and MoCo's
queue/momentum by hand."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from maskworks.core.training import apply_overrides, fit, load_recipe
from maskworks.domains.medical.imaging.datasets import UnlabelledImages, split_rows, standardize, stratified_subset
from maskworks.domains.medical.spark.pretrain import MoCo, dense_backbone_for
from maskworks.domains.medical.spark.spark import load_backbone

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[3] / "domains" / "medical" / "recipes"


def write_folder(root: Path, labels: list[str], split: list[str] | None = None, size: int = 32, seed: int = 0) -> Path:
    """images/ + labels.csv; 'abnormal' images carry a bright square (a learnable difference)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label"] + (["split"] if split else []))
        for i, lab in enumerate(labels):
            a = rng.normal(0.4, 0.08, (size, size))
            if lab == "abnormal":
                a[size // 4:3 * size // 4, size // 4:3 * size // 4] += 0.35
            Image.fromarray((a.clip(0, 1) * 255).astype(np.uint8)).save(root / "images" / f"{i:03d}.png")
            w.writerow([f"{i:03d}.png", lab] + ([split[i]] if split else []))
    return root


def test_stratified_subset_exact_counts_and_nesting() -> None:
    labels = np.array([0] * 24 + [1] * 16)
    for frac, (n0, n1) in {1.0: (24, 16), 0.5: (12, 8), 0.25: (6, 4), 0.1: (2, 2), 0.05: (1, 1)}.items():
        idx = stratified_subset(labels, frac, seed=3)
        assert (int((labels[idx] == 0).sum()), int((labels[idx] == 1).sum())) == (n0, n1)
        assert len(set(idx.tolist())) == len(idx)
    small, big = stratified_subset(labels, 0.1, 7), stratified_subset(labels, 0.5, 7)
    assert set(small) <= set(big)  # nested for one seed
    assert not np.array_equal(stratified_subset(labels, 0.5, 1), stratified_subset(labels, 0.5, 2))
    with pytest.raises(ValueError, match="fraction"):
        stratified_subset(labels, 0.0, 0)


def test_split_rows_column_or_holdout() -> None:
    rows = [{"file": f"{i}", "label": "a" if i < 6 else "b", "patient_split": "train" if i % 3 else "valid"}
            for i in range(10)]
    s = split_rows(rows)
    assert s.eval.tolist() == [0, 3, 6, 9] and s.train.tolist() == [1, 2, 4, 5, 7, 8]
    no_col = [{"file": r["file"], "label": r["label"]} for r in rows]
    h = split_rows(no_col, holdout=0.2)
    # 6 'a' -> floor(1.2 + 0.5) = 1 held out, 4 'b' -> floor(0.8 + 0.5) = 1
    assert len(h.eval) == 2 and len(h.train) == 8 and {rows[i]["label"] for i in h.eval} == {"a", "b"}
    with pytest.raises(ValueError, match="no split 'test'"):
        split_rows(rows, eval_split="test")


def test_unlabelled_images_two_folders(tmp_path: Path) -> None:
    a = write_folder(tmp_path / "a", ["normal", "abnormal"] * 8, ["train"] * 12 + ["val"] * 4)
    b = write_folder(tmp_path / "b", ["normal", "abnormal"] * 5)  # no split column: 2 of 10 held out
    ds = UnlabelledImages([str(a), str(b)], size=64)
    assert len(ds) == 12 + 8 and ds[0]["image"].shape == (1, 64, 64)
    assert len(UnlabelledImages([str(a), str(b)], size=64, which="eval")) == 4 + 2


def _fit(name: str, overrides: dict, run: Path) -> tuple[dict, dict]:
    cfg = apply_overrides(load_recipe(RECIPES / f"{name}.yaml", "smoke"), overrides)
    summary = fit(cfg, run, progress=False)
    return cfg, summary


def _losses(run: Path) -> list[float]:
    with open(run / "logs" / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def _assert_export_matches(cfg: dict, model_features, run: Path, x: torch.Tensor) -> None:
    fresh = dense_backbone_for(cfg)
    load_backbone(fresh, run / "backbone.safetensors")
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model_features(x), rtol=0, atol=0)
    assert set(load_file(str(run / "backbone.safetensors"))) == set(fresh.state_dict())


@pytest.fixture(scope="module")
def cxr_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cxr")
    return write_folder(root, ["normal", "abnormal"] * 12, ["train"] * 16 + ["val"] * 8)


def test_spark_cxr_recipe_fits_and_exports(cxr_folder: Path, tmp_path: Path) -> None:
    from maskworks.core.training.task import load_trained

    cfg, summary = _fit("spark-cxr", {"data.roots": [str(cxr_folder)], "trainer.max_steps": 4,
                                      "trainer.batch_size": 8, "model.decoder_width": 32}, tmp_path)
    losses = _losses(tmp_path)
    assert len(losses) == 2 and all(math.isfinite(v) and 0 < v < 10 for v in losses)
    assert math.isfinite(summary["val_masked_loss"])
    _, model = load_trained(tmp_path / "model.safetensors")
    x = standardize(torch.rand(2, 1, 64, 64))
    _assert_export_matches(cfg, lambda t: model.encoder(t)[-1], tmp_path, x)


def test_moco_cxr_recipe_fits_and_exports(cxr_folder: Path, tmp_path: Path) -> None:
    from maskworks.core.training.task import load_trained

    cfg, summary = _fit("moco-cxr", {"data.roots": [str(cxr_folder)], "trainer.max_steps": 4,
                                     "trainer.batch_size": 8, "model.queue_size": 16}, tmp_path)
    losses = _losses(tmp_path)
    # InfoNCE over 1 positive + 16 queue keys starts near log(17) = 2.83
    assert all(math.isfinite(v) and 0 < v < 2 * math.log(17) for v in losses)
    _, model = load_trained(tmp_path / "model.safetensors")
    assert int(model.queue_ptr) == (4 * 8) % 16
    _assert_export_matches(cfg, model.encoder, tmp_path, standardize(torch.rand(2, 1, 64, 64)))


def test_spark_ct_recipe_fits_on_shipped_volume_and_exports(tmp_path: Path) -> None:
    from maskworks.core.training.task import load_trained

    cfg, summary = _fit("spark-ct", {"trainer.max_steps": 2, "data.zoom": 0.5, "data.patch": 64,
                                     "data.stride": 32}, tmp_path)
    losses = _losses(tmp_path)
    assert losses and all(math.isfinite(v) for v in losses)
    _, model = load_trained(tmp_path / "model.safetensors")
    _assert_export_matches(cfg, lambda t: model.encoder(t)[-1], tmp_path, torch.rand(1, 1, 64, 64, 64))


def test_spark_ct_rejects_thin_volume(tmp_path: Path) -> None:
    from maskworks.core.io import InputError
    from maskworks.domains.medical.spark.pretrain import VolumePatches
    from maskworks.data import data_path

    with pytest.raises(InputError, match="2-D image"):
        VolumePatches([str(data_path("medical", "dicom", "CT_small.dcm"))], 32, window="lung")


def test_moco_queue_and_momentum_by_hand() -> None:
    torch.manual_seed(0)
    m = MoCo("resnet18", 1, dim=8, hidden=16, queue_size=5, momentum=0.9, bn_splits=2)
    q0 = [p.detach().clone() for p in m.encoder.parameters()]
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    k_before = [p.detach().clone() for p in m.encoder_k.parameters()]
    x = torch.randn(4, 1, 64, 64)
    loss, logits = m(x, x.flip(-1), torch.tensor([2, 0, 3, 1]))
    assert logits.shape == (4, 1 + 5) and math.isfinite(float(loss))
    for kb, k, q in zip(k_before, m.encoder_k.parameters(), q0):
        torch.testing.assert_close(k, 0.9 * kb + 0.1 * (q + 1.0))
    assert int(m.queue_ptr) == 4
    m(x, x, None)  # 4 more keys wrap around a queue of 5
    assert int(m.queue_ptr) == 3
    assert torch.allclose(m.queue.norm(dim=1), torch.ones(5))
