"""HiCMAE's inputs: a normalised 128-bin log-mel spectrogram and 16 face frames of one 2.56 s window.

Audio follows AST/AudioMAE/HiCMAE: mono 16 kHz, mean removed, Kaldi filter banks
(``torchaudio.compliance.kaldi.fbank``: 128 mel bins, 25 ms Hanning windows every 10 ms, HTK
compatible, no dither), 256 frames = 2.56 s, normalised with the AudioSet statistics those models
use, ``(fbank + 4.2677) / (2 * 4.5690)``. One deviation: a window that runs past the end of the
sound is padded with *silence* (the filter banks' log floor), not with zeros in the log domain as
the reference code does, where a short file would end in a loud band.

Video is 16 RGB frames spread evenly over the same 2.56 s (one every 0.16 s, the middle of each
sixteenth), 160 x 160 face crops in ``[0, 1]``, normalised with ImageNet statistics for the model.
The spectrogram of the whole file is computed once; a window is a slice of it, so the training
windows and the app's windows come from the same numbers.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SAMPLE_RATE = 16_000
NUM_MEL_BINS = 128
FRAMES_PER_SECOND = 100  # 10 ms shift
TARGET_FRAMES = 256
WINDOW_S = TARGET_FRAMES / FRAMES_PER_SECOND  # 2.56 s
NUM_FRAMES = 16
IMAGE_SIZE = 160
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOG_FLOOR = math.log(float(torch.finfo(torch.float32).eps))  # Kaldi's floor: the log energy of silence
MIN_SAMPLES = 400  # one 25 ms window


def log_mel(samples: np.ndarray | Tensor) -> Tensor:
    """Mono 16 kHz samples ``[N]`` or ``[1, N]`` -> Kaldi filter banks ``[frames, 128]`` (log mel, not normalised)."""
    import torchaudio

    x = torch.as_tensor(np.asarray(samples, dtype=np.float32)).reshape(1, -1)
    if x.shape[1] < MIN_SAMPLES:
        x = F.pad(x, (0, MIN_SAMPLES - x.shape[1]))
    x = x - x.mean()
    return torchaudio.compliance.kaldi.fbank(x, htk_compat=True, sample_frequency=SAMPLE_RATE, use_energy=False,
                                             window_type="hanning", num_mel_bins=NUM_MEL_BINS, dither=0.0,
                                             frame_shift=1000 / FRAMES_PER_SECOND)


def normalize_fbank(fbank: Tensor) -> Tensor:
    """AST/HiCMAE's input scaling with the AudioSet statistics."""
    return (fbank - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)


def denormalize_fbank(x: Tensor) -> Tensor:
    return x * (2 * AUDIOSET_STD) + AUDIOSET_MEAN


def fbank_window(fbank: Tensor, start_s: float, frames: int = TARGET_FRAMES) -> Tensor:
    """``frames`` filter-bank frames from ``start_s``, padded with silence past the end: ``[frames, 128]``,
    normalised (the model's audio input, ``[1, frames, 128]`` after ``unsqueeze(0)``)."""
    first = max(0, int(round(start_s * FRAMES_PER_SECOND)))
    part = fbank[first:first + frames]
    if part.shape[0] < frames:
        pad = torch.full((frames - part.shape[0], fbank.shape[1]), LOG_FLOOR, dtype=fbank.dtype)
        part = torch.cat([part, pad], dim=0)
    return normalize_fbank(part)


def window_starts(duration_s: float, count: int, window_s: float = WINDOW_S) -> list[float]:
    """``count`` window starts spread evenly over ``duration_s`` (one centred window when ``count == 1``;
    a recording shorter than a window starts at 0 and is padded)."""
    room = max(duration_s - window_s, 0.0)
    if count <= 1:
        return [room / 2]
    return [room * k / (count - 1) for k in range(count)]


def frame_times(start_s: float, num_frames: int = NUM_FRAMES, window_s: float = WINDOW_S) -> np.ndarray:
    """Times of the ``num_frames`` frames of a window: the middle of each of its equal parts."""
    return start_s + (np.arange(num_frames) + 0.5) * window_s / num_frames


def frame_indices(times_s: np.ndarray, fps: float, num_frames_in_file: int) -> np.ndarray:
    """Nearest frame numbers of ``times_s``, clamped to the file (a short clip repeats its last frame)."""
    idx = np.floor(np.asarray(times_s) * fps).astype(np.int64)
    return np.clip(idx, 0, max(num_frames_in_file - 1, 0))


def frames_to_clip(frames: np.ndarray | Tensor, size: int = IMAGE_SIZE) -> Tensor:
    """RGB ``uint8 [T, H, W, 3]`` -> ``float [3, T, size, size]`` in [0, 1] (resized when not ``size``)."""
    x = torch.as_tensor(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return x.contiguous()


def normalize_video(clip: Tensor) -> Tensor:
    """``[B, 3, T, H, W]`` in [0, 1] -> ImageNet-normalised model input."""
    mean = clip.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = clip.new_tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (clip - mean) / std


def is_silent(samples: np.ndarray, threshold_dbfs: float = -60.0, frame: int = 512) -> bool:
    """True when even the loudest ``frame`` of samples (32 ms at 16 kHz) is below ``threshold_dbfs`` RMS: a
    muted or empty sound track. The loudest frame, not the whole recording: real soft speech (a sad RAVDESS
    line) averages -58 dBFS over its pauses while its words reach -45."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return True
    x = x - x.mean()
    n = max(1, x.size // frame)
    frames = x[: n * frame].reshape(n, -1) if x.size >= frame else x[None]
    loudest = float(np.sqrt((frames ** 2).mean(axis=1)).max())
    return loudest <= 10 ** (threshold_dbfs / 20)


