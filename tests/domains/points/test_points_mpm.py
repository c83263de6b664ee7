"""Masked point modelling pieces with values: tokenizer invariance, Point-MAE loss, CMAE cosine, dVAE."""
from __future__ import annotations

import torch

from maskworks.core.masking import Mask, RandomMasking, mask_from_scores
from maskworks.domains.points.point_bert import DVAE, PointBERT, gumbel_softmax
from maskworks.domains.points.point_cmae import both_masked_cosine
from maskworks.domains.points.point_mae import PointMAE, masked_group_chamfer
from maskworks.domains.points.tokenizer import MiniPointNet


def _mask_from_bool(hidden: torch.Tensor) -> Mask:
    """A Mask hiding exactly the True entries of a [B, G] bool (same count per row)."""
    return mask_from_scores((~hidden).float(), num_keep=int((~hidden[0]).sum()))


def test_minipointnet_is_permutation_invariant_within_a_group() -> None:
    torch.manual_seed(0)
    net = MiniPointNet(dim=16, hidden=8).eval()
    groups = torch.randn(2, 5, 32, 3)
    perm = torch.randperm(32)
    a, b = net(groups), net(groups[:, :, perm])
    assert a.shape == (2, 5, 16)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # but it does see the points: moving one point changes that group's token only
    moved = groups.clone()
    moved[0, 1, 0] += 10.0  # far out: it becomes the max of some channels
    c = net(moved)
    assert not torch.allclose(c[0, 1], a[0, 1])
    torch.testing.assert_close(c[1], a[1])
    torch.testing.assert_close(c[0, 0], a[0, 0])


def test_point_mae_loss_is_zero_for_exact_predictions_of_the_masked_groups() -> None:
    torch.manual_seed(0)
    nb = torch.randn(2, 8, 4, 3)
    hidden = torch.zeros(2, 8, dtype=torch.bool)
    hidden[0, [1, 3, 5]] = True
    hidden[1, [0, 2, 7]] = True
    mask = _mask_from_bool(hidden)
    target = torch.stack([nb[b, mask.ids_mask[b]] for b in range(2)])
    perm = torch.tensor([2, 0, 3, 1])  # point order inside a group does not matter to Chamfer
    loss, got = masked_group_chamfer(target[:, :, perm], nb, mask)
    assert float(loss) < 1e-10
    torch.testing.assert_close(got, target)
    assert set(mask.ids_mask[0].tolist()) == {1, 3, 5}
    # predicting a visible group instead of a masked one is penalised
    wrong = target.clone()
    wrong[0, 0] = nb[0, 0]
    assert float(masked_group_chamfer(wrong, nb, mask)[0]) > 1e-3


def test_point_mae_masks_sixty_percent_and_predicts_masked_groups_only() -> None:
    torch.manual_seed(0)
    model = PointMAE(num_groups=16, group_size=8, embed_dim=32, depth=1, num_heads=2, decoder_depth=1,
                     decoder_num_heads=2, tokenizer_hidden=8)
    nb, ct = model.encoder.group(torch.randn(3, 128, 3))
    mask = RandomMasking(0.6)(3, model.grid, generator=torch.Generator().manual_seed(0))
    out = model(nb, ct, mask)
    assert mask.num_masked == 10 and out.pred.shape == (3, 10, 8, 3)
    out.loss.backward()
    assert model.head.weight.grad is not None and torch.isfinite(out.loss)


def test_cmae_cosine_only_counts_tokens_masked_in_both_views() -> None:
    g, d = 6, 4
    m1 = torch.tensor([[1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    m2 = torch.tensor([[0, 1, 1, 1, 0, 0]], dtype=torch.bool)  # both: tokens 1 and 2
    mask1, mask2 = _mask_from_bool(m1), _mask_from_bool(m2)
    grid1, grid2 = torch.randn(1, g, d), torch.randn(1, g, d)
    grid2[0, 1] = 3 * grid1[0, 1]  # cos = 1 -> error 0
    grid2[0, 2] = -grid1[0, 2]  # cos = -1 -> error 2
    f1 = grid1[:, mask1.ids_mask[0]]
    f2 = grid2[:, mask2.ids_mask[0]]
    loss, both = both_masked_cosine(f1, f2, mask1, mask2)
    assert both[0].tolist() == [False, True, True, False, False, False]
    assert float(loss) == torch.tensor(1.0).item()  # mean of 0 and 2
    # features of tokens masked in only one view do not matter
    grid1b, grid2b = grid1.clone(), grid2.clone()
    grid1b[0, 0] = 100.0
    grid2b[0, 3] = -50.0
    loss_b, _ = both_masked_cosine(grid1b[:, mask1.ids_mask[0]], grid2b[:, mask2.ids_mask[0]], mask1, mask2)
    torch.testing.assert_close(loss_b, loss)
    # disjoint masks: no token counts, loss 0
    m3 = _mask_from_bool(torch.tensor([[0, 0, 0, 1, 1, 1]], dtype=torch.bool))
    assert float(both_masked_cosine(f1, grid2[:, m3.ids_mask[0]], mask1, m3)[0]) == 0.0


def test_dvae_tokens_are_integers_in_range_and_gumbel_path_is_differentiable() -> None:
    torch.manual_seed(0)
    dvae = DVAE(group_size=8, num_tokens=10, code_dim=6, hidden=8)
    nb = torch.randn(2, 5, 8, 3)
    ids = dvae.tokens(nb)
    assert ids.dtype == torch.long and ids.shape == (2, 5)
    assert int(ids.min()) >= 0 and int(ids.max()) < 10
    u = torch.rand(2, 5, 10, generator=torch.Generator().manual_seed(1))
    loss = dvae.loss(nb, u, tau=0.5)
    loss.backward()
    assert dvae.encoder.second[-1].weight.grad.abs().sum() > 0  # gradient reaches the logits' encoder
    assert dvae.codebook.grad.abs().sum() > 0
    soft = gumbel_softmax(torch.zeros(3, 4), torch.full((3, 4), 0.5))
    torch.testing.assert_close(soft, torch.full((3, 4), 0.25))  # equal logits, equal noise -> uniform
    hard = gumbel_softmax(torch.tensor([[0.0, 5.0, 0.0]]), torch.full((1, 3), 0.5), hard=True)
    assert hard.tolist() == [[0.0, 1.0, 0.0]]


def test_point_bert_block_mask_in_range_and_cross_entropy_on_masked_ids() -> None:
    torch.manual_seed(0)
    model = PointBERT(num_groups=16, group_size=8, embed_dim=32, depth=1, num_heads=2, tokenizer_hidden=8,
                      num_tokens=12)
    nb, ct = model.encoder.group(torch.randn(2, 128, 3))
    mask = model.masking(2, model.grid, generator=torch.Generator().manual_seed(3), centers=ct)
    assert 0.25 * 16 - 1 <= mask.num_masked <= 0.45 * 16 + 1
    out = model(nb, ct, mask, torch.rand(2, 16, 12))
    assert 0 < float(out["cross_entropy"]) < 10 and torch.isfinite(out["loss"])
