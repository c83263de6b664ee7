"""Layouts, bone graphs, conversions and normalisation, checked against hand-made cases."""
import math

import numpy as np
import pytest
import torch

from maskworks.core.masking import NTU25_PARTS
from maskworks.domains.skeleton.layouts import COCO17, MEDIAPIPE33, NTU25, convert, get_layout
from maskworks.domains.skeleton.sequence import denormalize, normalize, resample, torso_length, window_starts

PYSKL_NTU_1BASED = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
                    (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 8),
                    (23, 8), (24, 12), (25, 12)]


def _components(layout) -> int:
    parent = list(range(layout.num_joints))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in layout.bones:
        parent[find(a)] = find(b)
    return len({find(i) for i in range(layout.num_joints)})


def test_ntu_edge_index_is_pyskls_graph_both_ways():
    ei = NTU25.edge_index()
    assert ei.dtype == torch.long and ei.shape == (2, 48)
    pairs = {tuple(p) for p in ei.t().tolist()}
    want = {(a - 1, b - 1) for a, b in PYSKL_NTU_1BASED}
    assert pairs == want | {(b, a) for a, b in want}
    assert _components(NTU25) == 1 and _components(COCO17) == 1
    assert NTU25.edge_index(self_loops=True).shape == (2, 48 + 25)
    assert {k: list(v) for k, v in NTU25.parts.items()} == NTU25_PARTS  # the core's part map


def test_mediapipe_bones_are_the_wheels_pose_connections():
    pose = pytest.importorskip("mediapipe.python.solutions.pose")
    assert {tuple(sorted(c)) for c in pose.POSE_CONNECTIONS} == {tuple(sorted(b)) for b in MEDIAPIPE33.bones}
    assert [lm.name.lower() for lm in pose.PoseLandmark] == list(MEDIAPIPE33.joint_names)


def test_every_layout_parts_cover_each_joint_once():
    for lay in (NTU25, COCO17, MEDIAPIPE33):
        assert sorted(j for js in lay.parts.values() for j in js) == list(range(lay.num_joints))
    assert get_layout("COCO-17") is COCO17
    with pytest.raises(ValueError):
        get_layout("h36m")


def test_conversions_pick_corresponding_joints_and_mark_missing_ones():
    rng = np.random.default_rng(0)
    mp = rng.normal(size=(5, 33, 3)).astype(np.float32)
    coco = convert(mp, MEDIAPIPE33, COCO17)
    assert coco.kind == ["exact"] * 17
    assert np.array_equal(coco.joints[:, COCO17.index("left_knee")], mp[:, MEDIAPIPE33.index("left_knee")])
    assert np.array_equal(coco.joints[:, COCO17.index("right_eye")], mp[:, MEDIAPIPE33.index("right_eye")])

    ntu = convert(coco.joints, COCO17, NTU25)
    hips = (coco.joints[:, 11] + coco.joints[:, 12]) / 2
    np.testing.assert_allclose(ntu.joints[:, NTU25.index("base_of_spine")], hips, atol=1e-6)
    assert ntu.kind[NTU25.index("base_of_spine")] == "derived"
    for name in ("left_hand", "right_foot", "left_thumb"):
        i = NTU25.index(name)
        assert ntu.kind[i] == "missing" and (ntu.scores[:, i] == 0).all()
    np.testing.assert_array_equal(ntu.joints[:, NTU25.index("left_hand")], coco.joints[:, COCO17.index("left_wrist")])

    back = convert(ntu.joints, NTU25, COCO17, ntu.scores)  # limbs survive the round trip exactly
    limbs = [COCO17.index(n) for n in COCO17.joint_names[5:]]
    np.testing.assert_array_equal(back.joints[:, limbs], coco.joints[:, limbs])
    assert (back.scores[:, :5] == 0).all()  # NTU has no eyes, ears or nose

    from_mp = convert(mp, MEDIAPIPE33, NTU25)
    assert from_mp.missing == []
    np.testing.assert_array_equal(from_mp.joints[:, NTU25.index("left_thumb")], mp[:, MEDIAPIPE33.index("left_thumb")])
    with pytest.raises(ValueError):
        convert(ntu.joints, NTU25, MEDIAPIPE33)


def _rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], np.float32)


def test_normalize_centres_faces_scales_and_is_invariant_to_placement():
    from maskworks.data import data_path

    seq = np.load(data_path("skeleton", "cmu", "seq", "02_01.npy"))[None]  # [1, T, 25, 3] metres
    n, info = normalize(seq, NTU25)
    np.testing.assert_allclose(n[0, 0, 0], 0, atol=1e-6)  # pelvis at the origin in frame 0
    lh, rh, ls, rs = (NTU25.index(k) for k in ("left_hip", "right_hip", "left_shoulder", "right_shoulder"))
    v = n[0, 0, lh] - n[0, 0, rh] + n[0, 0, ls] - n[0, 0, rs]
    assert v[0] > 0 and abs(v[2]) < 1e-5  # the subject's left along +x
    assert torso_length(n, NTU25) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(denormalize(n, info), seq, atol=1e-5)

    moved = (seq @ _rot_y(73).T) * 1.7 + np.array([3.0, 0.2, -5.0], np.float32)
    n2, _ = normalize(moved, NTU25)
    np.testing.assert_allclose(n2, n, atol=1e-4)


def test_resample_and_windows():
    t = np.arange(61, dtype=np.float32)
    joints = np.broadcast_to(t[None, :, None, None], (1, 61, 25, 3)).copy()  # x = frame index at 60 fps
    out, _ = resample(joints, 60.0, 30.0)
    assert out.shape[1] == 31
    np.testing.assert_allclose(out[0, :, 0, 0], np.arange(31) * 2.0)
    assert window_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert window_starts(20, 32, 16) == [0]
