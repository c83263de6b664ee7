"""Skeleton readers: pyskl .pkl (restricted unpickler), NTU .skeleton, .npy/.npz, BVH forward kinematics."""
import pickle

import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.data import data_path
from maskworks.domains.skeleton.bvh import forward_kinematics, parse_bvh, read_bvh, read_bvh_skeleton
from maskworks.domains.skeleton.data import read_collection
from maskworks.domains.skeleton.io import NumpyOnlyUnpickler, read_ntu_skeleton, read_pyskl, read_skeleton
from maskworks.domains.skeleton.sequence import MAX_FRAMES


def cmu(name: str) -> np.ndarray:
    return np.load(data_path("skeleton", "cmu", "seq", f"{name}.npy"))


# --------------------------------------------------------------------------------------------- pyskl

@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pyskl_pkl_round_trip(tmp_path, protocol):
    a, b = cmu("02_01"), cmu("06_08")
    anns = [{"frame_dir": "S001C001P003R001A008", "label": 7, "total_frames": len(a), "keypoint": a[None],
             "img_shape": (1080, 1920)},
            {"frame_dir": "cmu_06_08", "label": 8, "total_frames": len(b), "keypoint": b[None],
             "keypoint_score": np.full((1, len(b), 25), 0.5, np.float32)}]
    path = tmp_path / "anno.pkl"
    path.write_bytes(pickle.dumps({"split": {"xsub_train": ["S001C001P003R001A008"], "xsub_val": ["cmu_06_08"]},
                                   "annotations": anns}, protocol=protocol))
    pk = read_pyskl(path)
    assert pk.names == ["S001C001P003R001A008", "cmu_06_08"]
    np.testing.assert_array_equal(pk.samples[0].joints[0], a)
    assert pk.samples[0].label == 7 and pk.samples[0].layout.name == "ntu25"
    assert (pk.samples[1].scores == 0.5).all()
    coll = read_collection(path)
    assert [s.subject for s in coll.samples] == ["003", "06"]
    assert [s.split for s in coll.samples] == ["xsub_train", "xsub_val"]
    np.testing.assert_array_equal(read_skeleton(path, index=1).joints[0], b)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return open, (self.target, "w")  # would create a file when a plain pickle.load runs it


def test_pickle_with_code_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"annotations": [{"keypoint": np.zeros((1, 2, 25, 3)), "x": _Exploit(str(target))}]}))
    with pytest.raises(InputError, match=r"refused to load (builtins|io)\.open"):
        read_pyskl(path)
    assert not target.exists()
    with pytest.raises(pickle.UnpicklingError):
        NumpyOnlyUnpickler(open(path, "rb")).load()


def test_bad_pkl_contents_are_named(tmp_path):
    p = tmp_path / "a.pkl"
    p.write_bytes(pickle.dumps({"annotations": [{"keypoint": np.zeros((1, 10, 20, 3), np.float32)}]}))
    with pytest.raises(InputError, match="20 joints per frame"):
        read_pyskl(p)
    p.write_bytes(pickle.dumps({"split": {}}))
    with pytest.raises(InputError, match="no 'annotations'"):
        read_pyskl(p)
    p.write_bytes(b"\x80\x04garbage")
    with pytest.raises(InputError, match="a.pkl"):
        read_pyskl(p)


# ---------------------------------------------------------------------------------------- NTU text

def write_ntu(path, bodies: dict[str, np.ndarray], frames: int, states: int = 2) -> None:
    """NTU RGB+D .skeleton text: per frame the bodies present (``bodies[id]`` is ``[T, 25, 3]``, NaN = absent)."""
    lines = [str(frames)]
    for f in range(frames):
        present = [(bid, xyz[f]) for bid, xyz in bodies.items() if not np.isnan(xyz[f]).any()]
        lines.append(str(len(present)))
        for bid, xyz in present:
            lines.append(f"{bid} 0 1 1 1 1 0 0.1 0.2 2")
            lines.append("25")
            for x, y, z in xyz:
                lines.append(f"{x:.6f} {y:.6f} {z:.6f} 250.1 200.2 900.3 500.4 0.1 0.2 0.3 0.9 {states}")
    path.write_text("\r\n".join(lines) + "\r\n")


def test_ntu_skeleton_text_keeps_the_two_most_present_bodies(tmp_path):
    a = cmu("02_01")[:40]
    b = a + np.array([1.0, 0, 0], np.float32)
    ghost = np.full_like(a, np.nan)
    ghost[5:8] = a[5:8] + 3  # a body seen in 3 frames only
    b_part = b.copy()
    b_part[:10] = np.nan  # the second person enters at frame 10
    path = tmp_path / "S001C001P001R001A001.skeleton"
    write_ntu(path, {"72057594037931101": a, "72057594037931102": b_part, "72057594037931999": ghost}, 40)
    s = read_ntu_skeleton(path)
    assert s.joints.shape == (2, 40, 25, 3) and s.fps == 30.0
    np.testing.assert_allclose(s.joints[0], a, atol=1e-6)
    np.testing.assert_allclose(s.joints[1, 10:], b[10:], atol=1e-6)
    assert (s.joints[1, :10] == 0).all() and (s.scores[1, :10] == 0).all() and (s.scores[0] == 1).all()
    assert "3 tracked bodies" in s.notes[0]


