import pytest
import torch

from maskworks.core.layers import sincos_pos_embed
from maskworks.core.mae import MaskedAutoencoder
from maskworks.core.masking import GridBlockMasking, RandomMasking, mask_from_scores, no_mask

transformers = pytest.importorskip("transformers")


def small(**kw):
    args = dict(input_size=(32, 48), patch_size=8, in_chans=3, embed_dim=48, depth=2, num_heads=3,
                decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4)
    args.update(kw)
    return MaskedAutoencoder(**args)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_equals_hugging_face_vitmae(norm_pix):
    from maskworks.core.peers import hf_vitmae

    torch.manual_seed(0)
    model = MaskedAutoencoder((64, 64), 16, 3, 64, 2, 4, 32, 2, 4, norm_pix_loss=norm_pix, masking=RandomMasking(0.75))
    hf = hf_vitmae(model, 64, 16).eval()
    x = torch.randn(3, 3, 64, 64)
    noise = torch.rand(3, 16)
    theirs = hf(pixel_values=x, noise=noise)
    ours = model(x, mask_from_scores(-noise, 0.75))  # HF keeps the lowest noise, we the highest score
    assert torch.equal(theirs.mask.bool(), ours.mask.flat)
    assert torch.allclose(theirs.loss, ours.loss, rtol=1e-5, atol=1e-6)
    # and the predictions for masked patches agree
    theirs_masked = torch.gather(theirs.logits, 1, ours.mask.ids_mask[..., None].expand(-1, -1, theirs.logits.shape[-1]))
    assert torch.allclose(theirs_masked, ours.pred, atol=1e-4)


def test_sincos_tables_equal_hugging_face():
    from maskworks.core.peers import hf_sincos_table

    for grid in [(4, 4), (3, 5)]:
        assert torch.allclose(hf_sincos_table(64, grid)[0], sincos_pos_embed(64, grid, cls_token=True), atol=1e-6)


def test_sincos_1d_and_3d_values():
    e = sincos_pos_embed(8, (5,))
    # position p, frequency k: sin(p / 10000^(k/4)), cos(...)
    p, k = 3, 1
    assert e[p, k].item() == pytest.approx(torch.sin(torch.tensor(p / 10000 ** (k / 4))).item(), abs=1e-6)
    assert e[p, 4 + k].item() == pytest.approx(torch.cos(torch.tensor(p / 10000 ** (k / 4))).item(), abs=1e-6)
    e3 = sincos_pos_embed(12, (2, 3, 4))
    assert e3.shape == (24, 12)
    # the first third encodes the last axis (w): tokens differing only in depth share it
    assert torch.equal(e3[0, :4], e3[12, :4]) and not torch.equal(e3[0, 8:], e3[12, 8:])
    with pytest.raises(ValueError):
        sincos_pos_embed(10, (2, 3, 4))


def test_masked_pixels_cannot_leak_into_encoder():
    model = small().eval()
    x = torch.randn(2, 3, 32, 48)
    m = RandomMasking(0.5)(2, model.grid, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    patches = model.patchify(y)
    patches[m.flat] = 100.0  # change only masked patches
    y = model.unpatchify(patches)
    assert torch.equal(model.forward_encoder(x, m), model.forward_encoder(y, m))


def test_no_mask_equals_ratio_zero_and_encode():
    model = small().eval()
    x = torch.randn(2, 3, 32, 48)
    a = model.encode(x)
    b = model.forward_encoder(x, RandomMasking(0.0)(2, model.grid))
    c = model.forward_encoder(x, no_mask(2, model.grid))
    assert torch.equal(a, b) and torch.equal(a, c) and a.shape == (2, 1 + 24, 48)


def test_decoder_last_block_selection_equals_full_decoding():
    model = small().eval()
    x = torch.randn(2, 3, 32, 48)
    m = RandomMasking(0.75)(2, model.grid, generator=torch.Generator().manual_seed(1))
    pred = model.forward_decoder(model.forward_encoder(x, m), m)
    # reference: decode every token, then select the masked ones
    lat = model.decoder_embed(model.forward_encoder(x, m))
    from maskworks.core.masking import gather_tokens, restore_tokens
    full = torch.cat([lat[:, :1], restore_tokens(lat[:, 1:], m, model.mask_token)], 1) + model.decoder_pos_embed
    for blk in model.decoder_blocks:
        full = blk(full)
    ref = model.decoder_pred(model.decoder_norm(full))[:, 1:]
    assert torch.allclose(pred, gather_tokens(ref, m.ids_mask), atol=1e-5)


def test_reconstruct_copies_visible_patches():
    model = small(norm_pix_loss=True).eval()
    x = torch.rand(2, 3, 32, 48)
    m = GridBlockMasking(0.5, (2, 2))(2, model.grid, generator=torch.Generator().manual_seed(0))
    r = model.reconstruct(x, m)
    vis = ~m.flat
    assert torch.equal(model.patchify(r)[vis], model.patchify(x)[vis])


def test_volume_and_video_mae_train():
    torch.manual_seed(0)
    vol = MaskedAutoencoder((8, 16, 16), (4, 8, 8), 1, 48, 1, 3, 48, 1, 3, masking=RandomMasking(0.75))
    z, y, w = torch.meshgrid(torch.arange(8.0), torch.arange(16.0), torch.arange(16.0), indexing="ij")
    x = torch.stack([torch.sin(w / 3 + z / 2), torch.cos(y / 4 - w / 5)])[:, None]  # smooth, learnable
    opt = torch.optim.AdamW(vol.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(80):
        m = vol.make_mask(2, g)
        loss = vol(x, m).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_wrong_input_shape_is_explained():
    with pytest.raises(ValueError, match=r"expected input \[B, 3, 32, 48\]"):
        small()(torch.randn(1, 1, 32, 48))


def test_forward_intermediates_hands_out_every_block_output():
    """The levels equal running the blocks by hand; the latent is forward_encoder's; mask None is the
    unmasked input; ``indices`` picks levels (negative from the end)."""
    torch.manual_seed(0)
    m = MaskedAutoencoder(input_size=(32, 32), patch_size=8, in_chans=1, embed_dim=32, depth=3, num_heads=4,
                          decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2).eval()
    x = torch.rand(2, 1, 32, 32)
    mask = RandomMasking(0.5)(2, m.grid, generator=torch.Generator().manual_seed(1))
    latent, levels = m.forward_intermediates(x, mask)
    h = m.embed_visible(m.patchify(x), mask)
    for blk, lv in zip(m.blocks, levels):
        h = blk(h)
        assert torch.equal(lv, h)
    assert len(levels) == 3 and levels[0].shape == (2, 1 + 8, 32)  # class token + the 8 visible of 16
    assert torch.equal(latent, m.forward_encoder(x, mask)) and torch.equal(latent, m.norm(h))
    full_latent, full = m.forward_intermediates(x, indices=[0, -1])
    assert torch.equal(full_latent, m.encode(x)) and len(full) == 2 and full[0].shape == (2, 17, 32)
    assert torch.equal(full[1], m.forward_intermediates(x)[1][2])
