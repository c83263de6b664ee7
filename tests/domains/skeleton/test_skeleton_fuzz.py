"""Malformed skeleton files through the action job (what the tab, the CLI and the API call): each must be a
clear InputError naming the file, or a result; never another exception. ``skeleton_cases`` can join the
project corpus (``tests/fuzz/corpus.py::GENERATORS``) as it is."""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.data import data_path


def _mutate(name: str, data: bytes, rng: np.random.Generator) -> Iterator[tuple[str, bytes]]:
    n = len(data)
    for frac in (0.0, 0.1, 0.5, 0.9):
        yield f"{name}: cut at {frac:.0%}", data[: int(n * frac)]
    for k in range(3):
        b = bytearray(data)
        for i in rng.integers(0, n, size=8):
            b[i] ^= 1 << int(rng.integers(0, 8))
        yield f"{name}: 8 flipped bits ({k})", bytes(b)
    yield f"{name}: random bytes", rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def skeleton_cases(root: Path) -> Iterator[tuple[Path, str, str]]:
    """(path, expect, what) with expect "ok", "error" or "any" (mutations may still be valid)."""
    rng = np.random.default_rng(20261204)
    root.mkdir(parents=True, exist_ok=True)
    walk = np.load(data_path("skeleton", "cmu", "seq", "07_12.npy"))
    valid = {
        "walk.npy": _npy(walk),
        "walk.pkl": pickle.dumps({"split": {"train": ["a"]}, "annotations": [{"frame_dir": "a", "label": 0, "keypoint": walk[None]}]}),
        "walk.bvh": data_path("skeleton", "fixtures", "cmu_02_03_first_frames.bvh").read_bytes(),
    }
    buf = io.BytesIO()
    np.savez(buf, keypoint=walk[None], keypoint_score=np.ones((1, len(walk), 25), np.float32))
    valid["walk.npz"] = buf.getvalue()
    lines = [str(len(walk))]
    for f in walk:
        lines += ["1", "7205759403 0 1 1 1 1 0 0.1 0.2 2", "25"] + [f"{x} {y} {z} 1 2 3 4 0 0 0 1 2" for x, y, z in f]
    valid["walk.skeleton"] = "\n".join(lines).encode()
    for name, data in valid.items():
        (root / name).write_bytes(data)
        yield root / name, "ok", f"{name}: valid"
        stem, ext = name.split(".")
        for k, (what, bad) in enumerate(_mutate(name, data, rng)):
            p = root / f"{stem}_m{k}.{ext}"
            p.write_bytes(bad)
            yield p, "error" if what.endswith(("0%", "random bytes")) and "90%" not in what else "any", what
    lying = {
        "inf.npy": _npy(np.full((10, 25, 3), np.inf, np.float32)),
        "int8.npy": _npy(np.ones((10, 25, 3), np.int8)),
        "objects.npy": _npy(np.array([{"a": 1}], dtype=object)),
        "five_d.npy": _npy(np.zeros((1, 1, 10, 25, 3), np.float32)),
        "huge_coords.npy": _npy(np.full((10, 25, 3), 1e9, np.float32)),
        "eight_persons.npy": _npy(np.zeros((8, 10, 25, 3), np.float32)),
        "no_keypoint.pkl": pickle.dumps({"annotations": [{"frame_dir": "a"}]}),
        "keypoint_list.pkl": pickle.dumps({"annotations": [{"keypoint": [[0.0] * 3] * 25}]}),
        "scores_mismatch.pkl": pickle.dumps({"annotations": [{"keypoint": walk[None], "keypoint_score": np.ones((1, 3, 25))}]}),
        "empty_list.pkl": pickle.dumps([]),
        "frames_lie.skeleton": b"99999999\n0\n",
        "bodies_lie.skeleton": b"1\n1000\n",
        "no_motion.bvh": b"HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\nMOTION\nFrames: 0\nFrame Time: 0.1\n",
        "frames_lie.bvh": b"HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\nMOTION\nFrames: 999999999\nFrame Time: 0.1\n0 0 0\n",
        "bad_channel.bvh": b"HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 1 Wrotation\n}\nMOTION\nFrames: 1\nFrame Time: 0.1\n0\n",
        "empty.npz": b"",
    }
    zb = io.BytesIO()
    with zipfile.ZipFile(zb, "w") as z:
        z.writestr("keypoint.npy", _npy(np.zeros((10, 25, 3), np.float32))[:60])  # a member cut short
    lying["cut_member.npz"] = zb.getvalue()
    for name, data in lying.items():
        (root / name).write_bytes(data)
        yield root / name, "error", name


@pytest.mark.slow
def test_every_malformed_skeleton_file_is_a_clear_error_or_a_result(tmp_path):
    from maskworks.domains.skeleton.actions import ActionRecognizer

    rec = ActionRecognizer.load(device="cpu")
    tally = {"ok": 0, "error": 0}
    for path, expect, what in skeleton_cases(tmp_path):
        try:
            res = rec.predict_file(path)
        except InputError as e:
            assert expect != "ok", f"{what}: a valid file was refused: {e}"
            assert path.name in str(e), f"{what}: the error does not name the file: {e}"
            tally["error"] += 1
            continue
        assert expect != "error", f"{what}: garbage gave a result ({res.label})"
        assert np.isfinite(res.probabilities).all()
        tally["ok"] += 1
    assert tally["ok"] >= 5 and tally["error"] >= 30
