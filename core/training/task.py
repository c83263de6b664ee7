"""What a recipe trains: a :class:`Task` builds model and data and defines one training step."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from maskworks.core.masking import Mask, MaskingStrategy


@dataclass
class StepContext:
    """Everything a training step may need besides the batch.

    ``generator`` is seeded from (seed, step, micro-step) only, so a resumed run draws the same masks
    as an uninterrupted one, and every data-parallel rank draws the same masks for the whole micro
    batch: :meth:`mask` hands each rank its slice, which makes N processes compute what one would.
    """

    step: int
    max_steps: int
    epoch: int
    generator: torch.Generator
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_batch: int = 1
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def progress(self) -> float:
        return self.step / max(self.max_steps, 1)

    def rand(self, *shape: int) -> Tensor:
        """Uniform noise ``[local_batch, *shape]`` for per-sample augmentation, drawn for the whole
        cross-rank micro batch like :meth:`mask`, so all ranks stay in step."""
        total = self.local_batch * self.world_size
        u = torch.rand(total, *shape, generator=self.generator)
        lo = self.rank * self.local_batch
        return u[lo:lo + self.local_batch]

    def mask(self, strategy: MaskingStrategy, grid: Sequence[int], **inputs: Tensor) -> Mask:
        """A mask for this rank's samples, drawn for the whole cross-rank micro batch."""
        total = self.local_batch * self.world_size
        m = strategy(total, grid, generator=self.generator, **inputs)
        lo = self.rank * self.local_batch
        return m[lo:lo + self.local_batch].to(self.device)


class Task:
    """Base class for recipes. ``cfg`` is the resolved recipe; subclasses read their sections."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build_dataset(self, split: str = "train") -> Dataset:
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> Tensor | dict[str, Tensor]:
        """Return the loss (or a dict with ``loss`` and other scalars to log)."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict]:
        """AdamW groups: no weight decay on biases, norms and learned tokens (as MAE does)."""
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name.endswith("token") else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def model_config(self) -> dict:
        """What is needed to rebuild the model from saved weights (stored beside them)."""
        return {k: self.cfg[k] for k in ("task", "model", "data", "masking", "name") if k in self.cfg}

    def on_fit_end(self, model: nn.Module, run_dir: Path) -> dict:
        """Called once on rank 0 after training (pictures, summaries). Returns things to report."""
        return {}


def load_task(cfg: dict) -> Task:
    """Instantiate ``cfg['task']`` given as ``module.path:ClassName``."""
    spec = cfg.get("task", "")
    if ":" not in spec:
        raise ValueError(f"task {spec!r} must look like 'package.module:ClassName'")
    mod, name = spec.split(":", 1)
    try:
        cls = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load task {spec!r}: {e}. Is the extra for this domain installed?") from None
    return cls(cfg)


def load_trained(weights: str | Path, device: str | torch.device = "cpu") -> tuple[Task, nn.Module]:
    """Rebuild a trained model from its safetensors file (the recipe is stored in its metadata)."""
    from maskworks.core.training.checkpoint import load_weights, weights_metadata

    weights = Path(weights)
    if weights.is_dir():
        run, weights = weights, weights / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"run folder {run} has no model.safetensors: the run has not finished "
                                    f"(`maskworks train RECIPE --out {run} --resume` finishes it)")
    elif not weights.is_file():
        raise FileNotFoundError(f"no weights file {weights}: give the model.safetensors of a `maskworks train` "
                                "run, or its run folder")
    meta = weights_metadata(weights)
    if "task" not in meta:
        raise ValueError(f"{weights} carries no maskworks recipe metadata; was it written by `maskworks train`?")
    task = load_task(meta)
    model = task.build_model()
    load_weights(weights, model)
    return task, model.to(device).eval()
