"""The action study: folds hold subjects / sequences out, and the whole pipeline runs on a tiny split."""
import csv
import json
import shutil

import numpy as np
import pytest

from maskworks.data import data_path
from maskworks.domains.skeleton.data import WindowDataset, read_collection
from maskworks.domains.skeleton.study import make_folds, sequence_predictions


def test_subject_folds_hold_each_subject_out_once():
    coll = read_collection("shipped:skeleton/cmu")
    folds, _ = make_folds(coll, "subject", seed=0)
    assert [f.name for f in folds] == ["subject 2", "subject 5", "subject 6", "subject 7"]
    tested = []
    for f in folds:
        test_subjects = {coll.samples[i].subject for i in f.test}
        assert len(test_subjects) == 1 and not test_subjects & {coll.samples[i].subject for i in f.train}
        tested += f.test
    assert sorted(tested) == list(range(len(coll.samples)))


def test_trial_folds_are_stratified_and_drop_rare_classes():
    coll = read_collection("shipped:skeleton/cmu")  # walk 2, dance 2, basketball 2, one each of three more
    folds, notes = make_folds(coll, "trial", seed=0, k=2, min_sequences=2)
    assert "jump" in notes[0] and "run_jog" in notes[0] and "swordplay" in notes[0]
    for f in folds:
        assert not set(f.train) & set(f.test)
        assert sorted(coll.samples[i].label for i in f.test) == [0, 7, 8]  # one of each kept class per fold


def test_windows_of_a_sequence_vote_together():
    logp = np.log(np.array([[0.6, 0.4], [0.2, 0.8], [0.9, 0.1], [0.7, 0.3]]))
    seqs = np.array([3, 3, 5, 5])
    assert sequence_predictions(logp, seqs) == {3: 1, 5: 0}  # mean log-prob: seq 3 -> class 1
    coll = read_collection("shipped:skeleton/cmu")
    ds = WindowDataset(coll, [1], frames=32, stride=8)  # 02_03: 43 frames -> windows at 0, 8, 11
    assert [it[1] for it in ds.items] == [0, 8, 11]
    assert ds[0]["x"].shape == (2, 8, 25, 12) and ds[0]["valid"].tolist() == [True, False]


def _split_folder(tmp_path):
    src = data_path("skeleton", "cmu")
    shutil.copytree(src, tmp_path / "cmu")
    rows = list(csv.DictReader(open(src / "labels.csv")))
    test = {"seq/07_12.npy", "seq/06_09.npy", "seq/05_16.npy"}
    with open(tmp_path / "cmu" / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) + ["split"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "split": "test" if r["file"] in test else "train"})
    return tmp_path / "cmu"


@pytest.mark.slow
def test_eval_command_runs_the_whole_study_on_a_split(tmp_path, capsys):
    from maskworks.apps.cli import main

    data = _split_folder(tmp_path)
    out = tmp_path / "study"
    code = main(["eval", "skeleton/actions", "--data", str(data), "--protocol", "split", "--seeds", "1",
                 "--pretrain-steps", "2", "--finetune-steps", "2", "--batch-size", "4", "--hidden", "8",
                 "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["sequences_tested"] == 3 and res["data"]["frames_tested"] == 66 + 75 + 132
    assert set(res["results"]) == {"majority", "handcrafted", "probe_random", "probe_skeletonmae", "finetune_random",
                                   "finetune_skeletonmae"}
    assert res["results"]["majority"]["accuracy_mean"] == pytest.approx(1 / 3)  # train majority walk/dance/basketball tie
    assert (out / "results.png").is_file() and "linear probe, SkeletonMAE encoder" in capsys.readouterr().out
