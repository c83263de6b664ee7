"""Emotion folders: the shipped set's real counts, audio-only folders, clips without sound, clear errors."""
from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from maskworks.core.io import InputError
from maskworks.core.io.video import probe_video, read_frames, write_video
from maskworks.data import data_path
from maskworks.domains.audiovisual.data import (AVWindows, canonical_emotion, class_order, load_recording,
                                                read_av_folder)

ROOT = data_path("audiovisual", "ravdess")


def test_the_shipped_set_is_15_clips_of_two_actors():
    entries = read_av_folder("shipped:audiovisual/ravdess")
    assert len(entries) == 15 and all(e.clip and e.audio for e in entries)
    assert Counter(e.actor for e in entries) == {"5": 14, "1": 1}
    assert Counter(e.label for e in entries) == {"fearful": 6, "sad": 5, "neutral": 1, "happy": 1, "surprised": 1,
                                                 "disgust": 1}
    assert class_order([e.label for e in entries]) == ["neutral", "happy", "sad", "fearful", "disgust", "surprised"]
    assert canonical_emotion(" Anger ") == "angry" and canonical_emotion("FEAR") == "fearful"


def test_windows_of_a_clip_hold_its_face_frames_and_its_sound(tmp_path):
    entries = read_av_folder(ROOT)[:2]
    ds = AVWindows(ROOT, windows=2, entries=entries)
    assert len(ds) == 4 and ds.classes == ["neutral", "happy"]
    it = ds[1]
    assert it["video"].shape == (3, 16, 160, 160) and it["audio"].shape == (1, 256, 128)
    assert bool(it["has_video"]) and bool(it["has_audio"]) and int(it["label"]) == 0 and int(it["entry"]) == 0
    rec = ds.recordings[0]
    # frame 0 of the window starting at ~0.54 s is the file's frame at 0.54 + 0.08 s
    k = int(np.floor((ds.starts[0][1] + 0.08) * rec.fps))
    assert torch.allclose(it["video"][:, 0], torch.from_numpy(rec.frames[k]).permute(2, 0, 1).float() / 255)


def test_an_audio_only_folder_and_a_clip_without_sound(tmp_path):
    folder = tmp_path / "speech"
    (folder / "audio").mkdir(parents=True)
    rows = ["audio,emotion,speaker"]
    for e in read_av_folder(ROOT)[:3]:
        shutil.copy(e.audio, folder / "audio" / e.audio.name)
        rows.append(f"audio/{e.audio.name},{e.label.upper()},{e.actor}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = AVWindows(folder, windows=1)
    assert len(ds) == 3 and ds.entries[0].clip is None and ds.entries[0].actor == "5"
    assert not bool(ds[0]["has_video"]) and bool(ds[0]["has_audio"]) and float(ds[0]["video"].abs().sum()) == 0
    # a clip whose sound track is missing: video only, and said so
    src = ROOT / "clips" / "01-01-01-01-02-01-05.mp4"
    info = probe_video(src)
    mute = tmp_path / "mute.mp4"
    write_video(mute, read_frames(src, np.arange(info.num_frames)).frames, info.fps)
    from maskworks.domains.audiovisual.data import AVEntry

    rec = load_recording(AVEntry("mute", mute, None, "neutral", "", ""))
    assert rec.fbank is None and rec.frames.shape[1:] == (160, 160, 3) and "no sound track" in rec.notes
    with pytest.raises(InputError, match="pre-training needs clips with both"):
        AVWindows(folder, windows=1, require="both")


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        read_av_folder(tmp_path / "nothing")
    (tmp_path / "labels.csv").write_text("name,mood\na,happy\n")
    with pytest.raises(InputError, match="needs a clip and/or audio column"):
        read_av_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("clip,emotion\nclips/missing.mp4,happy\n")
    with pytest.raises(InputError, match=r"line 2 names 'clips/missing.mp4'"):
        read_av_folder(tmp_path)
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(InputError, match="holds no clips or audio files"):
        read_av_folder(tmp_path)
