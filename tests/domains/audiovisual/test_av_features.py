"""Inputs with values: the Kaldi filter banks of a pure tone, windows, padding, frame times, face crops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskworks.domains.audiovisual.features import (AUDIOSET_MEAN, AUDIOSET_STD, LOG_FLOOR, SAMPLE_RATE, fbank_window,
                                                    frame_indices, frame_times, frames_to_clip, is_silent, log_mel,
                                                    normalize_fbank, window_starts)


def tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def mel(f: float) -> float:
    return 1127.0 * math.log(1 + f / 700.0)


def test_log_mel_of_a_tone_peaks_in_the_mel_bin_of_its_frequency():
    fb = log_mel(tone(1000.0, 1.0))
    assert fb.shape == (98, 128)  # (16000 - 400) // 160 + 1 frames of 25 ms every 10 ms
    # 128 triangular bins evenly spaced on the mel scale from 20 Hz to 8 kHz (Kaldi's defaults, htk_compat)
    lo, hi = mel(20.0), mel(8000.0)
    centres = lo + (np.arange(128) + 1) * (hi - lo) / 129
    want = int(np.argmin(np.abs(centres - mel(1000.0))))
    assert abs(int(fb[50].argmax()) - want) <= 1
    # the same numbers as calling torchaudio's Kaldi fbank by hand (HiCMAE's settings)
    import torchaudio

    x = torch.from_numpy(tone(1000.0, 1.0))[None]
    ref = torchaudio.compliance.kaldi.fbank(x - x.mean(), htk_compat=True, sample_frequency=16000, use_energy=False,
                                            window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    assert torch.equal(fb, ref)


def test_windows_are_256_frames_padded_with_silence_and_normalised_with_audioset_statistics():
    fb = log_mel(tone(440.0, 1.0))  # 98 frames: a 2.56 s window runs past the end
    w = fbank_window(fb, 0.0)
    assert w.shape == (256, 128)
    assert torch.allclose(w[:98], normalize_fbank(fb))
    assert torch.allclose(w[98:], torch.full((158, 128), (LOG_FLOOR - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)))
    # silence itself is at the floor: padding looks like the quiet parts of a recording
    assert torch.allclose(log_mel(np.zeros(4000, np.float32)), torch.full((23, 128), LOG_FLOOR))
    later = fbank_window(fb, 0.5)  # starts 50 frames in
    assert torch.allclose(later[:48], normalize_fbank(fb[50:]))


def test_window_starts_frame_times_and_indices():
    assert window_starts(3.1, 1) == pytest.approx([0.27])  # one window, centred
    assert window_starts(3.1, 3) == pytest.approx([0.0, 0.27, 0.54])
    assert window_starts(1.0, 2) == [0.0, 0.0]  # shorter than a window: padded from 0
    t = frame_times(0.0)
    assert len(t) == 16 and t[0] == pytest.approx(0.08) and t[-1] == pytest.approx(2.48)  # middles of 0.16 s parts
    idx = frame_indices(t, 30.0, 50)  # 50 frames at 30 fps: 1.67 s, so the last ones repeat frame 49
    assert idx.tolist()[:3] == [2, 7, 12] and idx.max() == 49


def test_frames_to_clip_scales_to_160_and_silence_is_detected():
    frames = np.full((2, 90, 120, 3), 255, np.uint8)
    clip = frames_to_clip(frames)
    assert clip.shape == (3, 2, 160, 160) and torch.allclose(clip, torch.ones_like(clip))
    assert is_silent(np.zeros(100)) and is_silent(np.full(100, 1e-5)) and not is_silent(tone(200.0, 0.1, 0.01))
    # a 0.1 s word at -45 dBFS RMS in 6 s of quiet: the whole file's RMS is -63 dBFS, the word is what counts
    soft = np.r_[np.zeros(48000), tone(200.0, 0.1, 10 ** (-45 / 20) * np.sqrt(2)), np.zeros(48000)]
    assert not is_silent(soft) and is_silent(soft * 0.001)


def test_the_face_cropper_finds_the_face_of_a_shipped_clip_and_none_in_a_blank_one():
    pytest.importorskip("mediapipe")
    from maskworks.core.io.video import read_frames
    from maskworks.data import data_path
    from maskworks.domains.audiovisual.faces import FaceCropper

    clip = data_path("audiovisual", "ravdess", "clips", "01-01-03-01-01-02-05.mp4")
    frames = read_frames(clip, np.arange(0, 90, 12)).frames
    fc = FaceCropper()
    box = fc.box(frames)
    assert box is not None and box.found == len(frames)
    # the shipped crops were made so that the face fills 0.59 of the side: the crop square is about the frame
    assert 0.85 < box.side / 160 < 1.3 and abs(box.x0 + box.side * 0.52 - 80) < 20
    crops = fc.crop(frames, box)
    assert crops.shape == (len(frames), 160, 160, 3)
    assert fc.box(np.zeros((4, 160, 160, 3), np.uint8)) is None
    # a square partly outside the picture is padded with black
    from maskworks.domains.audiovisual.faces import FaceBox

    out = fc.crop(frames[:1], FaceBox(-80, 0, 160, 1, 1, 1.0))
    assert (out[0, :, :80] == 0).all() and out[0, :, 80:].mean() > 20
