"""VideoMAE V2: parity with Hugging Face VideoMAE (decoder masking off), and which tokens reach the
loss with dual masking on (hand-built masks)."""
from __future__ import annotations

import pytest
import torch

from maskworks.core.masking import Mask, RunningCellMasking, mask_from_scores
from maskworks.domains.video.peers import hf_videomae, zero_unshared_biases
from maskworks.domains.video.videomae import (DualMask, DualMasking, VideoMAE, decoder_targets, normalize_clip,
                                              normalize_tube_patches, running_cell_mask)


def tiny(**kw) -> VideoMAE:
    args = dict(num_frames=4, image_size=32, embed_dim=48, depth=2, num_heads=2, decoder_embed_dim=24,
                decoder_depth=2, decoder_num_heads=2)
    return VideoMAE(**(args | kw))


def mask_of(hidden: torch.Tensor) -> Mask:
    """A Mask from a hand-drawn boolean grid [B, *grid] (True = hidden)."""
    return mask_from_scores((~hidden).float(), num_keep=int((~hidden[0]).sum()))


@pytest.mark.parametrize("norm_pix", [False, True])
@pytest.mark.parametrize("size", [32, 48])
def test_loss_equals_hugging_face_videomae_with_decoder_masking_off(norm_pix, size):
    torch.manual_seed(0)
    model = tiny(image_size=size, decoder_mask_ratio=0.0, norm_pix_loss=norm_pix).eval()
    with torch.no_grad():  # non-zero biases and tokens, so that a wrong copy shows
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    zero_unshared_biases(model)
    hf = hf_videomae(model).eval()
    clip = torch.rand(3, 3, 4, size, size)
    x = normalize_clip(clip)
    mask = model.make_mask(3, torch.Generator().manual_seed(1))
    assert mask.decoder is None and torch.equal(mask.decoded, mask.encoder.mask)
    ours = model(x, mask, target=clip)
    theirs = hf(pixel_values=x.permute(0, 2, 1, 3, 4), bool_masked_pos=mask.encoder.flat)
    torch.testing.assert_close(ours.loss, theirs.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.pred, theirs.logits, rtol=1e-4, atol=1e-5)


def test_the_peer_refuses_weights_it_cannot_hold():
    model = tiny()
    with torch.no_grad():
        model.blocks[0].attn.qkv.bias.fill_(0.1)
    with pytest.raises(ValueError, match="no key bias"):
        hf_videomae(model)


def test_tube_mask_is_the_same_every_frame_and_hides_90_percent():
    model = VideoMAE(num_frames=16, image_size=112, embed_dim=48, depth=1, num_heads=2, decoder_embed_dim=24,
                     decoder_depth=1, decoder_num_heads=2)
    m = model.make_mask(4, torch.Generator().manual_seed(0))
    assert model.grid == (8, 7, 7)
    enc = m.encoder.mask
    assert (enc == enc[:, :1]).all()  # a tube: one spatial mask for all 8 time steps
    assert m.encoder.num_keep == 8 * 4  # int(49 * 0.1) = 4 tubes visible
    assert m.num_decoded == round(m.encoder.num_masked * 0.5)  # the decoder keeps half of the hidden tokens
    assert not (m.decoded & ~enc).any()  # only hidden tokens are reconstructed


def test_hand_built_dual_mask_sends_exactly_hidden_and_kept_tokens_to_the_loss():
    # grid (T=2, H=2, W=2); encoder hides every place but (0, 0) in both frames (a tube)
    enc_hidden = torch.ones(1, 2, 2, 2, dtype=torch.bool)
    enc_hidden[:, :, 0, 0] = False
    enc = mask_of(enc_hidden)
    # decoder drops (0,0),(0,1) in frame 0 and (1,0),(1,1) in frame 1 (a cell pattern shifting in time)
    dec_dropped = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    dec_dropped[0, 0, 0, :] = True
    dec_dropped[0, 1, 1, :] = True
    dec = mask_of(dec_dropped)
    # hidden and kept: frame 0 -> (1,0),(1,1); frame 1 -> (0,1): 3 tokens = round(6 * 0.5)
    ids = decoder_targets(enc, dec, ratio=0.5)
    assert ids.tolist() == [[2, 3, 5]]
    # 2 of 6: the overlap (3) is trimmed at random, never to a token outside it
    for seed in range(10):
        two = decoder_targets(enc, dec, ratio=4 / 6, generator=torch.Generator().manual_seed(seed))
        assert set(two[0].tolist()) < {2, 3, 5} and two.shape == (1, 2)
    # 5 of 6: the overlap is topped up with hidden, decoder-dropped tokens (1, 6), never the visible 0 or 4
    five = decoder_targets(enc, dec, ratio=1 / 6)
    assert set(five[0].tolist()) >= {2, 3, 5} and not {0, 4} & set(five[0].tolist())


