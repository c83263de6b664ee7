"""The videos/ + labels.csv layout, clip windows and pytorchvideo transforms, on the shipped clips."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from maskworks.core.io import InputError
from maskworks.core.io.video import write_video
from maskworks.data import data_path
from maskworks.domains.video.data import VideoClips, hflip, read_video_folder, to_clip

SHIPPED = "shipped:video/kinetics_ucf"


def test_shipped_folder_lists_its_splits():
    train = read_video_folder(SHIPPED, "train")
    test = read_video_folder(SHIPPED, "test")
    assert [e.path.name for e in test] == ["apply_eye_makeup.avi"]
    assert {e.path.name for e in train} == {"arm_wrestling.mp4", "cleaning_pool.mp4", "rawvideo_part_0.mp4"}
    total = sum(p.stat().st_size for p in data_path("video", "kinetics_ucf", "videos").iterdir())
    assert total < 1_000_000  # the shipped set stays small


def test_clips_are_windows_spread_over_each_video():
    ds = VideoClips(SHIPPED, "train", num_frames=16, interval=4, size=112, windows=4)
    assert len(ds) == 12
    k, idx, crop = ds.window(0)
    assert idx.tolist() == (4 * np.arange(16)).tolist() and crop == 0
    k, idx, _ = ds.window(3)  # the last window ends at the video's end
    assert idx[-1] == ds.infos[k].num_frames - 4
    item = ds[1]
    assert item["clip"].shape == (3, 16, 112, 112) and item["clip"].dtype == torch.float32
    assert 0.0 <= float(item["clip"].min()) and float(item["clip"].max()) <= 1.0
    short = [i for i, e in enumerate(ds.entries) if e.path.name == "rawvideo_part_0.mp4"][0]
    _, idx, _ = ds.window(short * 4)
    assert idx.max() == 31  # a 32-frame video repeats its last frame to fill 16 x 4
    # cached and decoded-per-item clips are the same
    ds2 = VideoClips(SHIPPED, "train", num_frames=16, interval=4, size=112, windows=4, cache=False)
    torch.testing.assert_close(ds2[5]["clip"], ds[5]["clip"])


def test_to_clip_scales_the_short_side_and_crops():
    frames = np.zeros((4, 60, 120, 3), np.uint8)
    frames[:, :, :40] = 255  # left third white
    left = to_clip(frames, 32, 32, spatial_idx=0)
    right = to_clip(frames, 32, 32, spatial_idx=2)
    assert left.shape == (3, 4, 32, 32)
    assert float(left[:, :, :, :16].mean()) > 0.95 and float(right.mean()) < 0.05
    flipped = hflip(left[None], torch.tensor([True]))[0]
    torch.testing.assert_close(flipped, left.flip(-1))


def test_bad_folders_say_what_to_fix(tmp_path):
    with pytest.raises(InputError, match="no videos/ folder"):
        read_video_folder(tmp_path)
    (tmp_path / "videos").mkdir()
    with pytest.raises(InputError, match="holds no videos"):
        read_video_folder(tmp_path)
    write_video(tmp_path / "videos" / "a.mp4", np.zeros((8, 32, 32, 3), np.uint8), 10)
    assert [e.label for e in read_video_folder(tmp_path)] == [""]  # no labels.csv: every video, unlabelled
    (tmp_path / "labels.csv").write_text("name,class\na.mp4,x\n")
    with pytest.raises(InputError, match="file,label"):
        read_video_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.mp4,x\nb.mp4,y\n")
    with pytest.raises(InputError, match="line 3 names 'b.mp4'"):
        read_video_folder(tmp_path)
    shutil.copy(tmp_path / "videos" / "a.mp4", tmp_path / "videos" / "b.mp4")
    (tmp_path / "videos" / "b.mp4").write_bytes(b"garbage")
    with pytest.raises(InputError, match="b.mp4"):
        VideoClips(tmp_path, num_frames=4, size=32)


def test_the_shipped_avi_has_a_readable_sound_track():
    """The audio-visual domain's entry point: the sound of a real video, via PyAV (mp3 in AVI)."""
    from maskworks.core.io.audio import read_audio

    a = read_audio(data_path("video", "kinetics_ucf", "videos", "apply_eye_makeup.avi"), 16000)
    assert a.info.codec.startswith("mp3") and a.info.sample_rate == 44100 and a.info.channels == 2
    assert a.samples.shape[0] == 1 and abs(a.duration_s - 6.56) < 0.1 and 0.01 < float(a.samples.std()) < 0.5
    with pytest.raises(InputError, match="video without an audio track"):
        read_audio(data_path("video", "kinetics_ucf", "videos", "arm_wrestling.mp4"))
