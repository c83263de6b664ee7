"""The emotion tab's handler, the API function and the CLI agree on the same file; predict reports bad files;
the study runs on an audio-only folder."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from maskworks.apps.cli import main
from maskworks.data import data_path

ROOT = data_path("audiovisual", "ravdess")
CLIP = ROOT / "clips" / "01-01-07-02-02-01-01.mp4"


def test_tab_handler_api_and_cli_give_the_same_json(tmp_path):
    gr = pytest.importorskip("gradio")
    from maskworks.apps.tabs.audiovisual import api_emotion, recognise

    text, bars, rows, spec, faces, files, tab_json = recognise(None, None, None, "clip " + CLIP.name, 3)
    assert main(["predict", "audiovisual/emotion", str(CLIP), "--out", str(tmp_path), "--seed", "3", "--no-progress"]) == 0
    cli_json = json.loads((tmp_path / f"{CLIP.stem}.json").read_text())
    cli_json.pop("input", None), cli_json.pop("outputs", None)  # the driver adds what it read and wrote
    assert cli_json == json.loads(json.dumps(tab_json))
    assert api_emotion(str(CLIP), {"seed": 3}) == tab_json
    for suffix in ("probabilities", "spectrogram", "faces"):
        assert (tmp_path / f"{CLIP.stem}_{suffix}.png").is_file()
    assert tab_json["used"] == "audio+video" and f"**{tab_json['emotion']}**" in text and len(rows) == 4
    assert "Research use only" in tab_json["notice"] and "RAVDESS" in tab_json["notice"]
    # every shipped example is one of the shipped classifier's training clips, and the result says so
    assert any(f"named {CLIP.stem} was in this classifier's training set" in n for n in tab_json["notes"])
    with pytest.raises(gr.Error, match="Upload a video or an audio file"):
        recognise(None, None, None, None, 0)
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    with pytest.raises(gr.Error, match=r"Cannot read clip.mp4: is not a readable video container") as e:
        recognise(str(bad), None, None, None, 0)
    assert str(tmp_path) not in str(e.value)  # no server paths in the app
    from maskworks.core.io import InputError

    with pytest.raises(InputError, match="unknown options"):
        api_emotion(str(CLIP), {"threshold": 1})


def test_an_audio_file_is_read_from_the_voice_alone(tmp_path):
    wav = ROOT / "audio" / "01-01-04-01-01-01-05.wav"
    assert main(["predict", "audiovisual/emotion", str(wav), "--out", str(tmp_path), "--no-progress"]) == 0
    js = json.loads((tmp_path / f"{wav.stem}.json").read_text())
    assert js["kind"] == "audio" and js["used"] == "audio" and js["alone"] == {} and js["face"] is None
    assert js["contributions_to_top_logit"] is None and js["reconstruction"] is None
    assert abs(sum(js["probabilities"].values()) - 1) < 1e-3
    assert any("voice alone" in n for n in js["notes"])
    assert (tmp_path / f"{wav.stem}_spectrogram.png").is_file() and not (tmp_path / f"{wav.stem}_faces.png").exists()


def test_predict_reports_bad_files_and_continues(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(ROOT / "audio" / "01-01-03-01-01-02-05.wav", folder / "ok.wav")
    (folder / "empty.mp4").write_bytes(b"")
    import soundfile as sf

    sf.write(folder / "silent.wav", np.zeros(16000, np.float32), 16000)
    assert main(["predict", "audiovisual/emotion", str(folder), "--out", str(tmp_path / "out"), "--no-progress",
                 "--no-reconstruction"]) == 2
    summary = json.dumps(json.loads((tmp_path / "out" / "summary.json").read_text()))
    assert (tmp_path / "out" / "ok.json").is_file() and "empty" in summary and "is silent" in summary


@pytest.mark.slow
def test_eval_runs_the_study_on_an_audio_only_folder(tmp_path, capsys):
    folder = tmp_path / "speech"
    (folder / "audio").mkdir(parents=True)
    rows = ["audio,emotion,actor"]
    from maskworks.domains.audiovisual.data import read_av_folder

    for e in read_av_folder(ROOT):
        if e.label in ("sad", "fearful"):
            shutil.copy(e.audio, folder / "audio" / e.audio.name)
            rows.append(f"audio/{e.audio.name},{e.label},{e.actor}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "study.json"
    assert main(["eval", "audiovisual/emotion", "--data", str(folder), "--windows", "1", "--random-seeds", "1",
                 "--steps", "60", "--json", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["data"]["recordings"] == 11 and res["data"]["actors"] == ["5"] and res["arms"] == ["audio"]
    assert "actor_not_possible" in res["splits"] and list(res["results"]) == ["clip"]
    r = res["results"]["clip"]
    assert r["pretrained"]["audio"]["n"] == 11 and 0 <= r["pretrained"]["audio"]["uar"] <= 1
    assert "random_init" in r and r["majority"]["n"] == 11
    c = res["classifier"]
    assert c["recordings"] == 11 and "unseen" not in c  # the shipped classifier was trained on these very clips
    text = capsys.readouterr().out
    assert "leave one recording out" in text and "every recording here was in its training set" in text
