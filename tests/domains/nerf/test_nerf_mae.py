"""NeRF-MAE: the loss's regions by hand, patch masking counts, no leak of hidden voxels, the baseline."""
import torch

from maskworks.core.masking import GridBlockMasking, RandomMasking, mask_from_scores
from maskworks.domains.nerf.nerf_mae import (SwinNeRFMAE, ViTNeRFMAE, build_model, nearest_visible_patch, nerf_mae_loss,
                                             voxel_mask)


def test_loss_counts_alpha_on_hidden_valid_voxels_and_rgb_only_where_occupied():
    target = torch.zeros(1, 4, 2, 1, 1)
    pred = torch.zeros(1, 4, 2, 1, 1)
    target[0, 3, 0] = 0.5          # voxel 0 occupied (alpha 0.5), voxel 1 empty
    target[0, :3, 0] = 1.0
    pred[0, :3] = 0.5              # RGB error 0.25 on both voxels
    pred[0, 3] = torch.tensor([0.3, 0.2]).view(2, 1, 1)  # alpha errors 0.04 and 0.04
    hidden = torch.ones(1, 1, 2, 1, 1, dtype=torch.bool)
    total, rgb, alpha = nerf_mae_loss(pred, target, hidden)
    assert torch.isclose(alpha, torch.tensor(0.04)) and torch.isclose(rgb, torch.tensor(0.25))  # RGB of voxel 0 only
    assert torch.isclose(total, torch.tensor(0.29))
    valid = torch.tensor([False, True]).view(1, 1, 2, 1, 1)  # voxel 0 is padding: only voxel 1 counts
    total, rgb, alpha = nerf_mae_loss(pred, target, hidden, valid)
    assert rgb == 0 and torch.isclose(alpha, torch.tensor(0.04))
    visible = torch.zeros_like(hidden)
    assert nerf_mae_loss(pred, target, visible)[0] == 0  # nothing hidden, nothing to learn


def test_patch_masking_counts_and_voxel_masks():
    m = RandomMasking(0.75)(3, (8, 8, 8), generator=torch.Generator().manual_seed(0))
    assert m.num_masked == 384 and m.num_keep == 128 and m.flat.sum(1).tolist() == [384] * 3
    v = voxel_mask(m)
    assert v.shape == (3, 1, 32, 32, 32) and int(v[0].sum()) == 384 * 64
    assert bool(v[0, 0, 4:8, 0:4, 8:12].all()) == bool(m.mask[0, 1, 0, 2])  # a patch's voxels share its flag
    b = GridBlockMasking(0.75, block=2)(2, (8, 8, 8), generator=torch.Generator().manual_seed(1))
    assert b.num_masked == 384  # 48 of 64 blocks of 2^3 patches
    blocks = b.mask[0].reshape(4, 2, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(64, 8)
    assert ((blocks.sum(1) == 0) | (blocks.sum(1) == 8)).all()  # whole blocks


def _model(kind):
    torch.manual_seed(0)
    return SwinNeRFMAE(input_size=32) if kind == "swin" else ViTNeRFMAE(input_size=32, embed_dim=48, depth=1, num_heads=2,
                                                                        decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=2)


def test_predictions_do_not_see_hidden_voxels_and_reconstruct_keeps_visible_ones():
    for kind in ("swin", "vit"):
        model = _model(kind).eval()
        x = torch.rand(1, 4, 32, 32, 32)
        mask = RandomMasking(0.75)(1, (8, 8, 8), generator=torch.Generator().manual_seed(3))
        hidden = voxel_mask(mask)
        x2 = torch.where(hidden, torch.rand_like(x), x)  # change only what is hidden
        with torch.no_grad():
            p1, p2 = model.predict(x, mask), model.predict(x2, mask)
        assert p1.shape == (1, 4, 32, 32, 32) and (p1 >= 0).all() and (p1 <= 1).all()
        assert torch.allclose(p1, p2, atol=1e-5), kind  # no leak through the embedding or the decoder
        rec = model.reconstruct(x, mask)
        assert torch.equal(rec[~hidden.expand_as(x)], x[~hidden.expand_as(x)])
        out = model(x, torch.ones(1, 1, 32, 32, 32, dtype=torch.bool), mask)
        out.loss.backward()
        assert torch.isfinite(out.loss) and out.loss > 0


def test_swin_levels_and_build_model():
    m = build_model({"arch": "swin", "embed_dim": 12, "depths": [2, 2], "num_heads": [2, 4]})
    levels = m.encode(torch.rand(1, 4, 32, 32, 32))
    assert [tuple(l.shape[1:]) for l in levels] == [(12, 8, 8, 8), (24, 4, 4, 4), (48, 2, 2, 2)]
    assert isinstance(build_model({"arch": "vit", "embed_dim": 48, "depth": 1, "num_heads": 2}), ViTNeRFMAE)


def test_nearest_visible_patch_copies_the_closest_kept_patch():
    # a 16 x 4 x 4 grid of 4 patches along x whose voxels hold the patch's index
    x = torch.arange(4.0).repeat_interleave(4).view(1, 1, 16, 1, 1).expand(1, 4, 16, 4, 4).clone()
    scores = torch.tensor([[1.0, 0.0, 0.0, 0.9]]).view(1, 4, 1, 1)  # keep patches 0 and 3
    mask = mask_from_scores(scores, num_keep=2)
    out = nearest_visible_patch(x, mask)
    firsts = out[0, 0, ::4, 0, 0].tolist()
    assert firsts == [0.0, 0.0, 3.0, 3.0]  # patch 1 <- 0 (distance 1), patch 2 <- 3 (distance 1)
