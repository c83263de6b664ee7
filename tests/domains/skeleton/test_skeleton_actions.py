"""The action job on every input kind, the recipes' smoke presets into the job, and honest notes."""
import json
import pickle

import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.data import data_path
from maskworks.domains.skeleton.actions import ActionRecognizer
from maskworks.domains.skeleton.layouts import COCO17, NTU25, convert


@pytest.fixture(scope="module")
def rec():
    return ActionRecognizer.load(device="cpu")


def seq(name: str) -> np.ndarray:
    return np.load(data_path("skeleton", "cmu", "seq", f"{name}.npy"))


def test_held_out_sequences_and_the_written_files(rec, tmp_path):
    held = rec.info["held_out"]
    assert len(held) == 4 and rec.info["trained_on"]["sequences"] == 57
    res = rec.predict_file(data_path("skeleton", "cmu", "seq", "07_12.npy"))
    assert res.label == "walk" and res.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    j = json.loads(json.dumps(res.to_json()))
    assert j["sequence"]["frames"] == 66 and j["sequence"]["windows"] == len(j["windows"])
    r = j["reconstruction"]
    assert len(r["masked_parts"]) == 2 and r["error_cm"] > 0 and r["mean_pose_baseline_cm"] > 0
    files = res.write(tmp_path / "walk")
    assert sorted(f.name for f in files) == ["walk.joints.npy", "walk.png"]
    np.testing.assert_allclose(np.load(files[0])[0, :, 0] - np.load(files[0])[0, :1, 0], seq("07_12")[:, 0], atol=1e-4)
    again = rec.predict_file(data_path("skeleton", "cmu", "seq", "07_12.npy")).to_json()
    assert again == res.to_json()  # deterministic


def test_other_layouts_files_and_persons(rec, tmp_path):
    walk = seq("07_12")
    coco = convert(walk, NTU25, COCO17).joints  # 3-D COCO-17: no hands, feet or spine joints of its own
    np.save(tmp_path / "coco.npy", coco)
    res = rec.predict_file(tmp_path / "coco.npy")
    assert res.input_info["layout"] == "coco17" and any("has no left_hand" in n for n in res.notes)

    two = np.stack([walk, walk + np.array([1.5, 0, 0], np.float32)])
    (tmp_path / "two.pkl").write_bytes(pickle.dumps({"annotations": [{"frame_dir": "a", "label": 0, "keypoint": two}]}))
    res2 = rec.predict_file(tmp_path / "two.pkl")
    assert res2.input_info["persons"] == 2 and res2.skeleton.valid.tolist() == [True, True]

    bvh = rec.predict_file(data_path("skeleton", "fixtures", "cmu_02_03_first_frames.bvh"))
    assert bvh.input_info["frames"] == 2 and any("shorter than the model's 32-frame window" in n for n in bvh.notes)

    np.save(tmp_path / "flat.npy", np.random.default_rng(0).normal(size=(40, 17, 2)).astype(np.float32) * 100)
    with pytest.raises(InputError, match="2-D keypoints"):
        rec.predict_file(tmp_path / "flat.npy")
    np.save(tmp_path / "zeros.npy", np.zeros((40, 25, 3), np.float32))
    with pytest.raises(InputError, match="every joint is at"):
        rec.predict_file(tmp_path / "zeros.npy")
    with pytest.raises(InputError, match="unsupported extension"):
        rec.predict_file(tmp_path / "x.txt")


def test_unfamiliar_motion_is_flagged(rec, tmp_path):
    """A skeleton whose joints jump at random every frame: SkeletonMAE cannot rebuild it, so the result says
    the probabilities mean little."""
    rng = np.random.default_rng(0)
    noise = seq("07_12") + rng.normal(scale=0.3, size=seq("07_12").shape).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    res = rec.predict_file(tmp_path / "noise.npy")
    assert res.input_info["reconstruction_sce_all_part_pairs"] > rec.info["typical_sce_p95"]
    assert any("unlike the training data" in n for n in res.notes)
    calm = rec.predict_file(data_path("skeleton", "cmu", "seq", "07_12.npy"))
    assert not any("unlike the training data" in n for n in calm.notes)


@pytest.mark.slow
def test_smoke_recipes_train_into_the_job(tmp_path):
    from maskworks.apps.recipes import find_recipe
    from maskworks.core.training import apply_overrides, fit, load_recipe

    fit(load_recipe(find_recipe("skeleton/skeletonmae"), "smoke"), tmp_path / "mae", progress=False)
    cfg = apply_overrides(load_recipe(find_recipe("skeleton/strl"), "smoke"),
                          {"model.pretrained": str(tmp_path / "mae")})
    summary = fit(cfg, tmp_path / "strl", progress=False)
    assert 0 <= summary["train_window_accuracy"] <= 1
    rec = ActionRecognizer.load(tmp_path / "strl", mae_weights=tmp_path / "mae" / "model.safetensors")
    assert len(rec.label_names) == 10
    res = rec.predict_file(data_path("skeleton", "cmu", "seq", "02_01.npy"))
    assert res.label in rec.label_names and res.reconstruction is not None
    with pytest.raises(InputError, match="not STRL weights"):
        ActionRecognizer.load(tmp_path / "mae" / "model.safetensors")
