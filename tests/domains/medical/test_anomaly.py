"""MemMC-MAE anomaly detection: model, complementary masks, scoring, calibration, metrics, training."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from maskworks.core.mae import MaskedAutoencoder
from maskworks.core.masking import RandomMasking
from maskworks.domains.medical.anomaly.memmc_mae import MemMCMAE, normal_split
from maskworks.domains.medical.anomaly.evaluate import aupro, auroc, insert_lesions
from maskworks.domains.medical.anomaly.scoring import (
    AnomalyScorer, Calibration, complementary_masks, gaussian_blur, ssim_map,
)

KW = dict(input_size=(28, 28), patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=4,
          decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4)


# ----------------------------------------------------------------------------- masks

@pytest.mark.parametrize("k,ratio", [(4, 0.75), (4, None), (7, 0.5), (3, 0.1)])
def test_complementary_masks_reconstruct_every_patch_exactly_once(k, ratio):
    passes = complementary_masks(3, (7, 7), k, ratio, seed=5)
    assert len(passes) == k
    cover = sum(t.int() for _, t in passes)
    assert torch.equal(cover, torch.ones(3, 49, dtype=torch.int32))  # a partition, for every image
    sizes = sorted(int(t[0].sum()) for _, t in passes)
    assert sum(sizes) == 49 and max(sizes) - min(sizes) <= 1  # 49 = 13 + 12 + 12 + 12 for k = 4
    for mask, target in passes:
        assert bool(mask.flat[target].all())  # every target patch is hidden in its own pass
        expect = max(int(target[0].sum()), round(ratio * 49) if ratio else 0)
        assert mask.num_masked == expect  # 37 hidden per pass at ratio 0.75
        assert torch.equal(mask.flat[0], mask.flat[2])  # same masks for every image of the batch


def test_complementary_masks_reject_a_pass_without_context():
    with pytest.raises(ValueError, match="k >= 2"):
        complementary_masks(1, (7, 7), 1)
    with pytest.raises(ValueError, match="k must be"):
        complementary_masks(1, (2, 2), 5)


# ----------------------------------------------------------------------------- model

def test_memmc_with_both_ideas_off_is_the_plain_mae():
    torch.manual_seed(0)
    a = MemMCMAE(**KW, memory_size=0, multi_level=False)
    torch.manual_seed(0)
    b = MaskedAutoencoder(**KW)
    x = torch.rand(2, 1, 28, 28)
    m = RandomMasking(0.75)(2, (7, 7), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a(x, m).pred, b(x, m).pred)


def test_memory_and_gates_shape_the_model():
    torch.manual_seed(0)
    m = MemMCMAE(**KW, memory_size=8, multi_level=True)
    assert len(m.memory) == 2 and tuple(m.memory[0].shape) == (8, 32)
    w = m.gate_weights()
    assert w.shape == (2, 2) and torch.allclose(w.sum(-1), torch.ones(2))
    assert float(w[0, -1].detach()) == pytest.approx(math.exp(2) / (math.exp(2) + 1))  # init favours the last level
    x = torch.rand(2, 1, 28, 28)
    mask = RandomMasking(0.75)(2, (7, 7), generator=torch.Generator().manual_seed(0))
    out = m(x, mask)
    assert out.pred.shape == (2, 37, 16)
    out.loss.backward()
    assert m.memory[0].grad is not None and m.level_gates.grad is not None  # both learn
    with torch.no_grad():  # the memory is used: changing it changes the prediction
        before = m(x, mask).pred.clone()
        m.memory[0].add_(1.0)
        assert not torch.allclose(before, m(x, mask).pred)


def test_normal_split_holds_out_normals_only():
    is_normal = torch.tensor([True, False, True, True, False, True, True, True, True, True, True, True])
    tr, cal = normal_split(is_normal, 0.2, seed=0)
    assert len(cal) == 2 and len(tr) == 8
    assert set(tr.tolist()).isdisjoint(cal.tolist()) and not set(tr.tolist() + cal.tolist()) & {1, 4}


# ----------------------------------------------------------------------------- scoring

class _Oracle(torch.nn.Module):
    """Predicts every masked patch perfectly: the error map must be zero everywhere."""

    def __init__(self):
        super().__init__()
        self.inner = MaskedAutoencoder(**KW)
        self.grid, self.masking = self.inner.grid, self.inner.masking
        self.patchify, self.unpatchify = self.inner.patchify, self.inner.unpatchify

    def forward(self, x, mask):
        from maskworks.core.masking import gather_tokens
        from types import SimpleNamespace

        return SimpleNamespace(pred=gather_tokens(self.patchify(x), mask.ids_mask))


def test_scorer_with_a_perfect_reconstruction_scores_zero():
    x = torch.rand(3, 1, 28, 28)
    s = AnomalyScorer(_Oracle(), k=4, error="pixel", sigma=1.0)
    res = s.score_batch(x)
    assert torch.allclose(res.recon, x) and float(res.scores.abs().max()) < 1e-12


def test_scorer_reduces_heatmaps_as_stated():
    s = AnomalyScorer(_Oracle(), reduce="topk", topk=0.1)
    heat = torch.zeros(1, 10, 10)
    heat[0, :1, :] = 1.0   # 10 hot pixels = the top 10 %
    heat[0, 5, 5] = 0.5
    assert float(s.reduce_map(heat)) == pytest.approx(1.0)
    s.reduce = "mean"
    assert float(s.reduce_map(heat)) == pytest.approx(10.5 / 100)


def test_scores_do_not_depend_on_batching():
    torch.manual_seed(0)
    m = MemMCMAE(**KW, memory_size=4)
    s = AnomalyScorer(m, k=4, error="ssim", batch_size=2)
    x = torch.rand(5, 1, 28, 28)
    one = torch.cat([s.score_batch(x[i:i + 1]).scores for i in range(5)])
    assert torch.allclose(one, s.score(x, progress=False).scores, atol=1e-6)


def test_blur_and_ssim_reference_values():
    x = torch.full((1, 1, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(x, 1.5), x)
    y = torch.rand(2, 1, 16, 16)
    assert torch.allclose(ssim_map(y, y), torch.ones_like(y), atol=1e-5)
    assert float(ssim_map(y, 1 - y).mean()) < 0  # inverted contrast: negative structure term


def test_calibration_hand_computed():
    cal = Calibration.fit(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.zeros(5, 2, 2), specificity=0.5)
    assert cal.mean == 3.0 and cal.std == pytest.approx(math.sqrt(2.5))
    assert cal.normalise(3.0 + math.sqrt(2.5)) == pytest.approx(1.0)
    assert cal.threshold == pytest.approx(0.0)          # the median normal z-score
    assert cal.threshold_at(1.0) == pytest.approx(2 / math.sqrt(2.5))  # the largest normal
    assert cal.percentile(0.0) == pytest.approx(0.5) and cal.percentile(99.0) == 1.0
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again.threshold_at(0.9) == pytest.approx(cal.threshold_at(0.9))
    with pytest.raises(ValueError):
        Calibration.fit(torch.tensor([1.0]))


# ----------------------------------------------------------------------------- metrics, lesions

def test_aupro_and_pixel_auroc_reference_values():
    masks = np.zeros((2, 20, 20), bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 10:18, 10:18] = True
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0, abs=1e-6)
    assert auroc(masks.ravel().astype(int), masks.ravel().astype(float)) == 1.0
    # only the small region found: PRO is 0.5 at every FPR -> AUPRO 0.5
    half = np.zeros_like(masks, float)
    half[0, 2:6, 2:6] = 1.0
    assert aupro(half, masks) == pytest.approx(0.5, abs=0.02)


def test_insert_lesions_changes_only_the_lesion_surroundings():
    x = torch.full((4, 1, 28, 28), 0.4)
    y, m = insert_lesions(x, seed=1)
    assert m.shape == (4, 28, 28) and all(int(mi.sum()) >= 4 for mi in m)
    changed = (y - x).abs()[:, 0] > 1e-3
    assert bool(changed[m].all())  # the ground truth lies inside the changed area
    far = torch.nn.functional.max_pool2d(m.float()[:, None], 7, 1, 3)[:, 0] == 0
    assert not bool(changed[far].any())
    y2, m2 = insert_lesions(x, seed=1)
    assert torch.equal(y, y2) and torch.equal(m, m2)


def test_memory_lives_in_the_attention_and_old_weights_load():
    """Memory slots are a MemoryAttention (medical), not a core feature; the shipped weights, saved with the
    slots as ``memory.{i}``, load into ``blocks.{i}.attn.memory`` unchanged."""
    from safetensors.torch import load_file

    from maskworks.core.training.task import load_trained
    from maskworks.data import data_path
    from maskworks.domains.medical.anomaly.memmc_mae import MemoryAttention

    path = data_path("weights", "memmc-cxr.safetensors")
    stored = load_file(str(path))
    assert "memory.0" in stored  # written before the move
    _, model = load_trained(path)
    assert all(isinstance(b.attn, MemoryAttention) for b in model.blocks)
    assert torch.equal(model.blocks[0].attn.memory.detach(), stored["memory.0"])
