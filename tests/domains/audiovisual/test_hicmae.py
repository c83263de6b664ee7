"""HiCMAE with values: which tokens reach each loss, the hierarchical InfoNCE against a hand computation,
the order of the decoder's skip connections, and a dropped modality taking the single-modality path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskworks.core.masking import Mask, mask_from_scores
from maskworks.domains.audiovisual.hicmae import (CrossSelfBlock, HiCMAE, HiCMAEClassifier, encoder_levels,
                                                  frame_difference, normalize_video_patches)

TINY = dict(num_frames=4, image_size=32, audio_frames=64, mel_bins=32, video_dim=24, video_depth=3, video_heads=2,
            audio_dim=24, audio_depth=3, audio_heads=2, fusion_depth=2, fusion_heads=2, decoder_dim=12,
            decoder_heads=2, levels=(0, 1, 2))


def tiny(**kw) -> HiCMAE:
    torch.manual_seed(0)
    return HiCMAE(**(TINY | kw)).eval()


def mask_of(hidden: torch.Tensor) -> Mask:
    """A Mask from a hand-drawn boolean grid [B, *grid] (True = hidden)."""
    return mask_from_scores((~hidden).float(), num_keep=int((~hidden[0]).sum()))


def inputs(b: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 4, 32, 32, generator=g), torch.randn(b, 1, 64, 32, generator=g)


def test_masks_hide_90_percent_of_tubes_in_every_frame_and_80_percent_of_audio_patches():
    m = HiCMAE(video_dim=24, video_depth=2, video_heads=2, audio_dim=24, audio_depth=2, audio_heads=2, fusion_depth=1,
               fusion_heads=2, decoder_dim=12, decoder_heads=2, levels=(0, 1))
    vm, am = m.make_masks(3, torch.Generator().manual_seed(0))
    assert m.video.grid == (8, 10, 10) and m.audio.grid == (16, 8)
    assert vm.num_keep == 80 and am.num_keep == 25  # 10 % of 800 tubes, 20 % of 128 patches (int(128 * 0.2))
    assert bool((vm.mask == vm.mask[:, :1]).all())  # the same places hidden in every time step: tubes
    assert not torch.equal(am.mask[0], am.mask[1])  # random per sample


def test_only_hidden_tokens_reach_the_reconstruction_losses_and_the_encoder_sees_only_visible_ones():
    m = tiny()
    video, audio = inputs()
    vh = torch.zeros(2, 2, 2, 2, dtype=torch.bool)
    vh[:, :, 0, 1] = vh[:, :, 1, 0] = True  # two tubes hidden (at both time steps)
    ah = torch.zeros(2, 4, 2, dtype=torch.bool)
    ah[:, 1, 1] = ah[:, 3, 0] = ah[:, 2, 0] = True
    vm, am = mask_of(vh), mask_of(ah)
    with torch.no_grad():
        base = m(video, audio, vm, am, video_target=video)
        enc = m.forward_encoder(video, audio, vm, am)
        # the loss is the MSE between predictions and the hidden tokens' normalised targets, by hand
        t = m.video.patchify(video)[torch.arange(2)[:, None], vm.ids_mask]
        t = t.reshape(2, -1, 512, 3)
        t = (t - t.mean(2, keepdim=True)) / (t.var(2, keepdim=True) + 1e-6).sqrt()
        assert math.isclose(float(base.loss_video), float(((base.video_pred - t.reshape(2, -1, 1536)) ** 2).mean()),
                            rel_tol=1e-5)
        # changing the target of a visible tube changes nothing; of a hidden tube, the video loss only
        vis_t, hid_t = video.clone(), video.clone()
        vis_t[:, :, :, :16, :16] += 0.5  # tube (h 0, w 0) is visible
        hid_t[:, :, :, :16, 16:] += torch.rand(2, 3, 4, 16, 16)  # tube (h 0, w 1) is hidden
        assert torch.equal(m(video, audio, vm, am, video_target=vis_t).loss, base.loss)
        changed = m(video, audio, vm, am, video_target=hid_t)
        assert float(changed.loss_video) != float(base.loss_video) and torch.equal(changed.loss_audio, base.loss_audio)
        # the encoders never read hidden places: garbage there leaves every level unchanged
        v2, a2 = video.clone(), audio.clone()
        v2[:, :, :, 16:, :16] = 9.0  # tube (1, 0): hidden
        a2[:, :, 48:64, :16] = -7.0  # audio patch (3, 0): hidden
        enc2 = m.forward_encoder(v2, a2, vm, am)
        for x, y in zip(enc.video_levels + enc.audio_levels + [enc.video, enc.audio],
                        enc2.video_levels + enc2.audio_levels + [enc2.video, enc2.audio]):
            assert torch.equal(x, y)
        # audio targets are the hidden patches (per-patch normalised), in ids_mask order
        at = m.audio_targets(audio, am)
        p = audio[0, 0, 16:32, 16:32].reshape(-1)  # patch (1, 1)
        k = am.ids_mask[0].tolist().index(1 * 2 + 1)
        assert torch.allclose(at[0, k], (p - p.mean()) / (p.var() + 1e-6).sqrt(), atol=1e-5)


def test_hierarchical_infonce_equals_a_hand_computation_and_the_total_weights_it():
    m = tiny()
    video, audio = inputs(b=3)
    vm, am = m.make_masks(3, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = m(video, audio, vm, am, video_target=video)
        enc = m.forward_encoder(video, audio, vm, am)
    want = 0.0
    for v, a in zip(enc.video_levels, enc.audio_levels):  # levels 0, 1, 2
        v = v.mean(1).double().numpy()
        a = a.mean(1).double().numpy()
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        logits = v @ a.T / 0.07
        ce = lambda z: float(np.mean([-(z[i, i] - np.log(np.exp(z[i]).sum())) for i in range(3)]))  # noqa: E731
        want += 0.5 * (ce(logits) + ce(logits.T))
    assert math.isclose(float(out.loss_contrastive), want, rel_tol=1e-5)
    assert math.isclose(float(out.loss), float(out.loss_video + out.loss_audio + 0.0025 * out.loss_contrastive), rel_tol=1e-6)
    # the levels are the encoder's blocks 0, 1, 2 normed with its final norm; the last one is the latent
    assert torch.allclose(enc.video_levels[-1], enc.video, atol=1e-6)


def test_decoder_skips_read_the_deepest_level_first_and_the_first_block_only_self_attends():
    m = tiny()
    video, audio = inputs()
    vm, am = m.make_masks(2, torch.Generator().manual_seed(3))
    for mae in (m.video, m.audio):
        assert not isinstance(mae.decoder_blocks[0], CrossSelfBlock) and mae.decoder_blocks[0].cross is None
        assert all(isinstance(b, CrossSelfBlock) for b in mae.decoder_blocks[1:]) and len(mae.decoder_blocks) == 4
    seen: dict[int, torch.Tensor] = {}
    hooks = [blk.register_forward_hook(lambda mod, args, kw, out, i=i: seen.__setitem__(i, kw["context"]), with_kwargs=True)
             for i, blk in enumerate(m.video.decoder_blocks)]
    with torch.no_grad():
        m(video, audio, vm, am, video_target=video)
        enc = m.forward_encoder(video, audio, vm, am)
        pos = m.video.decoder_pos_embed.expand(2, -1, -1).gather(1, vm.ids_keep[..., None].expand(-1, -1, 12))
        for h in hooks:
            h.remove()
        assert seen[0] is None
        for i, level in zip((1, 2, 3), (2, 1, 0)):  # decoder block 1 reads encoder level 2 (the deepest), ...
            assert torch.allclose(seen[i], m.video.decoder_embed(enc.video_levels[level]) + pos, atol=1e-6)


def test_encoder_levels_are_the_core_encoder_loop():
    m = tiny()
    video, _ = inputs()
    vm, _ = m.make_masks(2, torch.Generator().manual_seed(4))
    with torch.no_grad():
        latent, levels = encoder_levels(m.video, video, vm)
        assert torch.equal(latent, m.video.forward_encoder(video, vm)) and len(levels) == 3
        assert torch.equal(m.video.norm(levels[-1]), latent)


def test_reconstruct_copies_visible_patches_and_fills_the_hidden_ones():
    m = tiny()
    video, audio = inputs()
    vm, am = m.make_masks(2, torch.Generator().manual_seed(5))
    rec_v, rec_a = m.reconstruct(video, audio, vm, am, video_target=video)
    pv, pr = m.video.patchify(video), m.video.patchify(rec_v)
    keep = vm.ids_keep[..., None].expand(-1, -1, pv.shape[-1])
    assert torch.equal(pv.gather(1, keep), pr.gather(1, keep))
    assert not torch.allclose(pv.gather(1, vm.ids_mask[..., None].expand(-1, -1, pv.shape[-1])),
                              pr.gather(1, vm.ids_mask[..., None].expand(-1, -1, pv.shape[-1])))
    assert rec_a.shape == audio.shape


def test_target_helpers_by_hand():
    x = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(1, 1, 12)  # one tube: t=2, 2 pixels, 3 channels
    n = normalize_video_patches(x, 3).reshape(4, 3)
    for c in range(3):  # each channel over its 4 values 0, 3, 6, 9 (+c): mean 4.5 + c, unbiased std sqrt(15)
        assert torch.allclose(n[:, c], (torch.tensor([0.0, 3, 6, 9]) - 4.5) / math.sqrt(15 + 1e-6), atol=1e-5)
    d = frame_difference(torch.tensor([[[1.0, 2.0, 5.0, 7.0]]]), tubelet=2)  # frames (1, 2) and (5, 7)
    assert d.tolist() == [[[1.0, 2.0, 4.0, 5.0]]]


def test_frame_difference_target_is_used_when_asked():
    m = tiny(frame_diff=True, norm_pix_loss=False)
    video, _ = inputs()
    vm, _ = m.make_masks(2, torch.Generator().manual_seed(6))
    t = m.video_targets(video, vm).reshape(2, vm.num_masked, 2, -1)
    raw = m.video.patchify(video).gather(1, vm.ids_mask[..., None].expand(-1, -1, 1536)).reshape(2, vm.num_masked, 2, -1)
    assert torch.allclose(t[:, :, 1], raw[:, :, 1] - raw[:, :, 0]) and torch.equal(t[:, :, 0], raw[:, :, 0])


def test_a_dropped_modality_gives_the_single_modality_path():
    torch.manual_seed(0)
    clf = HiCMAEClassifier(5, **TINY).eval()
    video, audio = inputs(b=3)
    with torch.no_grad():
        has_v = torch.tensor([True, False, True])
        has_a = torch.tensor([True, True, False])
        garbage = video.clone()
        garbage[1] = 7.0  # sample 1 has no face: whatever stands in its place is never read
        audio_g = audio.clone()
        audio_g[2] = -3.0  # sample 2 has no sound
        out = clf(garbage, audio_g, has_v, has_a)
        assert out.used == ["audio+video", "audio", "video"]
        both = clf(video[:1], audio[:1])
        voice = clf(None, audio[1:2])
        face = clf(video[2:3], None)
        assert torch.allclose(out.logits[0], both.logits[0], atol=1e-5)
        assert torch.allclose(out.logits[1], voice.logits[0], atol=1e-5) and voice.used == ["audio"]
        assert torch.allclose(out.logits[2], face.logits[0], atol=1e-5) and face.used == ["video"]
        # the voice-only path does not depend on the video encoder or the fusion at all
        before = voice.logits.clone()
        for p in list(clf.backbone.video.parameters()) + list(clf.backbone.fusion.parameters()):
            p.add_(1.0)
        assert torch.equal(clf(None, audio[1:2]).logits, before)
    with pytest.raises(ValueError, match="video or audio"):
        clf(video, audio, torch.tensor([True, False, True]), torch.tensor([True, False, False]))


def test_modality_contributions_add_up_to_the_centred_logits():
    torch.manual_seed(1)
    clf = HiCMAEClassifier(4, **TINY).eval()
    with torch.no_grad():
        for p in clf.head.parameters():
            p.add_(0.1 * torch.randn_like(p))
        video, audio = inputs(b=2)
        out = clf(video, audio)
        c = clf.head.contributions(out.features)  # [B, 4 blocks, C]
        b = clf.head.head.bias - clf.head.head.bias.mean()
        centred = out.logits - out.logits.mean(dim=1, keepdim=True)
        assert c.shape == (2, 4, 4) and torch.allclose(c.sum(1) + b, centred, atol=1e-5)
    # the layer weights start equal: a softmax-weighted sum of all layers
    fresh = HiCMAEClassifier(4, **TINY)
    assert torch.allclose(torch.softmax(fresh.head.video_layer_weights, 0), torch.full((3,), 1 / 3))


def test_levels_are_checked():
    with pytest.raises(ValueError, match="levels"):
        HiCMAE(**(TINY | {"levels": (1, 3, 5)}))
    with pytest.raises(ValueError, match="must be equal"):
        HiCMAE(**(TINY | {"audio_dim": 36}))
