"""Point-MAE's mini-PointNet group tokenizer: one embedding per (centre-relative) point group.

Shared by Point-MAE, Point-BERT and Point-CMAE so that their encoders see identical tokens.
A shared per-point MLP, max-pool, concatenation of the pooled feature back onto every point, a
second MLP and a second max-pool (Point-MAE ``Encoder``): max-pooling makes the token invariant to
the order of the points inside a group, which is what a set of neighbours needs.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class MiniPointNet(nn.Module):
    """``[B, G, K, 3]`` neighbourhoods -> ``[B, G, dim]`` tokens (permutation invariant within a group)."""

    def __init__(self, dim: int = 256, hidden: int = 128, in_chans: int = 3) -> None:
        super().__init__()
        self.in_chans = in_chans
        # No BatchNorm (Point-MAE's): no running statistics, so a token does not depend on the other
        # groups of the batch. No LayerNorm right after the 3 -> hidden layer either: it would divide
        # out the offset's length, i.e. how far a point is from the centre.
        self.first = nn.Sequential(nn.Linear(in_chans, hidden), nn.GELU(), nn.Linear(hidden, 2 * hidden))
        self.second = nn.Sequential(nn.Linear(4 * hidden, 4 * hidden), nn.LayerNorm(4 * hidden), nn.GELU(),
                                    nn.Linear(4 * hidden, dim))

    def forward(self, groups: Tensor) -> Tensor:
        if groups.dim() != 4 or groups.shape[-1] != self.in_chans:
            raise ValueError(f"groups must be [B, G, K, {self.in_chans}], got {list(groups.shape)}")
        f = self.first(groups)  # [B, G, K, 2h]
        pooled = f.amax(dim=2, keepdim=True)
        f = torch.cat([pooled.expand_as(f), f], dim=-1)
        return self.second(f).amax(dim=2)
