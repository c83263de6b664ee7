"""Fixed sin-cos position embeddings in 1-, 2- and 3-D (MAE's ``get_2d_sincos_pos_embed``, generalised)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def sincos_pos_embed_1d(dim: int, pos: Tensor) -> Tensor:
    """``[..., ]`` positions -> ``[..., dim]``: first half sin, second half cos (MAE's convention)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.to(torch.float64)[..., None] * omega
    return torch.cat([torch.sin(out), torch.cos(out)], dim=-1).float()


def sincos_pos_embed(dim: int, grid: Sequence[int], cls_token: bool = False) -> Tensor:
    """``[prod(grid) (+1), dim]`` embedding for a 1-, 2- or 3-D grid, flattened in row-major order.

    The dim is split equally between axes, the last axis first: for 2-D this reproduces MAE (and
    Hugging Face ViTMAE), whose first half encodes the column and the second half the row.
    A class token, if any, gets a zero embedding in front.
    """
    grid = tuple(int(g) for g in grid)
    k = len(grid)
    if dim % (2 * k):
        raise ValueError(f"dim {dim} must be divisible by {2 * k} for a {k}-D sin-cos embedding")
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float64) for g in grid], indexing="ij")
    parts = [sincos_pos_embed_1d(dim // k, c.reshape(-1)) for c in reversed(coords)]
    emb = torch.cat(parts, dim=-1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim), emb], dim=0)
    return emb
