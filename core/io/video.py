"""Video files: probe the header, sample clip indices, decode frames (decord first, PyAV as fallback).

Shared by every domain that reads video (video MAE, audio-visual, pose from video), so a bad file is
reported the same way everywhere. The order is always: probe the container's header with PyAV (no
decoding) -> check its size, frame count, dimensions and duration against :class:`VideoCaps` ->
choose frame indices -> decode only those frames.

Decoding runs in a helper process by default (``isolate=True``): decord is known to hang on some
damaged files (dmlc/decord#363) and to abort the whole process from a worker thread on others
(dmlc/decord#25). The helper is killed after ``caps.timeout_s`` and the caller gets an
:class:`InputError` naming the file, so an app or a training run never hangs on one clip.
Frames are RGB ``uint8`` ``[T, H, W, 3]``.
"""
from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from maskworks.core.io.errors import InputError

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv", ".mpg", ".mpeg", ".ogv", ".3gp"})
Backend = Literal["auto", "decord", "pyav"]
SamplingMode = Literal["strided", "uniform"]
REENCODE = "re-encode it, e.g. ffmpeg -i in.avi -c:v libx264 -pix_fmt yuv420p out.mp4"


@dataclass(frozen=True)
class VideoCaps:
    """Limits checked on the header before anything is decoded (and a time limit on decoding)."""

    max_file_bytes: int = 2 * 1024 ** 3
    max_side: int = 4096  # pixels, width or height
    max_frames: int = 500_000  # about 4.6 h at 30 fps
    max_duration_s: float = 4 * 3600.0
    max_decoded_bytes: int = 1024 ** 3  # the frames asked for, T * H * W * 3
    timeout_s: float = 120.0  # decoding one request


DEFAULT_CAPS = VideoCaps()


@dataclass(frozen=True)
class VideoInfo:
    """What the container's header says (``frames_estimated`` when the count came from duration x fps)."""

    path: str
    width: int
    height: int
    num_frames: int
    fps: float
    duration_s: float
    codec: str
    has_audio: bool
    frames_estimated: bool = False

    def to_json(self) -> dict:
        """The fields, with the file's name (no server folder) under "file": a JSON dict with a "path" key is taken
        for a file to fetch by gradio_client, so an API answer holding one failed with 403 Forbidden."""
        out = asdict(self)
        out["file"] = Path(out.pop("path")).name
        return out


@dataclass
class VideoClip:
    """Decoded frames with the indices they were read at and their presentation times (seconds)."""

    frames: np.ndarray  # uint8 [T, H, W, 3], RGB
    indices: np.ndarray  # int64 [T], frame numbers in the file
    timestamps_s: np.ndarray  # float64 [T]
    info: VideoInfo
    backend: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


# -- probing -------------------------------------------------------------------------------------
def _import_av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - part of the seqav extra
        raise ImportError("reading video needs PyAV: pip install 'maskworks[seqav]'") from e
    return av


def _stat(path: Path, caps: VideoCaps) -> None:
    if not path.exists():
        raise InputError(path, "file not found", "check the path")
    if not path.is_file():
        raise InputError(path, "is not a file", "give a video file (mp4, avi, webm, mov, mkv)")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "is empty (0 bytes)", "the copy or download was cut off; get the file again")
    if size > caps.max_file_bytes:
        raise InputError(path, f"is {size / 1024 ** 2:,.0f} MiB, over the cap of {caps.max_file_bytes / 1024 ** 2:,.0f} MiB",
                         "cut a shorter part (ffmpeg -ss START -t SECONDS -i in.mp4 out.mp4) or raise max_file_bytes")


