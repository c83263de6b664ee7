"""The video tab's handler and the CLI agree on the same file; eval commands on small folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from maskworks.apps.cli import main
from maskworks.core.io.video import probe_video, read_frames, write_video
from maskworks.data import data_path

CLIPS = data_path("video", "kinetics_ucf", "videos")


def test_tab_handler_and_cli_give_the_same_json(tmp_path):
    gr = pytest.importorskip("gradio")
    from maskworks.apps.tabs.video import reconstruct

    panel, gif, text, rows, files, tab_json = reconstruct(None, "arm_wrestling.mp4", 2, None)
    assert main(["predict", "video/videomae", str(CLIPS / "arm_wrestling.mp4"), "--out", str(tmp_path), "--seed", "2",
                 "--no-progress"]) == 0
    cli_json = json.loads((tmp_path / "arm_wrestling.json").read_text())
    cli_json.pop("input", None), cli_json.pop("outputs", None)  # the driver adds what it read and wrote
    assert cli_json == json.loads(json.dumps(tab_json))
    assert (tmp_path / "arm_wrestling_panel.png").is_file() and (tmp_path / "arm_wrestling.gif").is_file()
    assert f"{tab_json['hidden_tube_mse']['model']:.4f}" in text and len(rows) == len(tab_json["per_step"])
    with pytest.raises(gr.Error, match="Upload a short video"):
        reconstruct(None, None, 0, None)
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    with pytest.raises(gr.Error, match=r"Cannot read clip.mp4: is not a readable video container") as e:
        reconstruct(str(bad), None, 0, None)
    assert str(tmp_path) not in str(e.value)  # no server paths in the app


def test_cli_predict_reports_bad_files_and_continues(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(CLIPS / "rawvideo_part_0.mp4", folder / "ok.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    assert main(["predict", "video/videomae", str(folder), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (tmp_path / "out" / "ok.json").is_file() and "empty" in json.dumps(summary)


def _segments(root, tmp_path):
    """A labelled folder cut from the shipped training clips: 2 labels x 2 videos."""
    (root / "videos").mkdir(parents=True)
    rows = ["file,label"]
    for name, label in (("arm_wrestling.mp4", "arm"), ("cleaning_pool.mp4", "pool")):
        info = probe_video(CLIPS / name)
        half = info.num_frames // 2
        for k in range(2):
            frames = read_frames(CLIPS / name, np.arange(k * half, (k + 1) * half)).frames
            write_video(root / "videos" / f"{label}{k}.mp4", frames, info.fps)
            rows.append(f"{label}{k}.mp4,{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_eval_probe_and_reconstruction_on_small_folders(tmp_path, capsys):
    _segments(tmp_path / "set", tmp_path)
    out = tmp_path / "probe.json"
    assert main(["eval", "video/probe", "--data", str(tmp_path / "set"), "--clips", "1", "--random-seeds", "1",
                 "--json", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["num_videos"] == 4 and res["class_counts"] == {"arm": 2, "pool": 2} and res["majority_acc"] == 0.5
    assert 0 <= res["pretrained"]["nearest_centroid_acc"] <= 1 and "random_init_mean" in res
    out = tmp_path / "rec.json"
    assert main(["eval", "video/reconstruction", "--data", "shipped:video/kinetics_ucf", "--split", "test", "--clips",
                 "1", "--masks", "2", "--json", str(out), "--no-progress"]) == 0
    rec = json.loads(out.read_text())
    assert list(rec["per_video"]) == ["apply_eye_makeup.avi"] and rec["per_video"]["apply_eye_makeup.avi"]["samples"] == 2
    assert rec["model_mse"] > 0 and rec["nearest_visible_mse"] > 0
    assert main(["eval", "video/probe", "--data", str(tmp_path / "nothing")]) == 2
    assert "no videos/ folder" in capsys.readouterr().err
