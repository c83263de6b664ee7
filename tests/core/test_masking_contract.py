
import pytest
import torch

from maskworks.core.masking import Mask, mask_from_scores, no_mask, num_to_keep


def test_top_k_keeps_highest_scores_exactly():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8, 0.4]])
    m = mask_from_scores(scores, ratio=0.5)
    assert m.ids_keep.tolist() == [[1, 6, 3, 2]]  # descending scores
    assert sorted(m.ids_mask[0].tolist()) == [0, 4, 5, 7]
    assert m.mask[0].tolist() == [True, False, False, False, True, True, False, True]


def test_ids_restore_inverts_the_shuffle():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(5, 7, 9, generator=g)
    m = mask_from_scores(scores, 0.6)
    x = torch.randn(5, 63, 4)
    shuffled = torch.gather(x, 1, torch.cat([m.ids_keep, m.ids_mask], 1)[..., None].expand(-1, -1, 4))
    restored = torch.gather(shuffled, 1, m.ids_restore[..., None].expand(-1, -1, 4))
    assert torch.equal(restored, x)
    # the boolean mask agrees with the index lists
    flat = m.flat
    assert flat.gather(1, m.ids_mask).all() and not flat.gather(1, m.ids_keep).any()


@pytest.mark.parametrize("n,ratio,keep", [(196, 0.75, 49), (100, 0.9, 10), (64, 0.6, 25), (10, 0.05, 9)])
def test_fixed_count_per_sample(n, ratio, keep):
    assert num_to_keep(n, ratio) == keep
    m = mask_from_scores(torch.rand(3, n), ratio)
    assert m.num_keep == keep and (m.flat.sum(1) == n - keep).all()


def test_ratio_zero_is_the_unmasked_path():
    m = mask_from_scores(torch.rand(2, 4, 4), 0.0)
    ref = no_mask(2, (4, 4))
    assert torch.equal(m.ids_keep, torch.arange(16).expand(2, 16)) and m.num_masked == 0
    assert torch.equal(m.ids_restore, ref.ids_restore) and not m.mask.any()


def test_bad_ratio_and_shapes_raise():
    with pytest.raises(ValueError, match="ratio"):
        mask_from_scores(torch.rand(2, 4), 1.0)
    with pytest.raises(ValueError, match=r"\[B, \*grid\]"):
        mask_from_scores(torch.rand(4), 0.5)


def test_slicing_a_mask_selects_samples():
    m = mask_from_scores(torch.rand(4, 10), 0.5)
    part = m[1:3]
    assert isinstance(part, Mask) and torch.equal(part.ids_keep, m.ids_keep[1:3]) and part.grid == (10,)
