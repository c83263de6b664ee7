"""Writing videos (browser-playable mp4/avi/webm, optional sound track): the apps' reconstructions and the
tests' files with known content."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maskworks.core.io.video import _import_av

_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4",
           ".webm": "libvpx-vp9"}
_AUDIO_CODECS = {".mp4": "aac", ".m4v": "aac", ".mov": "aac", ".mkv": "aac", ".avi": "libmp3lame", ".webm": "libopus"}


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, codec: str | None = None, crf: int = 18,
                audio: tuple[np.ndarray, int] | None = None) -> Path:
    """Write RGB ``uint8 [T, H, W, 3]`` frames (even H and W) as a browser-playable video.

    The codec follows the suffix (H.264 yuv420p with the index up front for mp4, MPEG-4 for avi,
    VP9 for webm); ``audio=(samples [C, N] float in [-1, 1], rate)`` adds a sound track. Used for
    the apps' reconstructions and for tests that need a file with known content.
    """
    from fractions import Fraction

    av = _import_av()
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"frame size {w}x{h} must be even for yuv420p; crop or pad a row/column")
    suffix = path.suffix.lower()
    codec = codec or _CODECS.get(suffix, "libx264")
    rate = Fraction(fps).limit_denominator(1001)
    options = {"movflags": "+faststart"} if suffix in {".mp4", ".m4v", ".mov"} else {}
    with av.open(str(path), "w", options=options) as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if codec in {"libx264", "libvpx-vp9"}:
            vs.options = {"crf": str(crf)} | ({"b": "0"} if codec == "libvpx-vp9" else {})
        elif codec == "mpeg4":
            vs.options = {"qscale": "2"}
            vs.codec_context.qmax = 4
        astream = None
        if audio is not None:
            samples, arate = np.asarray(audio[0], np.float32), int(audio[1])
            samples = samples[None] if samples.ndim == 1 else samples
            acodec = _AUDIO_CODECS.get(suffix, "aac")
            enc_rate = 48000 if acodec == "libopus" else arate  # Opus encodes at 48 kHz only
            astream = out.add_stream(acodec, rate=enc_rate)
            astream.layout = "mono" if samples.shape[0] == 1 else "stereo"
        for i in range(t):
            for packet in vs.encode(av.VideoFrame.from_ndarray(frames[i], format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if astream is not None:
            fmt = astream.codec_context.format.name if astream.codec_context.format else "fltp"
            resampler = av.AudioResampler(format=fmt, layout=astream.layout, rate=enc_rate)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:2]), format="fltp",
                                               layout=astream.layout)
            frame.sample_rate = arate
            for chunk in resampler.resample(frame) + resampler.resample(None):
                for packet in astream.encode(chunk):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return path
