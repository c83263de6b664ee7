"""The shared audio reader: plain files (soundfile) and video tracks (PyAV) agree, resampling keeps
the pitch and the length, and bad files get one InputError naming the file."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from maskworks.core.io import InputError
from maskworks.core.io.audio import AudioCaps, probe_audio, read_audio, resample
from maskworks.core.io.video import write_video

SR = 22050


def tone(freq: float, seconds: float = 2.0, rate: int = SR) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(spec.argmax() * rate / len(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    stereo = np.stack([tone(440), tone(660)])  # left 440 Hz, right 660 Hz
    sf.write(d / "stereo.wav", stereo.T, SR)
    sf.write(d / "stereo.flac", stereo.T, SR)
    sf.write(d / "empty.wav", np.zeros((0, 1), np.float32), SR)
    bad = tone(440)
    bad[100] = np.nan
    sf.write(d / "nan.wav", bad, SR, subtype="FLOAT")
    frames = np.zeros((40, 48, 64, 3), np.uint8)
    write_video(d / "talk.mp4", frames, 20, audio=(stereo, SR))
    write_video(d / "talk.avi", frames, 20, audio=(stereo, SR))
    write_video(d / "silent.mp4", frames, 20)
    import av

    with av.open(str(d / "tone.mp3"), "w") as out:
        s = out.add_stream("libmp3lame", rate=SR)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone(440)[None], format="fltp", layout="mono")
        frame.sample_rate = SR
        for p in s.encode(frame):
            out.mux(p)
        for p in s.encode():
            out.mux(p)
    (d / "random.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    return d


@pytest.mark.parametrize("name", ["stereo.wav", "stereo.flac", "talk.mp4", "talk.avi"])
def test_channels_rate_and_pitch(files, name):
    a = read_audio(files / name, mono=False)
    assert a.samples.dtype == np.float32 and a.samples.shape[0] == 2 and a.sample_rate == SR
    assert a.info.reader == ("soundfile" if name.startswith("stereo") else "pyav")
    assert peak_hz(a.samples[0], SR) == pytest.approx(440, abs=2)
    assert peak_hz(a.samples[1], SR) == pytest.approx(660, abs=2)
    assert a.duration_s == pytest.approx(2.0, abs=0.15)  # AAC/MP3 add encoder padding


def test_resampling_keeps_pitch_and_length(files):
    a = read_audio(files / "stereo.wav", 16000)
    assert a.sample_rate == 16000 and a.samples.shape == (1, 32000)
    assert peak_hz(a.samples[0], 16000) == pytest.approx(440, abs=2)  # mono = the mix of 440 and 660
    x = tone(1000, 1.0, 48000)[None]
    y = resample(x, 48000, 16000)
    assert y.shape == (1, 16000) and peak_hz(y[0], 16000) == pytest.approx(1000, abs=2)
    assert np.abs(y[0, 1000:-1000]).max() == pytest.approx(0.5, abs=0.02)  # amplitude kept


def test_video_track_matches_the_wav_it_was_made_from(files):
    wav = read_audio(files / "stereo.wav", 16000).samples[0]
    for name in ("talk.mp4", "talk.avi"):
        track = read_audio(files / name, 16000).samples[0]
        n = min(len(wav), len(track))
        lag = int(np.argmax(np.correlate(track[:4000], wav[:3000], mode="valid")))  # encoder delay
        assert lag < 2000
        r = np.corrcoef(track[lag:n], wav[: n - lag])[0, 1]
        assert r > 0.99, (name, r)


def test_mp3_and_segments(files):
    a = read_audio(files / "tone.mp3", 16000)
    assert peak_hz(a.samples[0], 16000) == pytest.approx(440, abs=2)
    seg = read_audio(files / "stereo.wav", start_s=0.5, duration_s=0.25)
    assert seg.samples.shape == (1, int(0.25 * SR))
    full = read_audio(files / "stereo.wav")
    np.testing.assert_allclose(seg.samples, full.samples[:, int(0.5 * SR): int(0.5 * SR) + seg.samples.shape[1]])
    seg_v = read_audio(files / "talk.mp4", start_s=0.5, duration_s=0.25)
    assert seg_v.samples.shape == (1, int(0.25 * SR))


@pytest.mark.parametrize("name, problem", [
    ("silent.mp4", "video without an audio track"),
    ("random.mp3", "not a readable"),
    ("empty.wav", "no audio samples"),
    ("nan.wav", "NaN"),
    ("missing.wav", "not found"),
])
def test_bad_audio_gets_one_input_error(files, name, problem):
    with pytest.raises(InputError) as e:
        read_audio(files / name)
    assert problem in e.value.problem and e.value.source == str(files / name) and e.value.fix
    assert str(files) not in e.value.short()


def test_caps_are_checked_on_the_header(files):
    with pytest.raises(InputError, match="over the cap"):
        probe_audio(files / "stereo.wav", AudioCaps(max_duration_s=1.0))
    with pytest.raises(InputError, match="channels, over the cap"):
        read_audio(files / "talk.mp4", caps=AudioCaps(max_channels=1))
    with pytest.raises(InputError, match="MiB of samples"):
        read_audio(files / "stereo.flac", caps=AudioCaps(max_decoded_bytes=1000))