def test_ntu_skeleton_text_errors(tmp_path):
    p = tmp_path / "bad.skeleton"
    write_ntu(p, {"1": cmu("02_01")[:3]}, 3)
    text = p.read_text().replace("\n25\n", "\n24\n", 1)  # universal newlines: \r\n read as \n
    p.write_text(text)
    with pytest.raises(InputError, match="24 joints per body"):
        read_ntu_skeleton(p)
    p.write_text(f"{MAX_FRAMES + 1}\n0\n")
    with pytest.raises(InputError, match="out of range"):  # refused before reading any frame
        read_ntu_skeleton(p)
    write_ntu(p, {"1": cmu("02_01")[:3]}, 3)
    p.write_text(p.read_text()[:400])
    with pytest.raises(InputError, match="ends early|not 12 numbers"):
        read_ntu_skeleton(p)


# -------------------------------------------------------------------------------------------- numpy

def test_npy_and_npz_shapes_and_errors(tmp_path):
    a = cmu("02_03")
    np.save(tmp_path / "one.npy", a)
    np.save(tmp_path / "two.npy", np.stack([a, a + 1]))
    assert read_skeleton(tmp_path / "one.npy").joints.shape == (1, 43, 25, 3)
    assert read_skeleton(tmp_path / "two.npy").num_persons == 2
    coco = np.random.default_rng(0).normal(size=(10, 17, 2)).astype(np.float32)
    np.savez(tmp_path / "coco.npz", keypoint=coco, keypoint_score=np.ones((10, 17), np.float32), fps=np.array(25.0))
    s = read_skeleton(tmp_path / "coco.npz")
    assert s.layout.name == "coco17" and s.dims == 2 and s.fps == 25.0

    cases = {"20 joints per frame": np.zeros((5, 20, 3), np.float32), "zero frames": np.zeros((0, 25, 3), np.float32),
             "NaN or infinite": np.where(np.arange(75).reshape(1, 25, 3) == 7, np.nan, 0).astype(np.float32),
             "4 values per joint": np.zeros((5, 25, 4), np.float32)}
    for msg, arr in cases.items():
        np.save(tmp_path / "bad.npy", arr)
        with pytest.raises(InputError, match=msg):
            read_skeleton(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="Python objects"):
        read_skeleton(tmp_path / "obj.npy")


def test_a_huge_header_is_refused_before_decoding(tmp_path):
    p = tmp_path / "huge.npy"
    with open(p, "wb") as f:  # a header that promises 10^6 frames, and no data behind it
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1_000_000, 25, 3)})
    with pytest.raises(InputError, match="more than the cap"):
        read_skeleton(p)
    with pytest.raises(InputError, match="unsupported extension"):
        read_skeleton(tmp_path / "x.mp3")


# ---------------------------------------------------------------------------------------------- BVH

def test_bvh_of_a_real_cmu_trial_reproduces_the_shipped_joints():
    """The shipped 02_03.npy was derived from IClone-CMU-Mocap's 002_03.bvh by another script (FK, 25 CC_Base
    bones -> NTU-25, cm -> m, 60 -> 30 fps, pelvis of frame 0 at the origin); the fixture holds that BVH's
    hierarchy and its frames 0 and 2."""
    s = read_bvh_skeleton(data_path("skeleton", "fixtures", "cmu_02_03_first_frames.bvh"))
    assert s.layout.name == "ntu25" and s.fps == pytest.approx(30.0, rel=1e-4)
    got = s.joints[0] - s.joints[0, 0, 0]
    np.testing.assert_allclose(got, cmu("02_03")[:2], atol=1e-5)


BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Chest
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 5 0
    }
  }
  JOINT Leg
  {
    OFFSET 3 0 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    End Site
    {
      OFFSET 0 -8 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
1 2 3 90 0 0 0 0 0 0 0 0
0 0 0 10 20 30 40 50 60 70 80 90
"""


def test_bvh_forward_kinematics_by_hand_and_against_scipy(tmp_path):
    p = tmp_path / "tiny.bvh"
    p.write_text(BVH)
    m = read_bvh(p)
    assert m.names == ["Hips", "Chest", "Chest_end", "Leg", "Leg_end"] and m.parents == [-1, 0, 1, 0, 3]
    assert m.fps == 2.0
    # frame 0 by hand: root at (1, 2, 3) turned 90 degrees about z maps (x, y) -> (-y, x)
    np.testing.assert_allclose(m.positions[0], [[1, 2, 3], [-9, 2, 3], [-14, 2, 3], [1, 5, 3], [9, 5, 3]], atol=1e-5)
    # frame 1 against scipy's intrinsic Euler rotations (upper-case axes), an independent implementation
    from scipy.spatial.transform import Rotation as R

    root = R.from_euler("ZXY", [10, 20, 30], degrees=True)
    chest = root * R.from_euler("ZXY", [40, 50, 60], degrees=True)
    leg = root * R.from_euler("XYZ", [70, 80, 90], degrees=True)
    want = [np.zeros(3), root.apply([0, 10, 0]), root.apply([0, 10, 0]) + chest.apply([0, 5, 0]),
            root.apply([3, 0, 0]), root.apply([3, 0, 0]) + leg.apply([0, -8, 0])]
    np.testing.assert_allclose(m.positions[1], np.array(want), atol=1e-4)


def test_bvh_errors_name_the_problem(tmp_path):
    p = tmp_path / "cut.bvh"
    p.write_text(BVH.rsplit("\n", 2)[0] + "\n")  # the last frame missing
    with pytest.raises(InputError, match="1 complete frames, the header says 2"):
        read_bvh(p)
    p.write_text(BVH)
    with pytest.raises(InputError, match="no bones found for NTU joints"):
        read_bvh_skeleton(p)
    p.write_text("MOTION\nFrames: 1\n")
    with pytest.raises(InputError, match="HIERARCHY"):
        read_bvh(p)
    names, parents, offsets, channels, motion, _ = parse_bvh(BVH)
    assert forward_kinematics(parents, offsets, channels, motion).shape == (2, 5, 3)
