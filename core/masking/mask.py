"""The one masking contract: scores over a token grid -> a fixed-count keep/mask split per sample."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass
class Mask:  # not frozen: Lightning rebuilds dataclasses found in model outputs
    """Which tokens of a grid an encoder sees.

    ``mask`` is ``[B, *grid]`` with True where the token is hidden. ``ids_keep`` ``[B, K]`` and
    ``ids_mask`` ``[B, N-K]`` index the flattened grid; ``ids_restore`` ``[B, N]`` puts the
    concatenation ``[kept, masked]`` back into grid order (MAE's un-shuffle).
    """

    mask: Tensor
    ids_keep: Tensor
    ids_mask: Tensor
    ids_restore: Tensor
    grid: tuple[int, ...]

    @property
    def batch_size(self) -> int:
        return self.ids_restore.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.ids_restore.shape[1]

    @property
    def num_keep(self) -> int:
        return self.ids_keep.shape[1]

    @property
    def num_masked(self) -> int:
        return self.ids_mask.shape[1]

    @property
    def ratio(self) -> float:
        return self.num_masked / self.num_tokens

    @property
    def flat(self) -> Tensor:
        """``[B, N]`` boolean mask over the flattened grid."""
        return self.mask.reshape(self.batch_size, -1)

    def to(self, device: torch.device | str) -> "Mask":
        return Mask(self.mask.to(device), self.ids_keep.to(device), self.ids_mask.to(device),
                    self.ids_restore.to(device), self.grid)

    def __getitem__(self, index: slice) -> "Mask":
        """Select samples of the batch (used to hand each data-parallel rank its share)."""
        return Mask(self.mask[index], self.ids_keep[index], self.ids_mask[index],
                    self.ids_restore[index], self.grid)


def num_to_keep(num_tokens: int, ratio: float) -> int:
    """MAE's ``int(N * (1 - ratio))``, guarded against float error (100 * (1 - 0.9) = 9.999...)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    return max(1, int(math.floor(round(num_tokens * (1.0 - ratio), 6))))


def no_mask(batch_size: int, grid: Sequence[int], device: torch.device | str | None = None) -> Mask:
    """The unmasked path: every token kept, in grid order (identical to running without a mask)."""
    grid = tuple(int(g) for g in grid)
    n = math.prod(grid)
    ids = torch.arange(n, device=device).expand(batch_size, n)
    return Mask(
        mask=torch.zeros(batch_size, *grid, dtype=torch.bool, device=device),
        ids_keep=ids,
        ids_mask=ids[:, :0],
        ids_restore=ids,
        grid=grid,
    )


def mask_from_scores(scores: Tensor, ratio: float | None = None, *, num_keep: int | None = None) -> Mask:
    """Keep the ``num_keep`` highest-scoring tokens of each sample, mask the rest.

    ``scores`` is ``[B, *grid]``. Give either ``ratio`` (fraction masked) or ``num_keep``. Ties are
    broken by position (stable sort), so equal scores give a deterministic mask. A ratio of 0
    returns :func:`no_mask`, whatever the scores.
    """
    if scores.dim() < 2:
        raise ValueError(f"scores must be [B, *grid], got shape {tuple(scores.shape)}")
    batch, grid = scores.shape[0], tuple(scores.shape[1:])
    n = math.prod(grid)
    if num_keep is None:
        if ratio is None:
            raise ValueError("give ratio or num_keep")
        if ratio == 0:
            return no_mask(batch, grid, scores.device)
        num_keep = num_to_keep(n, ratio)
    if not 1 <= num_keep <= n:
        raise ValueError(f"num_keep must be in [1, {n}], got {num_keep}")
    if num_keep == n:
        return no_mask(batch, grid, scores.device)
    ids_shuffle = torch.argsort(scores.reshape(batch, n), dim=1, descending=True, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    flat = torch.ones(batch, n, dtype=torch.bool, device=scores.device)
    flat.scatter_(1, ids_shuffle[:, :num_keep], False)
    return Mask(
        mask=flat.reshape(batch, *grid),
        ids_keep=ids_shuffle[:, :num_keep],
        ids_mask=ids_shuffle[:, num_keep:],
        ids_restore=ids_restore,
        grid=grid,
    )
