"""Applying a mask to tokens, and patchify/unpatchify for images, volumes, videos and spectrograms."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from maskworks.core.masking.mask import Mask
from torch import Tensor


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """``x[b, ids[b]]`` for ``x`` ``[B, N, D]`` and ``ids`` ``[B, K]``."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def keep_visible(x: Tensor, mask: Mask) -> Tensor:
    """Drop masked tokens: ``[B, N, D]`` -> ``[B, K, D]`` (MAE's encoder input)."""
    if mask.num_masked == 0:
        return x
    return gather_tokens(x, mask.ids_keep)


def restore_tokens(visible: Tensor, mask: Mask, mask_token: Tensor) -> Tensor:
    """Put visible tokens back on the grid and fill masked places with ``mask_token`` ``[D]``.

    Inverse of :func:`keep_visible` on the visible places: ``restore(keep(x))[~mask] == x[~mask]``.
    """
    if mask.num_masked == 0:
        return visible
    b, _, d = visible.shape
    fill = mask_token.reshape(1, 1, d).to(visible.dtype).expand(b, mask.num_masked, d)
    return gather_tokens(torch.cat([visible, fill], dim=1), mask.ids_restore)


def replace_masked(x: Tensor, mask: Mask, mask_token: Tensor) -> Tensor:
    """SimMIM-style: keep every token, but replace masked ones by ``mask_token`` ``[D]``."""
    w = mask.flat.unsqueeze(-1).to(x.dtype)
    return x * (1 - w) + mask_token.reshape(1, 1, -1).to(x.dtype) * w


def _check_divisible(spatial: Sequence[int], patch: Sequence[int]) -> None:
    if len(spatial) != len(patch):
        raise ValueError(f"patch size {tuple(patch)} has {len(patch)} dims but the input has "
                         f"{len(spatial)} spatial dims {tuple(spatial)}")
    for s, p in zip(spatial, patch):
        if s % p:
            raise ValueError(f"input size {tuple(spatial)} is not divisible by patch size {tuple(patch)}")


def patchify(x: Tensor, patch_size: Sequence[int]) -> Tensor:
    """``[B, C, *S]`` -> ``[B, N, prod(P) * C]`` for 1-, 2-, 3-D inputs (images, spectrograms as
    ``[B, 1, F, T]``, volumes ``[B, C, D, H, W]``, videos ``[B, C, T, H, W]`` with tubelet patches).

    Within a patch, values are ordered (p1, p2, ..., C), as in MAE's ``nchpwq->nhwpqc``.
    """
    patch_size = tuple(int(p) for p in patch_size)
    b, c, *spatial = x.shape
    _check_divisible(spatial, patch_size)
    k = len(spatial)
    grid = [s // p for s, p in zip(spatial, patch_size)]
    shape = [b, c]
    for g, p in zip(grid, patch_size):
        shape += [g, p]
    x = x.reshape(shape)
    # axes: 0 batch, 1 channel, then (grid_i, patch_i) pairs at 2+2i, 3+2i
    perm = [0] + [2 + 2 * i for i in range(k)] + [3 + 2 * i for i in range(k)] + [1]
    return x.permute(perm).reshape(b, math.prod(grid), math.prod(patch_size) * c)


def unpatchify(x: Tensor, patch_size: Sequence[int], grid: Sequence[int], channels: int) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, N, prod(P) * C]`` -> ``[B, C, *(grid * P)]``."""
    patch_size = tuple(int(p) for p in patch_size)
    grid = tuple(int(g) for g in grid)
    b, n, d = x.shape
    k = len(grid)
    if n != math.prod(grid) or d != math.prod(patch_size) * channels:
        raise ValueError(f"tokens {tuple(x.shape)} do not match grid {grid}, patch {patch_size}, "
                         f"{channels} channels")
    x = x.reshape(b, *grid, *patch_size, channels)
    perm = [0, 2 * k + 1]
    for i in range(k):
        perm += [1 + i, 1 + k + i]
    x = x.permute(perm)
    return x.reshape(b, channels, *[g * p for g, p in zip(grid, patch_size)])
