"""Audio files and the audio tracks of videos, as float32 ``[C, N]`` at a requested sample rate.

``torchaudio.load`` needs FFmpeg libraries that maskworks does not ship, so plain audio files
(wav, flac, ogg, aiff) are read with soundfile (libsndfile) and everything else (mp3, m4a, aac and
the audio track of mp4/avi/mkv/webm/mov videos) with PyAV, which bundles its FFmpeg. The header is
checked against :class:`AudioCaps` before decoding. Resampling uses ``torchaudio.functional.resample``
(band-limited sinc interpolation, the same as torchaudio's pipelines), so both readers give the
same numbers for the same sound.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from maskworks.core.io.errors import InputError

SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"})
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | {".mp3", ".m4a", ".aac", ".opus", ".wma"}


@dataclass(frozen=True)
class AudioCaps:
    """Limits checked on the header before anything is decoded."""

    max_file_bytes: int = 2 * 1024 ** 3
    max_duration_s: float = 3 * 3600.0
    max_decoded_bytes: int = 2 * 1024 ** 3  # float32 samples at the native rate, all channels
    max_channels: int = 32


DEFAULT_AUDIO_CAPS = AudioCaps()


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    duration_s: float
    codec: str
    reader: str  # "soundfile" or "pyav"

    def to_json(self) -> dict:
        """The fields, with the file's name (no server folder) under "file": a JSON dict with a "path" key is taken
        for a file to fetch by gradio_client, so an API answer holding one failed with 403 Forbidden."""
        out = asdict(self)
        out["file"] = Path(out.pop("path")).name
        return out


@dataclass
class Audio:
    samples: np.ndarray  # float32 [C, N], in [-1, 1] for integer sources
    sample_rate: int
    info: AudioInfo

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.sample_rate


def _stat(path: Path, caps: AudioCaps) -> None:
    if not path.exists():
        raise InputError(path, "file not found", "check the path")
    if not path.is_file():
        raise InputError(path, "is not a file", "give an audio file or a video with sound")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "is empty (0 bytes)", "the copy or download was cut off; get the file again")
    if size > caps.max_file_bytes:
        raise InputError(path, f"is {size / 1024 ** 2:,.0f} MiB, over the cap of {caps.max_file_bytes / 1024 ** 2:,.0f} MiB",
                         "cut a shorter part or raise max_file_bytes")


def _short(e: BaseException, path: Path | None = None) -> str:
    """First line of an error with the file's folder removed (apps show no server paths)."""
    text = str(e).split("\n")[0]
    if path is not None:
        text = text.replace(str(path), path.name)
    return text[:160] + ("..." if len(text) > 160 else "")


def _probe_soundfile(path: Path) -> AudioInfo | None:
    import soundfile as sf

    try:
        i = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError, TypeError):
        return None  # not something libsndfile reads: let PyAV try
    return AudioInfo(str(path), int(i.samplerate), int(i.channels), float(i.frames) / max(i.samplerate, 1),
                     str(i.subtype or i.format), "soundfile")


def _probe_pyav(path: Path) -> AudioInfo:
    import av

    try:
        container = av.open(str(path), options={"probesize": "5000000", "analyzeduration": "5000000"})
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(path, f"is not a readable audio or video file ({_short(e, path)})",
                         "check that the file is not damaged; re-encode it, e.g. ffmpeg -i in -ac 1 -ar 16000 out.wav") from None
    with container:
        if not container.streams.audio:
            what = "a video without an audio track" if container.streams.video else "a file with no audio stream"
            raise InputError(path, f"is {what}", "give a video with sound or the audio file itself")
        s = container.streams.audio[0]
        ctx = s.codec_context
        duration = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        if duration <= 0 and container.duration:
            duration = container.duration / 1_000_000
        channels = int(getattr(ctx, "channels", 0) or len(getattr(ctx.layout, "channels", ())) or 0)
        return AudioInfo(str(path), int(ctx.sample_rate or 0), channels, duration, ctx.name or "?", "pyav")


