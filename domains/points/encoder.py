"""Point transformer encoder/decoder shared by Point-MAE, Point-BERT and Point-CMAE.

Tokens are mini-PointNet embeddings of point groups; positions are an MLP of the group centres,
added before *every* block (Point-MAE), because a group's own coordinates are centre-relative
and carry no location.
"""
from __future__ import annotations

import torch
from maskworks.core.layers import Block
from maskworks.core.masking import Mask, gather_tokens
from torch import Tensor, nn

from .grouping import group_points
from .tokenizer import MiniPointNet


def pos_mlp(dim: int, hidden: int = 128) -> nn.Module:
    """Centre (x, y, z) -> position embedding."""
    return nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Transformer(nn.Module):
    """Blocks with the position embedding re-added before each one, then a final norm."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path, depth).tolist() if depth else []
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio, drop_path=r) for r in rates])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x + pos)
        return self.norm(x)


class PointEncoder(nn.Module):
    """Groups -> tokens -> transformer. ``forward`` runs on the visible groups of a :class:`Mask`."""

    def __init__(self, num_groups: int = 64, group_size: int = 32, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, tokenizer_hidden: int = 32, drop_path: float = 0.0) -> None:
        super().__init__()
        self.num_groups, self.group_size, self.embed_dim = num_groups, group_size, embed_dim
        self.tokenizer = MiniPointNet(embed_dim, tokenizer_hidden)
        self.pos_embed = pos_mlp(embed_dim)
        self.transformer = Transformer(embed_dim, depth, num_heads, drop_path=drop_path)

    def group(self, xyz: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, N, 3]`` -> (neighbourhoods ``[B, G, K, 3]``, centres ``[B, G, 3]``); FPS starts at point 0."""
        return group_points(xyz, self.num_groups, self.group_size, start_idx=0)

    def forward(self, neighborhoods: Tensor, centers: Tensor, mask: Mask | None = None) -> Tensor:
        """Encoded visible tokens ``[B, K, D]`` (all ``G`` tokens when ``mask`` is None)."""
        if mask is not None and mask.num_masked:  # tokenise only what the encoder sees (40 % at ratio 0.6)
            b, g, k, _ = neighborhoods.shape
            neighborhoods = gather_tokens(neighborhoods.reshape(b, g, k * 3), mask.ids_keep).reshape(b, -1, k, 3)
            centers = gather_tokens(centers, mask.ids_keep)
        return self.transformer(self.tokenizer(neighborhoods), self.pos_embed(centers))

    @torch.no_grad()
    def features(self, xyz: Tensor) -> Tensor:
        """Global feature ``[B, 2D]`` (max ‖ mean over all groups, as Point-MAE's classifier): for probes."""
        nb, ct = self.group(xyz)
        x = self.forward(nb, ct)
        return torch.cat([x.amax(1), x.mean(1)], dim=-1)


class PointDecoder(nn.Module):
    """MAE decoder: visible tokens plus one mask token per hidden group, positions from all centres.

    Returns the features of the masked groups ``[B, M, D]`` in ``mask.ids_mask`` order.
    """

    def __init__(self, embed_dim: int = 128, depth: int = 2, num_heads: int = 4) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.pos_embed = pos_mlp(embed_dim)
        self.transformer = Transformer(embed_dim, depth, num_heads)

    def forward(self, visible: Tensor, centers: Tensor, mask: Mask) -> Tensor:
        b, k, d = visible.shape
        m = mask.num_masked
        pos = self.pos_embed(torch.cat([gather_tokens(centers, mask.ids_keep), gather_tokens(centers, mask.ids_mask)], 1))
        x = torch.cat([visible, self.mask_token.expand(b, m, d)], dim=1)
        return self.transformer(x, pos)[:, k:]


def scatter_to_grid(values: Tensor, ids: Tensor, num_tokens: int) -> Tensor:
    """``[B, M, D]`` values at flat ids ``[B, M]`` -> ``[B, G, D]`` (zeros elsewhere)."""
    out = values.new_zeros(values.shape[0], num_tokens, values.shape[-1])
    return out.scatter(1, ids.unsqueeze(-1).expand_as(values), values)
