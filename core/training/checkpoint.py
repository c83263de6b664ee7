"""Checkpoints as safetensors plus JSON, written atomically; loading never unpickles.

Layout of a run folder::

    checkpoints/step_00000120/{model,optimizer}.safetensors + state.json
    checkpoints/latest.json      -> {"step": 120, "path": "step_00000120"}

A checkpoint folder is written under a temporary name and renamed when complete, then
``latest.json`` is replaced atomically: a run killed at any instant leaves a usable checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class CheckpointError(OSError):
    """A checkpoint could not be written or read; the message names it, says what is intact and what to do."""


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    with open(tmp) as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_weights(model: nn.Module | dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Model weights to one safetensors file (atomic), with JSON metadata in its header."""
    path = Path(path)
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"maskworks": json.dumps(metadata or {}, default=str)})
    os.chmod(tmp, 0o644)  # weights are meant to be shared; the temporary name came out private
    os.replace(tmp, path)


def load_weights(path: str | Path, model: nn.Module | None = None, strict: bool = True) -> dict[str, torch.Tensor]:
    """Read safetensors weights (never pickle); load them into ``model`` when given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        sd = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{path} is not a readable safetensors file ({e}); re-export it with maskworks") from None
    if model is not None:
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if strict and (missing or unexpected):
            raise ValueError(f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return sd


def weights_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("maskworks", "{}"))


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for key, v in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    extra: dict | None = None, keep: int = 2) -> Path:
    """Write ``checkpoints/step_XXXXXXXX`` atomically, point ``latest.json`` at it, prune old ones."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".tmp_{name}_{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        state = {"step": step, **(extra or {})}
        if optimizer is not None:
            tensors, meta = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            state["optimizer"] = meta
        (tmp / "state.json").write_text(json.dumps(state, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _atomic_write_text(ckpt_root / "latest.json", json.dumps({"step": step, "path": name}))
    except OSError as e:  # disk full, quota, permissions: keep what was there, say so
        shutil.rmtree(tmp, ignore_errors=True)
        prev = latest_checkpoint(run_dir)
        kept = f"the previous checkpoint {prev.name} is intact" if prev is not None else "no earlier checkpoint exists"
        raise CheckpointError(f"could not write checkpoint {name} in {ckpt_root} ({e.strerror or e}); {kept}. "
                              f"Free disk space (or fix the folder's permissions) and continue with --resume") from e
    done = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The last complete checkpoint of a run, or None."""
    pointer = Path(run_dir) / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    try:
        path = pointer.parent / json.loads(pointer.read_text())["path"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{pointer} is corrupt ({e}); point it at a step_* folder "
                              '({"step": N, "path": "step_0000000N"}) or delete it to start again') from None
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore model (and optimizer) from a checkpoint folder; returns its state.json."""
    path = Path(path)
    fix = (f"delete {path} and point {path.parent / 'latest.json'} at an earlier step_* folder, or start the run "
           "again without --resume")
    try:
        state = json.loads((path / "state.json").read_text())
        load_weights(path / "model.safetensors", model)
        if optimizer is not None and "optimizer" in state:
            opt = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), state["optimizer"])
            optimizer.load_state_dict(opt)
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # truncated, corrupt, missing, or another model's
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({type(e).__name__}: {str(e)[:200]}); {fix}") from None
    return state
