"""The study's arithmetic: UAR/WAR by hand, folds, which splits a folder allows, and heads that learn
what the features hold (a class coded in the voice features is found by the voice arm, not the face arm)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from maskworks.domains.audiovisual.data import AVEntry
from maskworks.domains.audiovisual.evaluate import (StudySet, WindowFeatures, folds, recall_scores, run_arms,
                                                    split_plan)
from maskworks.domains.audiovisual.hicmae import PooledFeatures


def entry(i: int, label: str, actor: str = "1") -> AVEntry:
    return AVEntry(f"r{i}", None, None, label, actor, "")


def test_uar_and_war_by_hand():
    # 4 of class 0 (3 right), 1 of class 1 (wrong), 2 of class 2 (both right): WAR 5/7, UAR (3/4 + 0 + 1) / 3
    r = recall_scores([0, 0, 0, 0, 1, 2, 2], [0, 0, 0, 2, 0, 2, 2], ["a", "b", "c"])
    assert r["war"] == pytest.approx(5 / 7) and r["uar"] == pytest.approx((0.75 + 0 + 1) / 3)
    assert r["recall"] == {"a": 0.75, "b": 0.0, "c": 1.0} and r["n"] == 7


def test_folds_and_which_splits_a_folder_allows():
    es = [entry(0, "a", "1"), entry(1, "b", "1"), entry(2, "a", "2"), entry(3, "b", "3")]
    assert folds(es, "actor") == [("actor 1", [2, 3], [0, 1]), ("actor 2", [0, 1, 3], [2]), ("actor 3", [0, 1, 2], [3])]
    assert folds(es, "clip")[1] == ("r1", [0, 2, 3], [1])
    assert set(split_plan(es, "auto")) == {"actor"}
    one = [entry(i, "ab"[i % 2], "5") for i in range(4)]
    plan = split_plan(one, "auto")
    assert set(plan) == {"actor_not_possible", "clip"} and "only 1 actor" in plan["actor_not_possible"]
    assert "not speaker-independent" in plan["clip"]
    assert set(split_plan(es, "both")) == {"actor", "clip"}


def synthetic(n_per_class: int = 4, windows: int = 2, seed: int = 0):
    """Two classes coded in the voice features (and the fusion), pure noise in the face features."""
    g = torch.Generator().manual_seed(seed)
    labels = np.array([0] * n_per_class + [1] * n_per_class)
    entries = [entry(i, "ab"[c], actor=str(i % 3)) for i, c in enumerate(labels)]
    n = len(labels) * windows
    ent = torch.arange(len(labels)).repeat_interleave(windows)
    y = torch.as_tensor(labels)[ent].float()
    d, layers = 6, 2
    audio = torch.randn(n, layers, d, generator=g) * 0.3
    audio[:, :, 0] += 2 * y[:, None] - 1  # the class, in every audio layer
    video = torch.randn(n, layers, d, generator=g)
    feats = PooledFeatures(video, audio, torch.randn(n, d, generator=g), audio[:, -1].clone())
    wf = WindowFeatures(feats, torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool), ent)
    st = StudySet(SimpleNamespace(entries=entries), labels, ["a", "b"], {})
    return wf, st, (d, d, layers, layers)


def test_heads_find_a_class_coded_in_the_voice_and_not_in_the_face():
    wf, st, dims = synthetic()
    res = run_arms(wf, st, "clip", ["audio+video", "audio", "video"], dims, steps=80, seed=0)
    assert res["audio"]["uar"] == 1.0 and res["audio+video"]["uar"] == 1.0 and res["audio"]["n"] == 8
    assert res["video"]["uar"] <= 0.75  # noise: no better than a lucky guess
    # leave-one-out majority: holding out one of a 4/4 set leaves its class in the minority, always wrong
    assert res["majority"]["war"] == 0.0 and res["majority"]["n"] == 8
    by_actor = run_arms(wf, st, "actor", ["audio"], dims, steps=80, seed=0)
    assert [f["fold"] for f in by_actor["audio"]["folds"]] == ["actor 0", "actor 1", "actor 2"]
    assert by_actor["audio"]["war"] == 1.0


def test_an_arm_without_its_modality_is_left_with_no_windows():
    wf, st, dims = synthetic()
    wf.has_video[:] = False  # an audio-only folder
    res = run_arms(wf, st, "clip", ["audio", "video"], dims, steps=50, seed=0)
    assert res["audio"]["n"] == 8 and res["video"]["n"] == 0 and res["video"]["folds"] == []
