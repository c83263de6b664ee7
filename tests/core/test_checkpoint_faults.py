"""Faults around checkpoints: a write error keeps the previous checkpoint and says so; a corrupt or truncated
checkpoint gives one clear error; nothing in the package unpickles a user's file."""
from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest
import torch

from maskworks.core.training import checkpoint as ck

ROOT = Path(__file__).resolve().parents[2]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


def test_disk_full_while_checkpointing_keeps_the_previous_one(tmp_path, monkeypatch):
    m = _model()
    opt = torch.optim.AdamW(m.parameters())
    ck.save_checkpoint(tmp_path, 10, m, opt)
    real = ck.save_file

    def full(tensors, path, *a, **k):
        if "optimizer" in str(path):  # the model file was written; the disk fills on the optimizer's
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ck, "save_file", full)
    with torch.no_grad():
        m.weight.add_(1.0)
    with pytest.raises(ck.CheckpointError, match=r"step_00000020.*No space left.*step_00000010 is intact.*--resume"):
        ck.save_checkpoint(tmp_path, 20, m, opt)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_00000010"]  # no half-written folder
    assert ck.latest_checkpoint(tmp_path).name == "step_00000010"
    fresh = _model()
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path), fresh)["step"] == 10
    assert torch.equal(fresh.weight, _model().weight)  # the step-10 weights, not the changed ones


@pytest.mark.parametrize("damage", ["truncate_weights", "corrupt_state", "missing_optimizer", "corrupt_pointer"])
def test_corrupt_checkpoint_is_one_clear_error(tmp_path, damage):
    m = _model()
    path = ck.save_checkpoint(tmp_path, 5, m, torch.optim.AdamW(m.parameters()))
    if damage == "truncate_weights":
        w = path / "model.safetensors"
        w.write_bytes(w.read_bytes()[:40])
    elif damage == "corrupt_state":
        (path / "state.json").write_text("{not json")
    elif damage == "missing_optimizer":
        (path / "optimizer.safetensors").unlink()
    else:
        (path.parent / "latest.json").write_text("garbage")
        with pytest.raises(ck.CheckpointError, match="latest.json is corrupt"):
            ck.latest_checkpoint(tmp_path)
        return
    with pytest.raises(ck.CheckpointError, match=r"step_00000005 cannot be loaded.*earlier step_\* folder"):
        ck.load_checkpoint(path, _model(), torch.optim.AdamW(_model().parameters()))


UNSAFE = {"pickle.load", "pickle.loads", "torch.load", "joblib.load", "dill.load", "cloudpickle.load",
          "pandas.read_pickle", "pd.read_pickle"}


def test_nothing_unpickles_a_users_file():
    """No call of pickle.load(s)/torch.load/read_pickle, no allow_pickle=True, no plain pickle.Unpickler
    (a restricted subclass whose find_class refuses everything but data types is the only way in)."""
    found = []
    for folder in ("core", "domains", "apps"):
        for f in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(f.read_text())
            for n in ast.walk(tree):
                if isinstance(n, ast.Call):
                    name = ast.unparse(n.func)
                    if name in UNSAFE:
                        found.append(f"{f.relative_to(ROOT)}:{n.lineno} {name}")
                    for kw in n.keywords:
                        if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                            found.append(f"{f.relative_to(ROOT)}:{n.lineno} allow_pickle")
                if isinstance(n, ast.ClassDef) and any(ast.unparse(b).endswith("Unpickler") for b in n.bases):
                    methods = {m.name for m in n.body if isinstance(m, ast.FunctionDef)}
                    if "find_class" not in methods:
                        found.append(f"{f.relative_to(ROOT)}:{n.lineno} Unpickler without a restricted find_class")
    assert not found, found