def probe_audio(path: str | Path, caps: AudioCaps = DEFAULT_AUDIO_CAPS) -> AudioInfo:
    """Header only: sample rate, channels, duration; checked against ``caps``."""
    path = Path(path)
    _stat(path, caps)
    info = _probe_soundfile(path) if path.suffix.lower() in SOUNDFILE_SUFFIXES else None
    info = info or _probe_pyav(path)
    if info.sample_rate <= 0 or info.channels <= 0:
        raise InputError(path, f"has an audio stream without a sample rate or channels ({info.sample_rate} Hz, "
                         f"{info.channels} ch)", "the file is damaged; re-encode it")
    if info.channels > caps.max_channels:
        raise InputError(path, f"has {info.channels} channels, over the cap of {caps.max_channels}",
                         "mix it down first (ffmpeg -i in -ac 2 out.wav)")
    if info.duration_s > caps.max_duration_s:
        raise InputError(path, f"lasts {info.duration_s / 60:,.1f} min, over the cap of {caps.max_duration_s / 60:,.0f} min",
                         "cut a shorter part (ffmpeg -ss START -t SECONDS -i in out.wav) or raise max_duration_s")
    need = info.duration_s * info.sample_rate * info.channels * 4
    if need > caps.max_decoded_bytes:
        raise InputError(path, f"decodes to {need / 1024 ** 2:,.0f} MiB of samples, over the cap of "
                         f"{caps.max_decoded_bytes / 1024 ** 2:,.0f} MiB", "cut a shorter part or raise max_decoded_bytes")
    return info


def _read_soundfile(path: Path, start_s: float, duration_s: float | None, rate: int) -> np.ndarray:
    import soundfile as sf

    start = int(round(start_s * rate))
    stop = None if duration_s is None else start + int(round(duration_s * rate))
    data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T)


def _read_pyav(path: Path, start_s: float, duration_s: float | None, rate: int) -> np.ndarray:
    import av

    end_s = None if duration_s is None else start_s + duration_s
    parts: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        # a planar float resampler at the native rate only converts the sample format
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=rate)
        seen = 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray())
                seen += out.samples
            if end_s is not None and seen / rate >= end_s - t0 + 0.1:
                break
        for out in resampler.resample(None):
            parts.append(out.to_ndarray())
    if not parts:
        raise InputError(path, "has an audio track but no audio could be decoded", "the file is damaged; re-encode it")
    data = np.concatenate(parts, axis=1).astype(np.float32)
    start = int(round(start_s * rate))
    stop = None if duration_s is None else start + int(round(duration_s * rate))
    return np.ascontiguousarray(data[:, start:stop])


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """``[C, N]`` float32 from ``orig_rate`` to ``new_rate`` (``torchaudio.functional.resample``)."""
    if orig_rate == new_rate:
        return samples
    import torch
    import torchaudio.functional as F

    out = F.resample(torch.from_numpy(np.ascontiguousarray(samples)), int(orig_rate), int(new_rate))
    return out.numpy().astype(np.float32, copy=False)


def read_audio(path: str | Path, sample_rate: int | None = None, *, mono: bool = True, start_s: float = 0.0,
               duration_s: float | None = None, caps: AudioCaps = DEFAULT_AUDIO_CAPS) -> Audio:
    """Read an audio file or a video's audio track as float32 ``[C, N]`` (``C = 1`` with ``mono``).

    ``sample_rate`` resamples (``None`` keeps the file's rate); ``start_s``/``duration_s`` cut a
    segment (e.g. the span of a video clip). Raises :class:`InputError` for anything unusable.
    """
    path = Path(path)
    info = probe_audio(path, caps)
    if start_s < 0 or (duration_s is not None and duration_s <= 0):
        raise ValueError(f"start_s must be >= 0 and duration_s > 0, got {start_s}, {duration_s}")
    try:
        read = _read_soundfile if info.reader == "soundfile" else _read_pyav
        data = read(path, start_s, duration_s, info.sample_rate)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - libsndfile and FFmpeg raise many types for damaged files
        raise InputError(path, f"could not be decoded ({_short(e, path)})", "the file is damaged; re-encode it") from None
    if data.size == 0:
        raise InputError(path, f"has no audio samples from {start_s:g} s on" if start_s else "has no audio samples",
                         "give a start inside the file" if start_s else "the file is empty or damaged")
    if not np.isfinite(data).all():
        raise InputError(path, "holds NaN or infinite samples", "re-encode it as 16-bit PCM wav")
    if mono and data.shape[0] > 1:
        data = data.mean(axis=0, keepdims=True)
    rate = info.sample_rate
    if sample_rate is not None and int(sample_rate) != rate:
        data, rate = resample(data, rate, int(sample_rate)), int(sample_rate)
    return Audio(np.ascontiguousarray(data, dtype=np.float32), rate, info)


__all__ = ["AUDIO_SUFFIXES", "AudioCaps", "DEFAULT_AUDIO_CAPS", "AudioInfo", "Audio", "probe_audio", "read_audio",
           "resample"]