def probe_video(path: str | Path, caps: VideoCaps = DEFAULT_CAPS) -> VideoInfo:
    """Read the header only and check it against ``caps``; raise :class:`InputError` for anything unusable."""
    path = Path(path)
    _stat(path, caps)
    av = _import_av()
    try:
        container = av.open(str(path), options={"probesize": "5000000", "analyzeduration": "5000000"})
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(path, f"is not a readable video container ({_short(e, path)})",
                         f"check that it is a video file and not damaged; {REENCODE}") from None
    with container:
        videos = list(container.streams.video)
        has_audio = bool(container.streams.audio)
        if not videos:
            what = "an audio-only file" if has_audio else "a file with no video stream"
            raise InputError(path, f"is {what}", "give a video file with a picture track")
        s = videos[0]
        if s.codec_context is None:  # a damaged header: the stream is listed but no decoder can be set up
            raise InputError(path, "its video stream has no usable codec (the header is damaged or truncated)",
                             f"check that the file is complete; {REENCODE}")
        width, height = int(s.codec_context.width or 0), int(s.codec_context.height or 0)
        codec = s.codec_context.name or "?"
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else 0.0
        duration = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        if duration <= 0 and container.duration:
            duration = container.duration / 1_000_000
        frames, estimated = int(s.frames or 0), False
        if frames <= 0 and duration > 0 and fps > 0:
            frames, estimated = int(round(duration * fps)), True
    if width <= 0 or height <= 0:
        raise InputError(path, "has a video stream without a frame size", f"the file is damaged; {REENCODE}")
    if max(width, height) > caps.max_side:
        raise InputError(path, f"frames are {width}x{height}, over the cap of {caps.max_side} px a side",
                         "downscale it first (ffmpeg -i in.mp4 -vf scale=-2:720 out.mp4) or raise max_side")
    if duration > caps.max_duration_s:
        raise InputError(path, f"lasts {duration / 60:,.1f} min, over the cap of {caps.max_duration_s / 60:,.0f} min",
                         "cut a shorter part (ffmpeg -ss START -t SECONDS -i in.mp4 out.mp4) or raise max_duration_s")
    if frames > caps.max_frames:
        raise InputError(path, f"has {frames:,} frames, over the cap of {caps.max_frames:,}",
                         "cut a shorter part or lower its frame rate, or raise max_frames")
    if frames <= 0:
        raise InputError(path, "has a video stream with no frames", f"the file is empty or damaged; {REENCODE}")
    if fps <= 0:
        fps = frames / duration if duration > 0 else 25.0
    if duration <= 0:
        duration = frames / fps
    return VideoInfo(str(path), width, height, frames, fps, duration, codec, has_audio, estimated)


def _short(e: BaseException, path: str | Path | None = None) -> str:
    """First line of an error, without decord's ``[12:00:00] /src/file.cc:123:`` prefixes and with the
    file's folder removed (apps show no server paths), at most 160 chars."""
    import re

    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", str(e).split("\n")[0]).strip()
    if path is not None:
        text = text.replace(str(path), Path(path).name)
    return text[:160] + ("..." if len(text) > 160 else "")


