"""Which device models run on: one rule for every job, tab and command."""
from __future__ import annotations

import os

import torch

ENV = "MASKWORKS_DEVICE"  # set by ``maskworks demo --device``; any job's loader follows it


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else ``$MASKWORKS_DEVICE``, else the GPU when there is one, else the CPU.
    Asking for CUDA where there is none is an error that says so (not a crash deep inside a model)."""
    chosen = device or os.environ.get(ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(chosen)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {chosen!r} asked for, but this machine has no CUDA GPU (torch {torch.__version__}); "
                         "use --device cpu")
    return dev
