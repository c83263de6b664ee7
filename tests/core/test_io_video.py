"""The shared video reader: header checks before decoding, clip sampling, decord/PyAV agreement,
and one clear InputError (never a hang, never a padded clip) for damaged files."""
from __future__ import annotations

import av
import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.core.io import video as V
from maskworks.core.io.video import (VideoCaps, probe_video, read_clip, read_frames, sample_indices, write_video)

T, H, W, FPS = 40, 48, 64, 20


def ramp(t: int = T) -> np.ndarray:
    """Frame i is flat grey 6 * i, so a decoded frame's mean tells which frame it is."""
    return np.broadcast_to((6 * np.arange(t, dtype=np.uint8))[:, None, None, None], (t, H, W, 3)).copy()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    sr = 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * sr) / sr)).astype(np.float32)
    out = {suffix: write_video(d / f"ramp{suffix}", ramp(), FPS) for suffix in (".mp4", ".avi", ".webm", ".mkv")}
    out["sound.mp4"] = write_video(d / "sound.mp4", ramp(), FPS, audio=(np.stack([tone, tone]), sr))
    noise = np.random.default_rng(0).integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    data = write_video(d / "noise.mp4", noise, FPS).read_bytes()  # index up front, frames after
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "random.mp4").write_bytes(np.random.default_rng(1).bytes(20_000))
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("not a video\n")
    import soundfile as sf

    sf.write(d / "tone.wav", tone, sr)
    with av.open(str(d / "zero.avi"), "w") as o:  # a video stream declared, no frame written
        s = o.add_stream("mpeg4", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        o.start_encoding()
    out.update({k: d / f"{k}" for k in ("truncated.mp4", "random.mp4", "empty.mp4", "notes.mp4", "tone.wav",
                                        "zero.avi")})
    out["dir"] = d
    return out


def test_probe_reads_the_header(clips):
    info = probe_video(clips[".mp4"])
    assert (info.width, info.height, info.num_frames, info.fps) == (W, H, T, FPS)
    assert info.duration_s == pytest.approx(T / FPS)
    assert not info.has_audio and not info.frames_estimated and info.codec == "h264"
    assert probe_video(clips["sound.mp4"]).has_audio
    mkv = probe_video(clips[".mkv"])  # Matroska stores no frame count: estimated from duration x fps
    assert mkv.frames_estimated and T <= mkv.num_frames <= T + 3


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm", ".mkv"])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("isolate", [True, False])
def test_frames_and_times_are_the_ones_asked_for(clips, suffix, backend, isolate):
    idx = [0, 5, 17, 39]
    clip = read_frames(clips[suffix], idx, backend=backend, isolate=isolate)
    assert clip.backend == backend and clip.frames.dtype == np.uint8 and clip.frames.shape == (4, H, W, 3)
    np.testing.assert_array_equal(clip.indices, idx)
    np.testing.assert_allclose(clip.frames.reshape(4, -1).mean(1), 6 * np.array(idx), atol=2)
    np.testing.assert_allclose(clip.timestamps_s, np.array(idx) / FPS, atol=1e-3)


def test_decord_and_pyav_agree_and_auto_uses_decord(clips):
    idx = sample_indices(T, 8, 4)
    a = read_frames(clips[".mp4"], idx, backend="decord")
    b = read_frames(clips[".mp4"], idx, backend="pyav")
    c = read_frames(clips[".mp4"], idx)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert c.backend == "decord"


def test_resize_while_decoding(clips):
    clip = read_clip(clips[".mp4"], 4, 2, size=(24, 32))
    assert clip.frames.shape == (4, 24, 32, 3)


def test_an_over_counted_header_repeats_the_real_last_frame(clips):
    info = probe_video(clips[".mkv"])
    clip = read_frames(clips[".mkv"], [info.num_frames - 1])
    assert clip.indices[0] == T - 1


def test_strided_sampling():
    np.testing.assert_array_equal(sample_indices(300, 16, 4), 118 + 4 * np.arange(16))  # centred window
    np.testing.assert_array_equal(sample_indices(300, 16, 4, start=0), 4 * np.arange(16))
    short = sample_indices(30, 16, 4)  # shorter than the 64-frame window: the last frame repeats
    np.testing.assert_array_equal(short, np.minimum(4 * np.arange(16), 29))
    rng = np.random.default_rng(0)
    starts = {int(sample_indices(100, 16, 4, start="random", rng=rng)[0]) for _ in range(200)}
    assert min(starts) == 0 and max(starts) == 36  # every start from 0 to 100 - 64
    with pytest.raises(ValueError):
        sample_indices(0)
    with pytest.raises(ValueError):
        sample_indices(10, mode="sideways")


def test_uniform_sampling_takes_segment_centres():
    np.testing.assert_array_equal(sample_indices(100, 4, mode="uniform"), [12, 37, 62, 87])
    np.testing.assert_array_equal(sample_indices(3, 4, mode="uniform"), [0, 1, 1, 2])


@pytest.mark.parametrize("name, problem", [
    ("empty.mp4", "empty"),
    ("random.mp4", "not a readable video"),
    ("notes.mp4", "not a readable video"),
    ("tone.wav", "audio-only"),
    ("zero.avi", "no frames"),
    ("truncated.mp4", "truncated"),
    ("missing.mp4", "not found"),
    ("dir", "not a file"),
])
def test_bad_files_get_one_input_error_naming_the_file(clips, name, problem):
    path = clips["dir"] / name if name != "dir" else clips["dir"]
    with pytest.raises(InputError) as e:
        read_clip(path)
    assert problem in e.value.problem and e.value.source == str(path) and e.value.fix
    assert name.split(".")[0] in e.value.short() or name == "dir"
    assert str(clips["dir"]) not in e.value.short()  # FFmpeg's messages name the file: its folder is removed


@pytest.mark.parametrize("caps, problem", [
    (VideoCaps(max_side=32), "over the cap of 32 px"),
    (VideoCaps(max_frames=30), "40 frames, over the cap"),
    (VideoCaps(max_duration_s=1.0), "over the cap"),
    (VideoCaps(max_file_bytes=100), "over the cap"),
    (VideoCaps(max_decoded_bytes=H * W * 3 * 15), "16 frames"),
])
def test_caps_are_checked_before_anything_is_decoded(clips, caps, problem, monkeypatch):
    def no_decoding(*a, **k):
        raise AssertionError("decoded despite the cap")

    monkeypatch.setattr(V, "decode_frames", no_decoding)
    monkeypatch.setattr(V._HELPER, "request", no_decoding)
    with pytest.raises(InputError, match=problem):
        read_clip(clips[".mp4"], caps=caps)


def test_a_hanging_decoder_is_killed_and_the_next_read_works(clips):
    req = {"path": str(clips[".mp4"]), "indices": [0], "backend": "pyav", "size": None, "_test_sleep_s": 30}
    with pytest.raises(InputError, match="did not finish within 0.5 s"):
        V._HELPER.request(clips[".mp4"], req, timeout_s=0.5)
    assert V._HELPER.proc is None  # killed
    assert read_frames(clips[".mp4"], [3]).indices.tolist() == [3]


def test_write_video_refuses_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 5, 4, 3), np.uint8), 10)
