"""SparK: no leakage from masked pixels, visible-only normalisation statistics, dense export that
matches the sparse encoder, a loss that goes down, in 2-D (timm) and 3-D."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from maskworks.domains.medical.spark.resnet3d import ResNet3d
from maskworks.domains.medical.spark.sparse import (
    SparseBatchNorm2d,
    SparseEncoder,
    SparseInstanceNorm3d,
    SparseLayerNorm,
    active_at,
    densify,
    feature_extractor,
    sparsify,
)
from maskworks.domains.medical.spark.spark import SparK2d, SparK3d, load_backbone, timm_backbone

torch.set_num_threads(1)


def _active(seed: int, batch: int, grid: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, *grid, generator=g) > 0.6
    a.view(batch, -1)[:, 0] = True  # at least one visible cell per sample
    return a


def _perturb_masked(x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    keep = active_at(active, x.shape[2:]).unsqueeze(1)
    return torch.where(keep, x, 10 * torch.randn_like(x) + 5)


def test_sparse_batchnorm_uses_visible_positions_only() -> None:
    bn = nn.BatchNorm2d(3)
    sparsify(bn)
    assert isinstance(bn, SparseBatchNorm2d)
    x = torch.randn(2, 3, 4, 4) * 3 + 1
    active = torch.tensor([[[True, False], [False, False]], [[False, True], [True, True]]])
    keep = active_at(active, (4, 4))  # [2, 4, 4]
    y = bn.train()(x, active)
    vis = x.permute(0, 2, 3, 1)[keep]  # [N, 3] by hand
    mean, var = vis.mean(0), vis.var(0, unbiased=False)
    expected = (vis - mean) / torch.sqrt(var + bn.eps)
    torch.testing.assert_close(y.permute(0, 2, 3, 1)[keep], expected)
    assert torch.all(y.permute(0, 2, 3, 1)[~keep] == 0)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * vis.var(0, unbiased=True))
    assert int(bn.num_batches_tracked) == 1
    # masked values do not move the statistics at all
    torch.testing.assert_close(bn(_perturb_masked(x, active), active).permute(0, 2, 3, 1)[keep], expected)
    # no mask: plain BatchNorm
    torch.testing.assert_close(bn.eval()(x), nn.functional.batch_norm(
        x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))


def test_sparse_instancenorm3d_and_layernorm_hand_computation() -> None:
    inorm = sparsify(nn.InstanceNorm3d(2, affine=True))
    assert isinstance(inorm, SparseInstanceNorm3d)
    with torch.no_grad():
        inorm.weight.copy_(torch.tensor([2.0, 0.5]))
        inorm.bias.copy_(torch.tensor([1.0, -1.0]))
    x = torch.randn(2, 2, 4, 4, 4)
    active = _active(1, 2, (2, 2, 2))
    y = inorm(x, active)
    keep = active_at(active, (4, 4, 4))
    for b in range(2):
        for c in range(2):
            v = x[b, c][keep[b]]
            ref = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + inorm.eps) * inorm.weight[c] + inorm.bias[c]
            torch.testing.assert_close(y[b, c][keep[b]], ref)
            assert torch.all(y[b, c][~keep[b]] == 0)
    ln = sparsify(nn.LayerNorm(5))
    assert isinstance(ln, SparseLayerNorm)
    x = torch.randn(2, 4, 4, 5)  # channels-last, as inside ConvNeXt blocks
    active = _active(2, 2, (2, 2))
    y = ln(x, active)
    keep = active_at(active, (4, 4))
    torch.testing.assert_close(y[keep], nn.functional.layer_norm(x[keep], (5,)))
    assert torch.all(y[~keep] == 0)


def test_sparsify_refuses_layers_that_would_leak_and_densify_restores() -> None:
    with pytest.raises(TypeError, match="GroupNorm"):
        sparsify(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4)))
    net = sparsify(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    densify(net)
    assert type(net[0]) is nn.Conv2d and type(net[1]) is nn.BatchNorm2d


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto", "convnext_tiny"])
def test_masked_pixels_never_reach_visible_features(name: str) -> None:
    torch.manual_seed(0)
    backbone = timm_backbone(name, in_chans=1)
    enc = SparseEncoder(backbone, [f["module"] for f in backbone.feature_info][-4:]).train()
    x = torch.randn(2, 1, 64, 64)
    active = torch.tensor([[[True, False], [False, True]], [[False, False], [True, False]]])
    a, b = enc(x, active), enc(_perturb_masked(x, active), active)
    for fa, fb in zip(a, b):
        keep = active_at(active, fa.shape[2:]).unsqueeze(1).expand_as(fa)
        assert fa[keep].abs().sum() > 0
        torch.testing.assert_close(fa[keep], fb[keep], rtol=0, atol=0)
        assert torch.all(fa[~keep] == 0)


def test_spark_prediction_ignores_masked_pixels_and_mask_is_stride32() -> None:
    torch.manual_seed(0)
    model = SparK2d("resnet18", in_chans=1, input_size=96, decoder_width=64)
    assert model.feature_strides == [4, 8, 16, 32] and model.grid == (3, 3)
    mask = model.make_mask(2, torch.Generator().manual_seed(0))
    again = model.make_mask(2, torch.Generator().manual_seed(0))
    assert torch.equal(mask.mask, again.mask) and mask.mask.shape == (2, 3, 3)
    assert mask.num_masked == 6  # 60 % of 9 cells, rounded to keep int(9 * 0.4) = 3
    x = torch.randn(2, 1, 96, 96)
    _, pred = model(x, mask)
    _, pred2 = model(_perturb_masked(x, ~mask.mask), mask)
    assert pred.shape == x.shape
    torch.testing.assert_close(pred, pred2, rtol=0, atol=0)
    rec = model.reconstruct(x, pred, mask)
    visible = active_at(~mask.mask, (96, 96)).unsqueeze(1)
    assert torch.equal(rec[visible], x[visible])
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(2, 1, 64, 64), mask)


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto"])
def test_exported_dense_backbone_matches_sparse_encoder(tmp_path, name: str) -> None:
    torch.manual_seed(0)
    model = SparK2d(name, in_chans=1, input_size=64, decoder_width=64)
    x = torch.randn(2, 1, 64, 64)
    model.train()
    model(x, model.make_mask(2, torch.Generator().manual_seed(1)))  # move BN running stats
    path = tmp_path / "backbone.safetensors"
    model.export_backbone(path)
    assert path.read_bytes()[:8] != b"PK\x03\x04"  # not a torch zip/pickle
    dense = load_backbone(timm_backbone(name, in_chans=1), path).eval()
    ref = feature_extractor(dense, model.encoder.feature_modules)(x)
    model.eval()
    all_visible = torch.ones(2, *model.grid, dtype=torch.bool)
    for i, (no_mask, full) in enumerate(zip(model.encoder(x), model.encoder(x, all_visible))):
        torch.testing.assert_close(no_mask, ref[f"f{i}"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(full, ref[f"f{i}"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        load_backbone(timm_backbone("resnet18" if name != "resnet18" else "convnext_atto", 1), path)


def _smooth_batch(batch: int, size: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(batch, 1, *[max(s // 16, 1) for s in size], generator=g)
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return nn.functional.interpolate(coarse, size=size, mode=mode, align_corners=False)


def test_spark2d_loss_decreases() -> None:
    torch.manual_seed(0)
    model = SparK2d("resnet18", in_chans=1, input_size=64, decoder_width=64)
    x = _smooth_batch(4, (64, 64))
    mask = model.make_mask(4, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        loss, _ = model(x, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0] and all(b < a for a, b in zip(losses, losses[1:])), losses


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_spark3d_no_leak_export_and_loss(tmp_path, norm: str) -> None:
    torch.manual_seed(0)
    model = SparK3d(in_chans=1, input_size=64, widths=(8, 16, 32, 64), decoder_width=32, norm=norm)
    assert model.grid == (2, 2, 2)
    x = _smooth_batch(2, (64, 64, 64))
    mask = model.make_mask(2, torch.Generator().manual_seed(3))
    active = ~mask.mask
    feats = model.encoder(x, active)
    feats2 = model.encoder(_perturb_masked(x, active), active)
    for fa, fb in zip(feats, feats2):
        keep = active_at(active, fa.shape[2:]).unsqueeze(1).expand_as(fa)
        torch.testing.assert_close(fa[keep], fb[keep], rtol=0, atol=0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(5):
        loss, pred = model(x, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert pred.shape == x.shape and losses[-1] < losses[0], losses
    path = tmp_path / "r3d.safetensors"
    model.export_backbone(path)
    dense = load_backbone(ResNet3d(1, (8, 16, 32, 64), norm=norm), path).eval()
    model.eval()
    ref = feature_extractor(dense, model.encoder.feature_modules)(x)
    for i, f in enumerate(model.encoder(x)):
        torch.testing.assert_close(f, ref[f"f{i}"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense(x), ref["f3"])
