"""Training used by every recipe: YAML configs, safetensors checkpoints, a resumable Fabric loop."""
from maskworks.core.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from maskworks.core.training.config import apply_overrides, load_recipe, save_config
from maskworks.core.training.loop import fit
from maskworks.core.training.task import StepContext, Task, load_task

__all__ = [
    "load_recipe", "apply_overrides", "save_config", "latest_checkpoint", "load_checkpoint", "load_weights",
    "save_checkpoint", "save_weights", "StepContext", "Task", "load_task", "fit",
]
