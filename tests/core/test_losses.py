import math

import pytest
import torch

from maskworks.core.losses import (
    chamfer_l1, chamfer_l2, info_nce, masked_l1, masked_mse, normalize_patches, scaled_cosine_error,
)


def test_masked_mse_hand_computed():
    pred = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]])
    target = torch.zeros(1, 3, 2)
    mask = torch.tensor([[1, 0, 1]])
    assert masked_mse(pred, target, mask).item() == pytest.approx((1 + 4) / 2)
    assert masked_l1(pred, target, mask).item() == pytest.approx((1 + 2) / 2)
    # gathered form gives the same number
    assert masked_mse(pred[:, [0, 2]], target[:, [0, 2]]).item() == pytest.approx(2.5)


def test_normalize_patches():
    t = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    n = normalize_patches(t)
    assert n.mean().abs() < 1e-6 and n.std().item() == pytest.approx(1.0, abs=1e-5)


def test_chamfer_hand_computed():
    a = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    b = torch.tensor([[[0.0, 0, 0], [3, 0, 0]]])
    # a->b nearest sq dists: 0, 1 ; b->a: 0, 4
    assert chamfer_l2(a, b).item() == pytest.approx(0.5 + 2.0)
    assert chamfer_l1(a, b).item() == pytest.approx((0.5 + 1.0) / 2)
    assert chamfer_l2(a, a).item() == 0.0


def test_scaled_cosine_error():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert scaled_cosine_error(x, y, gamma=2).item() == pytest.approx((0 + 1) / 2)
    assert scaled_cosine_error(x, y, gamma=1, mask=torch.tensor([0, 1])).item() == pytest.approx(1.0)


def test_info_nce_perfect_pairs_and_uniform():
    a = torch.eye(4)
    assert info_nce(a, a, temperature=0.01).item() < 1e-6
    same = torch.ones(4, 3)
    assert info_nce(same, same).item() == pytest.approx(math.log(4), rel=1e-5)
