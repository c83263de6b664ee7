import numpy as np
import pytest
import torch

from maskworks.core.masking import (
    RandomMasking, keep_visible, patchify, replace_masked, restore_tokens, unpatchify,
)
from maskworks.core.masking.viz import draw_mask


def test_patchify_hand_computed_2d():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)  # C=2, 4x4, patch 2
    p = patchify(x, (2, 2))
    assert p.shape == (1, 4, 8)
    # first patch: rows 0-1, cols 0-1, ordered (p, q, c) as in MAE
    c0 = x[0, 0, :2, :2].flatten()
    c1 = x[0, 1, :2, :2].flatten()
    assert p[0, 0].tolist() == torch.stack([c0, c1], -1).flatten().tolist()
    # second patch is to the right (row-major grid)
    assert p[0, 1, 0].item() == x[0, 0, 0, 2].item()


def test_patchify_matches_mae_einsum():
    x = torch.randn(2, 3, 8, 12)
    p = 4
    h, w = 2, 3
    ref = torch.einsum("nchpwq->nhwpqc", x.reshape(2, 3, h, p, w, p)).reshape(2, h * w, p * p * 3)
    assert torch.equal(patchify(x, (4, 4)), ref)  # non-square input


@pytest.mark.parametrize("shape,patch", [((2, 1, 8, 12), (4, 4)), ((2, 3, 4, 8, 8), (2, 4, 4)),
                                         ((1, 1, 128, 64), (16, 16)), ((2, 5, 6), (3,))])
def test_unpatchify_inverts_patchify(shape, patch):
    x = torch.randn(*shape)
    p = patchify(x, patch)
    grid = [s // q for s, q in zip(shape[2:], patch)]
    assert torch.equal(unpatchify(p, patch, grid, shape[1]), x)


def test_patchify_rejects_indivisible():
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.randn(1, 1, 10, 10), (4, 4))


def test_drop_then_restore_round_trip():
    x = torch.randn(3, 16, 5)
    m = RandomMasking(0.75)(3, (16,), generator=torch.Generator().manual_seed(0))
    vis = keep_visible(x, m)
    assert vis.shape == (3, 4, 5)
    token = torch.full((5,), 7.0)
    full = restore_tokens(vis, m, token)
    assert torch.equal(full[~m.flat], x[~m.flat])
    assert (full[m.flat] == 7.0).all()
    rep = replace_masked(x, m, token)
    assert torch.equal(rep, full)


def test_draw_mask_paints_masked_patches_only():
    img = np.full((8, 8), 0.5, np.float32)
    mask = torch.tensor([[True, False], [False, False]])
    out = draw_mask(img, mask, color=(0, 0, 0), alpha=1.0, grid_lines=False)
    assert out.shape == (8, 8, 3)
    assert (out[:4, :4] == 0).all() and (out[4:, 4:] == 127).all()
