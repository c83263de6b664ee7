"""Pre-norm transformer block that can also cross-attend to a context."""
from __future__ import annotations

from typing import Callable

import torch
from maskworks.core.layers.attention import Attention, CrossAttention
from torch import Tensor, nn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act_layer: type[nn.Module] = nn.GELU, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop) if drop else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """``x + attn(norm(x))`` [``+ cross(norm(x), context)``] ``+ mlp(norm(x))``.

    ``cross_attention=True`` adds a cross-attention sub-layer whose context is passed to
    :meth:`forward`; ``attn_layer`` swaps the self-attention for a subclass of :class:`Attention`.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm, act_layer: type[nn.Module] = nn.GELU,
                 cross_attention: bool = False, context_dim: int | None = None, drop_path: float = 0.0,
                 attn_layer: Callable[..., Attention] = Attention) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn_layer(dim, num_heads, qkv_bias=qkv_bias)
        self.cross = CrossAttention(dim, num_heads, context_dim, qkv_bias) if cross_attention else None
        self.norm_cross = norm_layer(dim) if cross_attention else None
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        if drop_path > 0:
            from timm.layers import DropPath

            self.drop_path: nn.Module = DropPath(drop_path)
        else:
            self.drop_path = nn.Identity()

    def forward(self, x: Tensor, context: Tensor | None = None, query_ids: Tensor | None = None) -> Tensor:
        """``query_ids`` ``[B, Q]``: return only those tokens' outputs (they still attend to all)."""
        h = self.attn(self.norm1(x), query_ids=query_ids)
        if query_ids is not None:
            x = torch.gather(x, 1, query_ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = x + self.drop_path(h)
        if self.cross is not None:
            if context is None:
                raise ValueError("this block cross-attends: pass context=")
            x = x + self.drop_path(self.cross(self.norm_cross(x), context))
        return x + self.drop_path(self.mlp(self.norm2(x)))
