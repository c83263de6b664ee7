"""What a recipe trains: a :class:`Task` builds model and data and defines one training step."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from maskworks.core.masking import Mask, MaskingStrategy
from maskworks.core.training.config import RecipeError, check_settings
from torch import Tensor, nn
from torch.utils.data import Dataset


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
    model: nn.Module | None = None  # the trained module itself, unwrapped from Fabric/DDP (its attributes, masking)

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


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a Fabric/DDP wrapper (itself when not wrapped)."""
    return model.module if hasattr(model, "module") else model


#: recipe sections every task may have; a task adds its own in :attr:`Task.SECTIONS`
CORE_SECTIONS = ("name", "task", "recipe", "model", "data", "masking", "augment", "trainer")


class Task:
    """Base class for recipes. ``cfg`` is the resolved recipe; subclasses read their sections.

    ``SECTIONS`` names the task's own recipe sections with their default settings (e.g. DetectorTask's
    ``loss: {reg_weight: 1.0}``): :meth:`section` returns them with the recipe's values, type-checked
    against the defaults, and ``maskworks train`` refuses unknown sections and keys before a run folder
    is made. A section given as ``None`` is free-form (its task checks it).
    """

    SECTIONS: ClassVar[dict[str, dict[str, Any] | None]] = {}

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg

    def section(self, name: str) -> dict[str, Any]:
        """The task's own section ``name``: its defaults overridden by the recipe, type-checked."""
        defaults = self.SECTIONS[name]
        given = self.cfg.get(name) or {}
        return dict(given) if defaults is None else check_settings(name, given, defaults)

    def check_recipe(self) -> None:
        """Refuse sections that no one reads and bad settings in the task's own sections."""
        known = set(CORE_SECTIONS) | set(self.SECTIONS)
        unknown = set(self.cfg) - known
        if unknown:
            raise RecipeError(f"unknown recipe sections {sorted(unknown)} for {type(self).__name__}; "
                              f"known: {sorted(known)}")
        for name in self.SECTIONS:
            self.section(name)

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


#: Task classes that moved, old ``module:Class`` -> new. Weights store their task's path in their header
#: (``load_trained``), so a path once shipped must keep loading after the code is reorganised.
MOVED_TASKS: dict[str, str] = {
    "maskworks.domains.medical.anomaly:MemMCTask": "maskworks.domains.medical.anomaly.memmc_mae:MemMCTask",
    "maskworks.domains.medical.pretrain:SparKCXRTask": "maskworks.domains.medical.spark.pretrain:SparKCXRTask",
    "maskworks.domains.medical.pretrain:SparKCTTask": "maskworks.domains.medical.spark.pretrain:SparKCTTask",
    "maskworks.domains.medical.pretrain:MoCoCXRTask": "maskworks.domains.medical.spark.pretrain:MoCoCXRTask",
    "maskworks.domains.lidar.detector:DetectorTask": "maskworks.domains.lidar.detection.task:DetectorTask",
}


def load_task(cfg: dict) -> Task:
    """Instantiate ``cfg['task']`` given as ``module.path:ClassName`` (a path in :data:`MOVED_TASKS` is
    followed to where the class lives now)."""
    spec = MOVED_TASKS.get(cfg.get("task", ""), cfg.get("task", ""))
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