# -- clip sampling -------------------------------------------------------------------------------
def sample_indices(num_frames: int, num_samples: int = 16, interval: int = 4, mode: SamplingMode = "strided",
                   start: int | Literal["center", "random"] = "center",
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices of one clip, ``int64 [num_samples]``.

    ``strided`` (VideoMAE's sampling): ``num_samples`` frames ``interval`` apart, a window of
    ``num_samples * interval`` frames starting at ``start`` (``"center"`` centres the window,
    ``"random"`` draws it from ``rng``, an int is a frame number); a video shorter than the window
    repeats its last frame, as VideoMAE's loader pads. ``uniform`` (TSN's segments): the centres of
    ``num_samples`` equal segments of the whole video; ``interval`` and ``start`` are ignored.
    """
    if num_frames <= 0:
        raise ValueError(f"the video has no frames (num_frames={num_frames})")
    if num_samples <= 0 or interval <= 0:
        raise ValueError(f"num_samples and interval must be positive, got {num_samples}, {interval}")
    if mode == "uniform":
        idx = np.floor((np.arange(num_samples) + 0.5) * num_frames / num_samples).astype(np.int64)
        return np.minimum(idx, num_frames - 1)
    if mode != "strided":
        raise ValueError(f"unknown sampling mode {mode!r}; use 'strided' or 'uniform'")
    span = num_samples * interval
    room = max(num_frames - span, 0)
    if start == "center":
        first = room // 2
    elif start == "random":
        first = int((rng or np.random.default_rng()).integers(0, room + 1))
    else:
        first = int(start)
        if not 0 <= first < num_frames:
            raise ValueError(f"start frame {first} is outside the video's {num_frames} frames")
    idx = first + np.arange(num_samples, dtype=np.int64) * interval
    return np.minimum(idx, num_frames - 1)


# -- decoding (runs in the helper process, or here with isolate=False) ---------------------------
def _frame_indexed(path: str) -> bool:
    """AVI stores no presentation times (frame n is at n / fps); decoders' guesses differ, so use that."""
    return Path(path).suffix.lower() == ".avi"


def _decode_decord(path: str, indices: np.ndarray, size: tuple[int, int] | None):
    import decord

    kwargs = {} if size is None else {"height": int(size[0]), "width": int(size[1])}
    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, fault_tol=0.1, **kwargs)
    n = len(vr)
    if n == 0:
        raise _DecodeFailure("has a video stream with no frames", REENCODE)
    idx = np.minimum(indices, n - 1)
    frames = vr.get_batch(idx.tolist()).asnumpy()
    ts = vr.get_frame_timestamp(idx.tolist())[:, 0].astype(np.float64)
    fps = float(vr.get_avg_fps() or 0.0)
    bad = ~np.isfinite(ts) | (ts < 0)  # e.g. AVI frames without pts
    if bad.any() or _frame_indexed(path):
        ts = idx / (fps if fps > 0 else 25.0)
    return frames, idx, ts, n


def _decode_pyav(path: str, indices: np.ndarray, size: tuple[int, int] | None):
    av = _import_av()
    wanted = {int(i) for i in indices}
    last = max(wanted)
    got: dict[int, tuple[np.ndarray, float]] = {}
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 25.0
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        nominal = _frame_indexed(path)
        i = -1
        prev = None
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                img = frame.to_ndarray(format="rgb24", **({} if size is None else {"height": size[0], "width": size[1]}))
                t = float(frame.time) - start if frame.time is not None and not nominal else i / fps
                got[i] = (img, t)
            prev = frame
            if i >= last:
                break
        n = i + 1
    if n == 0 or prev is None:
        raise _DecodeFailure("has a video stream but no frame could be decoded", REENCODE)
    # the header over-counted: indices past the end repeat the last decoded frame we kept
    idx = np.minimum(indices, n - 1)
    if not all(int(j) in got for j in idx):
        keep = sorted(got)
        if not keep:
            raise _DecodeFailure(f"none of the requested frames (up to {last}) decoded", REENCODE)
        idx = np.array([max([k for k in keep if k <= j] or keep[:1]) for j in idx], dtype=np.int64)
    frames = np.stack([got[int(j)][0] for j in idx])
    ts = np.array([got[int(j)][1] for j in idx], dtype=np.float64)
    return frames, idx, ts, n


class _DecodeFailure(Exception):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix


def _check_length(available: int, wanted_last: int, expected: int | None, estimated: bool) -> None:
    """A file that ends well before its header says is truncated: refuse it rather than pad a clip
    with copies of its last frame (an estimated count, from duration x fps, may be a little high)."""
    if expected is None or available > wanted_last or available >= expected:
        return
    slack = max(2, int(0.1 * expected)) if estimated else 1
    if available < expected - slack:
        raise _DecodeFailure(f"is truncated or damaged: it decodes to {available} frames but its header lists "
                             f"{expected}", "get the file again, or " + REENCODE)


