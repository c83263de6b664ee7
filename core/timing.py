"""Timing for benchmarks: peers run alternately in one process so machine noise hits both."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_alternating(steps: dict[str, Callable[[int], None]], n: int, warmup: int,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Median seconds per call of each ``steps[name](i)`` over ``n`` timed rounds after ``warmup``.

    Every round calls each step once; the order is reversed on odd rounds so that neither peer
    always runs right after the other (caches, turbo, a neighbour's load)."""
    names = list(steps)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(warmup + n):
        for name in (names if i % 2 == 0 else names[::-1]):
            sync(device)
            t = time.perf_counter()
            steps[name](i)
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