def test_only_decoded_tokens_reach_the_loss():
    torch.manual_seed(0)
    model = tiny(image_size=32).eval()
    clip = torch.rand(2, 3, 4, 32, 32)
    mask = model.make_mask(2, torch.Generator().manual_seed(3))
    assert mask.decoder is not None and mask.num_decoded == 3  # 6 hidden, half decoded
    base = model(normalize_clip(clip), mask, target=clip)
    # change the target only where the loss is not taken: the loss does not move
    changed = model.patchify(clip).clone()
    not_decoded = ~mask.decoded.reshape(2, -1)
    changed[not_decoded] = 5.0
    same = model(normalize_clip(clip), mask, target=model.unpatchify(changed))
    torch.testing.assert_close(same.loss, base.loss)
    # ... and moves when a decoded token's target changes
    changed[0, mask.decode_ids[0, 0]] += 1.0
    assert model(normalize_clip(clip), mask, target=model.unpatchify(changed)).loss > base.loss
    # the loss is the mean squared error at decode_ids, by hand
    t = model.patchify(clip).gather(1, mask.decode_ids[..., None].expand(-1, -1, 3 * 2 * 16 * 16))
    torch.testing.assert_close(base.loss, ((base.pred - t) ** 2).mean())


def test_decoder_sees_visible_plus_kept_mask_tokens_only(monkeypatch):
    model = tiny(image_size=64)  # grid (2, 4, 4): 32 tokens, 2 tubes visible
    seen = []
    blk = model.decoder_blocks[0]
    orig = blk.forward
    monkeypatch.setattr(blk, "forward", lambda x, **k: (seen.append(x.shape[1]), orig(x, **k))[1])
    mask = model.make_mask(2, torch.Generator().manual_seed(0))
    model(normalize_clip(torch.rand(2, 3, 4, 64, 64)), mask)
    assert seen == [mask.encoder.num_keep + mask.num_decoded] == [2 * 1 + round(2 * 15 * 0.5)]
    plain = DualMask.plain(mask.encoder)
    model(normalize_clip(torch.rand(2, 3, 4, 64, 64)), plain)
    assert seen[-1] == 32  # VideoMAE: every token


def test_running_cells_rotate_and_handle_odd_grids():
    g = torch.Generator().manual_seed(0)
    even = running_cell_mask(RunningCellMasking(0.5), 3, (4, 4, 4), g)
    assert (even.mask.sum(dim=(2, 3)) == 8).all()  # exactly 2 of 4 in every cell and frame
    for t in range(3):  # the pattern moves by one place per frame
        assert not torch.equal(even.mask[:, t], even.mask[:, t + 1])
    odd = running_cell_mask(RunningCellMasking(0.5), 3, (8, 7, 7), g)
    assert odd.num_keep == 8 * 49 // 2 and odd.mask.shape == (3, 8, 7, 7)
    cells = odd.mask[:, :, :6, :6].reshape(3, 8, 3, 2, 3, 2).sum(dim=(3, 5))
    assert (cells >= 1).all() and (cells <= 3).all()  # the complete cells keep their pattern (ties aside)


def test_norm_pix_targets_are_per_patch_and_channel():
    x = torch.rand(2, 5, 2 * 4 * 4 * 3)
    y = normalize_tube_patches(x).reshape(2, 5, 32, 3)
    torch.testing.assert_close(y.mean(dim=2), torch.zeros(2, 5, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=2), torch.ones(2, 5, 3), atol=1e-4, rtol=0)


def test_reconstruct_keeps_visible_pixels_and_fills_hidden_tubes():
    torch.manual_seed(0)
    model = tiny(image_size=32).eval()
    clip = torch.rand(1, 3, 4, 32, 32)
    mask = model.make_mask(1, torch.Generator().manual_seed(0))
    rec = model.reconstruct(normalize_clip(clip), mask, target=clip)
    p_rec, p_clip = model.patchify(rec), model.patchify(clip)
    vis = ~mask.encoder.flat[0]
    torch.testing.assert_close(p_rec[0, vis], p_clip[0, vis])
    assert not torch.allclose(p_rec[0, ~vis], p_clip[0, ~vis])


def test_dual_masking_is_seeded_and_slices_per_rank():
    s = DualMasking(0.9, 0.5)
    a = s(4, (8, 7, 7), generator=torch.Generator().manual_seed(5))
    b = s(4, (8, 7, 7), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.decode_ids, b.decode_ids) and torch.equal(a.encoder.mask, b.encoder.mask)
    half = a[2:]
    assert torch.equal(half.decode_ids, a.decode_ids[2:]) and half.encoder.batch_size == 2
