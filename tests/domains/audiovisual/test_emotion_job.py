"""The emotion job on what users bring: a clip with face and voice, a clip without sound, a video whose face
cannot be found, an audio-only container, and garbage."""
from __future__ import annotations

import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.core.io.audio import read_audio
from maskworks.core.io.video import probe_video, read_frames, write_video
from maskworks.data import data_path

ROOT = data_path("audiovisual", "ravdess")
CLIP = ROOT / "clips" / "01-01-04-02-02-01-05.mp4"


@pytest.fixture(scope="module")
def job():
    pytest.importorskip("mediapipe")
    from maskworks.domains.audiovisual.emotion import EmotionRecognizer

    return EmotionRecognizer.load(pretrained=False, device="cpu")


def test_a_clip_with_face_and_voice_uses_both_and_explains_itself(job):
    r = job.predict_file(CLIP, windows=2)
    js = r.to_json()
    assert js["used"] == "audio+video" and js["kind"] == "video" and len(js["windows"]) == 2
    assert set(js["probabilities"]) == set(job.classes) and abs(sum(js["probabilities"].values()) - 1) < 1e-3
    assert set(js["alone"]) == {"voice alone", "face alone"} and js["face"]["found"]
    assert set(js["contributions_to_top_logit"]) == {"face", "voice", "face, fused with voice", "voice, fused with face"}
    assert js["not_in_training"] == ["calm", "angry"]
    assert js["windows"][0]["start_s"] == 0.0 and js["windows"][1]["end_s"] == pytest.approx(js["media"]["duration_s"], abs=0.01)


def test_missing_modalities_are_left_out_and_said(job, tmp_path):
    info = probe_video(CLIP)
    frames = read_frames(CLIP, np.arange(info.num_frames)).frames
    mute = tmp_path / "mute.mp4"
    write_video(mute, frames, info.fps)
    r = job.predict_file(mute)
    assert r.used == "video" and any("no sound track" in n for n in r.notes)
    # the face path equals the face-only head on the same frames (the voice is not faked)
    full = job.predict_file(CLIP)
    assert r.to_json()["probabilities"] != full.to_json()["probabilities"]
    audio = read_audio(CLIP, 16000)
    blank = tmp_path / "blank.mp4"
    write_video(blank, np.zeros_like(frames), info.fps, audio=(audio.samples, 16000))
    r = job.predict_file(blank)
    assert r.used == "audio" and r.to_json()["face"] == {"found": False}
    assert any("No face was found" in n for n in r.notes)
    # the voice answer is the one for that very sound as an audio file, cut to the video's length so the
    # windows fall at the same times (the shipped wav is not that sound: the clip's AAC track was encoded
    # apart, and re-encoding it moves this small model's probabilities by up to 0.1)
    import soundfile as sf

    track = read_audio(blank, 16000).samples.reshape(-1)
    sf.write(str(tmp_path / "track.wav"), track[:round(probe_video(blank).duration_s * 16000)], 16000)
    wav = job.predict_file(tmp_path / "track.wav", windows=len(r.windows))
    assert [w["start_s"] for w in wav.windows] == [w["start_s"] for w in r.windows]
    assert np.allclose(r.probabilities, wav.probabilities, atol=0.01)


def test_garbage_and_empty_recordings_are_refused(job, tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="not a readable"):
        job.predict_file(bad)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(InputError, match="neither audio nor video"):
        job.predict_file(txt)
    import soundfile as sf

    sf.write(tmp_path / "quiet.wav", np.zeros(8000, np.float32), 16000)
    with pytest.raises(InputError, match="is silent"):
        job.predict_file(tmp_path / "quiet.wav")
    black = tmp_path / "black.mp4"
    write_video(black, np.zeros((10, 64, 64, 3), np.uint8), 25.0)
    with pytest.raises(InputError, match=r"neither a face the detector finds nor sound \(no face found; no sound track\)"):
        job.predict_file(black)
    with pytest.raises(InputError, match="windows=0"):
        job.predict_file(CLIP, windows=0)


def test_an_mp4_holding_only_sound_is_read_as_audio(job, tmp_path):
    """A microphone recording saved as .mp4/.webm has no picture track: it is an audio file."""
    import av

    samples = read_audio(ROOT / "audio" / "01-01-03-01-01-02-05.wav", 16000).samples
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="mono")
        frame.sample_rate = 16000
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
        for chunk in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    r = job.predict_file(path)
    assert r.kind == "audio" and r.used == "audio" and r.to_json()["media"]["audio"]["reader"] == "pyav"
