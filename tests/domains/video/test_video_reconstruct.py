"""The reconstruction job on the shipped model and clips, and the nearest-visible-patch baseline by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from maskworks.core.io import InputError
from maskworks.core.masking import patchify
from maskworks.data import data_path
from maskworks.domains.video.reconstruct import VideoReconstructor
from maskworks.domains.video.viz import masked_mse, nearest_visible_baseline, visible_mean_baseline

CLIPS = data_path("video", "kinetics_ucf", "videos")


@pytest.fixture(scope="module")
def job():
    return VideoReconstructor.load(device="cpu")


def test_baseline_copies_the_nearest_visible_patch_by_hand():
    # one 2-frame step, 1 x 3 places of 2 x 2 px; only the middle place is visible
    clip = torch.zeros(3, 2, 2, 6)
    clip[:, :, :, 0:2], clip[:, :, :, 2:4], clip[:, :, :, 4:6] = 0.1, 0.5, 0.9
    hidden = torch.tensor([[[True, False, True]]])
    base = nearest_visible_baseline(clip, hidden, (2, 2, 2))
    assert torch.allclose(base, torch.full_like(clip, 0.5))  # both neighbours copy the middle patch
    # MSE over hidden places only: (0.4^2 + 0.4^2) / 2
    assert masked_mse(base, clip, hidden, (2, 2, 2)) == pytest.approx(0.16, abs=1e-6)
    flat = visible_mean_baseline(clip, torch.tensor([[[False, True, False]]]), (2, 2, 2))
    assert torch.allclose(flat[:, :, :, 2:4], torch.full((3, 2, 2, 2), 0.5))  # mean of 0.1 and 0.9
    two = torch.tensor([[[False, True, False]]])  # a tie goes to the first visible place
    assert torch.allclose(nearest_visible_baseline(clip, two, (2, 2, 2))[:, :, :, 2:4], torch.full((3, 2, 2, 2), 0.1))


def test_predict_file_on_the_held_out_clip(job, tmp_path):
    r = job.predict_file(CLIPS / "apply_eye_makeup.avi", seed=3)
    js = r.to_json()
    t = job.num_frames
    assert r.frames["clip"].shape == (t, job.size, job.size, 3) and set(r.frames) == {"clip", "seen", "model",
                                                                                        "nearest visible"}
    assert js["frames"] == (np.arange(t) * job.interval + (164 - t * job.interval) // 2).tolist()  # centred window
    assert js["times_s"][1] - js["times_s"][0] == pytest.approx(job.interval / 25)
    grid = job.model.grid
    assert js["tokens"]["total"] == int(np.prod(grid)) and js["tokens"]["encoder_visible"] * 10 <= js["tokens"]["total"]
    steps = js["per_step"]
    assert len(steps) == grid[0]
    assert np.mean([s["model"] for s in steps]) == pytest.approx(r.model_mse, rel=1e-4)
    assert np.mean([s["nearest_visible_patch"] for s in steps]) == pytest.approx(r.baseline_mse, rel=1e-4)
    # the reconstruction keeps the pixels the encoder saw
    rec = torch.from_numpy(r.frames["model"]).permute(3, 0, 1, 2).float()
    orig = torch.from_numpy(r.frames["clip"]).permute(3, 0, 1, 2).float()
    seen = job.predict_file(CLIPS / "apply_eye_makeup.avi", seed=3)
    assert seen.model_mse == r.model_mse  # a seed fixes the masks
    pr, po = patchify(rec[None], job.model.patch_size)[0], patchify(orig[None], job.model.patch_size)[0]
    visible = (pr - po).abs().amax(dim=1) <= 1.0
    assert int(visible.sum()) >= js["tokens"]["encoder_visible"]
    assert "apply_eye_makeup" in js["file"] and "/" not in js["file"]
    files = r.write(tmp_path / "x")
    assert [f.name for f in files] == ["x_panel.png", "x.gif"] and all(f.stat().st_size > 1000 for f in files)
    other = job.predict_file(CLIPS / "apply_eye_makeup.avi", seed=4)
    assert other.model_mse != r.model_mse


def test_notes_say_when_the_input_differs_from_training(job):
    short = job.predict_file(CLIPS / "rawvideo_part_0.mp4")  # 32 frames
    if 32 < job.num_frames * job.interval:
        assert any("fewer than the" in n and "repeats" in n for n in short.notes)
    assert any("centre-cropped" in n for n in short.notes)
    late = job.predict_file(CLIPS / "arm_wrestling.mp4", start_s=9.5)
    assert late.indices[0] == int(9.5 * 28) and late.indices[-1] == 279
    with pytest.raises(InputError, match="outside the video"):
        job.predict_file(CLIPS / "arm_wrestling.mp4", start_s=11)


def test_bad_files_raise_the_shared_input_error(job, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="broken.mp4"):
        job.predict_file(bad)


def test_shipped_model_beats_both_baselines_on_the_held_out_clip(job):
    """apply_eye_makeup.avi was never trained on; under the same masks the model's hidden-tube error
    is below copying the nearest visible patch and below the visible patches' mean."""
    from maskworks.domains.video.evaluate import reconstruction_error, video_set

    res = reconstruction_error(job.model, video_set("shipped:video/kinetics_ucf", "test", job.cfg, 2), job.device,
                               masks_per_clip=2)
    assert res["samples"] == 4
    assert res["model_mse"] < 0.85 * res["nearest_visible_mse"] and res["model_mse"] < res["visible_mean_mse"]
