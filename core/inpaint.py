"""Training-free in-painters of masked tokens: the baselines every masked-reconstruction figure is set against.

They work on any token grid (2-D images, ``(T, H, W)`` videos, 3-D volumes), so each domain compares its model
with the same two predictors on the same masks.
"""
from __future__ import annotations

from typing import Sequence

import torch
from maskworks.core.masking import Mask, gather_tokens


def grid_positions(grid: Sequence[int]) -> torch.Tensor:
    """Integer coordinates ``[N, len(grid)]`` of the tokens of ``grid`` in patchify (row-major) order."""
    axes = torch.meshgrid(*[torch.arange(int(g)) for g in grid], indexing="ij")
    return torch.stack([a.flatten() for a in axes], -1).float()


def nearest_visible(patches: torch.Tensor, mask: Mask, grid: Sequence[int]) -> torch.Tensor:
    """For each masked token, a copy of the nearest visible token on the grid (Euclidean in grid units;
    ties to the lowest index): ``[B, M, P]`` in ``mask.ids_mask`` order."""
    b, n, _ = patches.shape
    vis = ~mask.flat
    pos = grid_positions(grid).to(patches.device)
    d = torch.cdist(pos, pos)[None].expand(b, n, n).clone()
    d.masked_fill_(~vis[:, None, :], float("inf"))  # only visible sources
    nearest = d.argmin(-1)  # [B, N]
    return gather_tokens(patches, torch.gather(nearest, 1, mask.ids_mask))


def mean_visible(patches: torch.Tensor, mask: Mask) -> torch.Tensor:
    """Every masked token filled with the sample's mean visible value: ``[B, M, P]``."""
    b, _, p = patches.shape
    vis = ~mask.flat
    mean = (patches * vis[..., None]).sum((1, 2)) / (vis.sum(1) * p)
    return mean[:, None, None].expand(b, mask.num_masked, p)


def baseline_predictions(patches: torch.Tensor, mask: Mask, grid: Sequence[int]) -> dict[str, torch.Tensor]:
    """Both in-painters by the names the reports use."""
    return {"mean visible pixel": mean_visible(patches, mask), "nearest visible patch": nearest_visible(patches, mask, grid)}
