"""The CT label-fraction study's parts: the 28 px ResNet-18 (a reference parameter count, strides,
no leak under SparK, every scale reaching the decoder), SimCLR's NT-Xent against a loop written
from the paper's formula, the statistics (metrics by hand, t-intervals, paired differences), and
the resumable study on the shipped OrganAMNIST sample (a killed study loses nothing; other
settings in the same folder are refused)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from maskworks.apps.commands.medical import eval_label_fractions as main
from maskworks.core.io import resolve_shipped
from maskworks.domains.medical.spark.pretrain import SimCLR, nt_xent
from maskworks.domains.medical.spark.resnet_small import SmallResNet
from maskworks.domains.medical.spark.sparse import SparseEncoder, active_at
from maskworks.domains.medical.spark.spark import SparK2d, timm_backbone
from maskworks.domains.medical.spark.study import (
    drops,
    flatness,
    mean_ci,
    metrics,
    paired_differences,
    summarize,
)

torch.set_num_threads(1)
SAMPLE = resolve_shipped("shipped:medical/organamnist_28px_sample")


def test_resnet18_28px_matches_the_cifar_resnet18_and_keeps_all_scales() -> None:
    full = timm_backbone("resnet18_28px", in_chans=1)
    # the CIFAR/MedMNIST ResNet-18 (kuangliu/pytorch-cifar) has 11,173,962 parameters with RGB input
    # and a 10-class fc: minus the fc (512 * 10 + 10) and 2 of 3 stem input channels (2 * 64 * 9)
    assert sum(p.numel() for p in full.parameters()) == 11_173_962 - 5_130 - 1_152
    net = timm_backbone("resnet18_28px_w16", in_chans=1)
    assert isinstance(net, SmallResNet) and net.num_features == 128
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 128, 4, 4)
    assert [f["reduction"] for f in net.feature_info] == [1, 2, 4, 8]
    with pytest.raises(ValueError, match="multiple of 8"):
        timm_backbone("resnet18_28px_w12", 1)

    torch.manual_seed(0)
    model = SparK2d("resnet18_28px_w8", in_chans=1, input_size=32, decoder_width=32)
    assert model.grid == (4, 4) and model.feature_strides == [1, 2, 4, 8]
    mask = model.make_mask(2, torch.Generator().manual_seed(0))
    assert int(mask.mask[0].sum()) == 10  # 60 % of 16 cells hidden (6 kept)
    loss, pred = model(torch.randn(2, 1, 32, 32), mask)
    loss.backward()
    # the stride-1 scale (one more than the decoder's 3 blocks) is added at full size: it gets gradients
    assert model.densify_projs[3].weight.grad.abs().sum() > 0 and model.mask_tokens[3].grad.abs().sum() > 0


def test_small_resnet_masked_pixels_never_reach_visible_features() -> None:
    torch.manual_seed(0)
    backbone = timm_backbone("resnet18_28px_w8", 1)
    enc = SparseEncoder(backbone, ["layer1", "layer2", "layer3", "layer4"]).train()
    x = torch.randn(2, 1, 32, 32)
    active = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.5
    active[:, 0, 0] = True
    keep_px = active_at(active, (32, 32)).unsqueeze(1)
    a, b = enc(x, active), enc(torch.where(keep_px, x, 10 * torch.randn_like(x) + 5), active)
    for fa, fb in zip(a, b):
        keep = active_at(active, fa.shape[2:]).unsqueeze(1).expand_as(fa)
        torch.testing.assert_close(fa[keep], fb[keep], rtol=0, atol=0)
        assert torch.all(fa[~keep] == 0)


def test_nt_xent_equals_the_papers_formula() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    tau = 0.3
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).double()
    n2, total = 10, 0.0
    for i in range(n2):  # l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), j = i's partner
        j = (i + 5) % n2
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / den)
    assert abs(float(nt_xent(z1, z2, tau)) - total / n2) < 1e-5
    e = torch.eye(4)  # identical, orthogonal pairs at a low temperature: loss near 0
    assert float(nt_xent(e, e, 0.05)) < 1e-6


def test_simclr_top1_and_loss_on_a_real_batch() -> None:
    torch.manual_seed(0)
    model = SimCLR("resnet18_28px_w8", 1, dim=16, hidden=32, temperature=0.2)
    x = torch.randn(6, 1, 32, 32)
    loss, top1 = model(x, x)  # identical views: the partner is the most similar other view
    assert float(top1) == 1.0 and float(loss.detach()) > 0
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_metrics_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.4, 0.3], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4]])
    labels = np.array([0, 1, 2, 2, 0])
    m = metrics(probs, labels)
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)  # per-class recalls 2/2, 1/1, 1/2
    # class 0 vs rest: scores 0.7, 0.5 over 0.1, 0.3, 0.2 -> AUC 1; class 1: 0.8 over all -> 1;
    # class 2: positives 0.3, 0.6 against 0.1, 0.1, 0.4 -> (3 + 2) / 6
    assert m["auc"] == pytest.approx((1 + 1 + 5 / 6) / 3)


def test_mean_ci_and_paired_statistics() -> None:
    s = mean_ci([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1)
    assert s["ci95"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)  # t(0.975, 2 df)
    assert mean_ci([0.5]) == {"mean": 0.5, "std": 0.0, "ci95": None}
    runs = [{"method": m, "fraction": f, "seed": s, "probe": {"accuracy": acc, "auc": 0.9, "balanced_accuracy": acc}}
            for (m, f, s, acc) in [("spark", 1.0, 0, 0.9), ("spark", 1.0, 1, 0.8), ("spark", 0.1, 0, 0.7),
                                   ("spark", 0.1, 1, 0.7), ("moco", 1.0, 0, 0.9), ("moco", 1.0, 1, 0.9),
                                   ("moco", 0.1, 0, 0.5), ("moco", 0.1, 1, 0.6)]]
    d = paired_differences(runs, "probe", "accuracy", "spark", "moco")
    assert d["0.1"]["mean"] == pytest.approx(0.15) and d["0.1"]["seeds"] == 2  # (0.2 + 0.1) / 2
    assert d["1.0"]["mean"] == pytest.approx(-0.05)
    dr = drops(runs, "probe", "accuracy", 1.0, 0.1)
    assert dr["spark"]["mean"] == pytest.approx(0.15) and dr["moco"]["mean"] == pytest.approx(0.35)
    summ = summarize(runs, "probe")
    assert summ["moco"]["0.1"]["accuracy_mean"] == pytest.approx(0.55) and summ["moco"]["0.1"]["seeds"] == 2
    curve = [(s, 2.0 - min(s, 50) / 50) for s in range(1, 101)]  # falls to 1.0 by step 50, then flat
    fl = flatness(curve)
    assert fl["loss_end"] == pytest.approx(1.0) and fl["last_quarter_share_of_drop"] == pytest.approx(0.0)


def _files(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}


@pytest.mark.slow  # ~20-30 s on one thread: one 3-step pre-training through fit, 4 fine-tunes, a resume
def test_ct_study_resumes_without_redoing_finished_runs(tmp_path: Path) -> None:
    out, js = tmp_path / "out", tmp_path / "res.json"
    args = ["--protocol", "ct28", "--data", str(SAMPLE), "--out", str(out), "--json", str(js), "--fractions", "1,0.1",
            "--seeds", "1", "--methods", "spark,random", "--backbone", "resnet18_28px_w8", "--pretrain-steps", "3",
            "--pretrain-batch", "16", "--finetune-steps", "2", "--no-progress"]
    assert main(args) == 0
    res = json.loads(js.read_text())
    # the sample: 12 train and 6 val images per class, 11 classes; 10 % of 12 -> 1 per class
    assert (res["n_train"], res["n_eval"]) == (132, 66) and res["n_labelled"] == {"1.0": 132, "0.1": 11}
    assert res["settings"]["flip"] is False and res["settings"]["size"] == 32
    assert len(res["runs"]) == 4 and res["pretrain"]["spark"]["images_seen"] == 48
    for f in ("results.md", "metrics_vs_fraction.png", "auc_vs_fraction.png", "pretrain/spark/backbone.safetensors",
              "features/spark.safetensors", "features/random.safetensors"):
        assert (out / f).is_file(), f
    before = _files(out)
    killed = out / "runs" / "spark" / "fraction0.1_seed0.json"
    first = json.loads(killed.read_text())
    killed.unlink()  # as if the study was killed during this run
    assert main(args) == 0
    after = _files(out)
    assert {k: v for k, v in after.items() if k != str(killed.relative_to(out))} == \
           {k: v for k, v in before.items() if k != str(killed.relative_to(out))}  # nothing else redone
    again = json.loads(killed.read_text())
    assert again["probe"] == first["probe"] and again["finetune"] == first["finetune"]  # deterministic
    assert json.loads(js.read_text())["summary"] == res["summary"]
    # the same folder with another budget is refused, not mixed
    assert main([*args[:-2], "4", "--no-progress"]) == 2