def decode_frames(path: str, indices: np.ndarray, backend: Backend = "auto",
                  size: tuple[int, int] | None = None, expected: int | None = None,
                  estimated: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Decode ``indices`` in-process: ``(frames, indices, timestamps_s, backend_used)``.

    ``auto`` tries decord and falls back to PyAV when decord is missing or fails. ``expected`` (the
    header's frame count) lets a truncated file be refused. Raises :class:`_DecodeFailure` (turned
    into an :class:`InputError` by the caller) when neither decodes.
    """
    indices = np.asarray(indices, dtype=np.int64)
    errors = []
    order = ["decord", "pyav"] if backend == "auto" else [backend]
    for name in order:
        try:
            fn = _decode_decord if name == "decord" else _decode_pyav
            frames, idx, ts, available = fn(path, indices, size)
            _check_length(available, int(indices.max()), expected, estimated)
        except _DecodeFailure as e:
            errors.append(e)
            continue
        except ImportError as e:
            errors.append(_DecodeFailure(f"{name} is not installed ({e})", "pip install 'maskworks[seqav]'"))
            continue
        except Exception as e:  # noqa: BLE001 - decord and FFmpeg raise many types for damaged files
            errors.append(_DecodeFailure(f"could not be decoded by {name} ({_short(e, path)})", REENCODE))
            continue
        if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
            errors.append(_DecodeFailure(f"{name} returned frames of shape {list(frames.shape)}", REENCODE))
            continue
        return np.ascontiguousarray(frames, dtype=np.uint8), idx.astype(np.int64), ts, name
    raise errors[-1] if len(errors) == 1 or backend != "auto" else _DecodeFailure(
        "; ".join(e.problem for e in errors), errors[-1].fix)


# -- the helper process --------------------------------------------------------------------------
class _HelperCrash(Exception):
    """The helper process died while decoding (decord aborts the process on some damaged files)."""


class _Helper:
    """One decoding process per parent process, started on first use and restarted after a kill.

    Requests are one JSON line; replies are one JSON line followed by the raw frame bytes.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.owner = -1

    def _start(self) -> subprocess.Popen:
        if self.proc is not None and self.owner == os.getpid() and self.proc.poll() is None:
            return self.proc
        if self.proc is not None and self.owner == os.getpid():
            self.kill()
        # after a fork the inherited pipes belong to the parent's helper: leave them alone
        self.proc = subprocess.Popen([sys.executable, "-m", "maskworks.core.io._video_helper"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     bufsize=0, close_fds=True)
        self.owner = os.getpid()
        return self.proc

    def kill(self) -> None:
        if self.proc is not None and self.owner == os.getpid():
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                pass
        self.proc = None

    def _read(self, fd: int, n: int, deadline: float) -> bytes:
        import time

        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
            b = os.read(fd, min(n - got, 1 << 20))
            if not b:
                raise EOFError
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def _readline(self, fd: int, deadline: float) -> bytes:
        out = bytearray()
        while not out.endswith(b"\n"):
            out += self._read(fd, 1, deadline)
        return bytes(out)

    def request(self, path: Path, req: dict, timeout_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        import time

        with self.lock:
            proc = self._start()
            deadline = time.monotonic() + timeout_s
            try:
                proc.stdin.write((json.dumps(req) + "\n").encode())
                fd = proc.stdout.fileno()
                head = json.loads(self._readline(fd, deadline))
                shape = tuple(head["shape"]) if head["ok"] else (0,)
                data = self._read(fd, math.prod(shape), deadline)
            except TimeoutError:
                self.kill()
                raise InputError(path, f"decoding did not finish within {timeout_s:g} s (the file may be damaged)",
                                 f"{REENCODE}; or raise VideoCaps.timeout_s") from None
            except (EOFError, OSError, ValueError, KeyError):  # the helper died (decord aborts on some files)
                self.kill()
                raise _HelperCrash from None
        if not head["ok"]:
            raise InputError(path, head["problem"], head["fix"])
        frames = np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()  # writable, like decode_frames' arrays
        return frames, np.asarray(head["indices"], np.int64), np.asarray(head["timestamps"], np.float64), head["backend"]


_HELPER = _Helper()


def read_frames(path: str | Path, indices: Sequence[int] | np.ndarray, *, info: VideoInfo | None = None,
                caps: VideoCaps = DEFAULT_CAPS, backend: Backend = "auto", size: tuple[int, int] | None = None,
                isolate: bool = True) -> VideoClip:
    """Decode the frames at ``indices`` (after :func:`probe_video` and the caps check).

    ``size`` ``(H, W)`` resizes while decoding (saves memory on large frames). ``isolate`` decodes in
    the helper process with a ``caps.timeout_s`` limit; ``False`` decodes here (trusted files only).
    Indices past the real end (a header may over-count) repeat the last frame; ``clip.indices`` holds
    the frames actually read.
    """
    path = Path(path)
    info = info or probe_video(path, caps)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("no frame indices given")
    if (idx < 0).any():
        raise ValueError(f"frame indices must be >= 0, got {idx.min()}")
    idx = np.minimum(idx, info.num_frames - 1)
    h, w = (info.height, info.width) if size is None else (int(size[0]), int(size[1]))
    need = idx.size * h * w * 3
    if need > caps.max_decoded_bytes:
        raise InputError(path, f"{idx.size} frames of {w}x{h} need {need / 1024 ** 2:,.0f} MiB, over the cap of "
                         f"{caps.max_decoded_bytes / 1024 ** 2:,.0f} MiB", "ask for fewer frames or a smaller size")
    if isolate:
        req = {"path": str(path), "indices": idx.tolist(), "backend": backend, "size": None if size is None else [h, w],
               "expected": info.num_frames, "estimated": info.frames_estimated}
        try:
            frames, got, ts, used = _HELPER.request(path, req, caps.timeout_s)
        except _HelperCrash:
            if backend != "auto":
                raise InputError(path, f"the {backend} decoder crashed on this file (it is probably damaged)",
                                 REENCODE) from None
            try:  # decord aborted the helper: give PyAV its own try in a fresh one
                frames, got, ts, used = _HELPER.request(path, req | {"backend": "pyav"}, caps.timeout_s)
            except _HelperCrash:
                raise InputError(path, "the video decoders crashed on this file (it is probably damaged)",
                                 REENCODE) from None
    else:
        try:
            frames, got, ts, used = decode_frames(str(path), idx, backend, None if size is None else (h, w),
                                                  info.num_frames, info.frames_estimated)
        except _DecodeFailure as e:
            raise InputError(path, e.problem, e.fix) from None
    return VideoClip(frames, got, ts, info, used)


def read_clip(path: str | Path, num_frames: int = 16, interval: int = 4, mode: SamplingMode = "strided",
              start: int | Literal["center", "random"] = "center", rng: np.random.Generator | None = None, *,
              caps: VideoCaps = DEFAULT_CAPS, backend: Backend = "auto", size: tuple[int, int] | None = None,
              isolate: bool = True) -> VideoClip:
    """Probe, sample one clip's indices (:func:`sample_indices`) and decode them (:func:`read_frames`)."""
    info = probe_video(path, caps)
    idx = sample_indices(info.num_frames, num_frames, interval, mode, start, rng)
    return read_frames(path, idx, info=info, caps=caps, backend=backend, size=size, isolate=isolate)


def frame_timestamps(info: VideoInfo, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Nominal presentation times (seconds) of frame numbers from the header's frame rate."""
    return np.asarray(indices, dtype=np.float64) / info.fps


from maskworks.core.io.video_write import write_video  # noqa: E402  (re-exported: one import for readers and writers)

__all__ = ["write_video", "VIDEO_SUFFIXES", "VideoCaps", "DEFAULT_CAPS", "VideoInfo", "VideoClip", "probe_video", "sample_indices",
           "read_frames", "read_clip", "decode_frames", "frame_timestamps"]
