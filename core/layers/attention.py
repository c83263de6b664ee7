"""Multi-head attention on ``scaled_dot_product_attention`` (fused kernels on CPU and GPU)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Self-attention with one fused qkv projection.

    Subclasses may add keys and values that every query also attends to by overriding
    :meth:`extra_kv` (e.g. MemMC-MAE's learned memory slots, ``maskworks.domains.medical.anomaly``).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def _heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def extra_kv(self, batch: int) -> tuple[Tensor, Tensor] | None:
        """Additional ``(keys, values)`` ``[B, heads, M, head_dim]`` appended to every sample's; none here."""
        return None

    def forward(self, x: Tensor, query_ids: Tensor | None = None) -> Tensor:
        """``query_ids`` ``[B, Q]`` restricts the outputs to those tokens (all tokens still act as
        keys and values): a decoder's last block only needs the tokens it predicts."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if query_ids is not None:
            q = torch.gather(q, 2, query_ids[:, None, :, None].expand(-1, self.num_heads, -1, self.head_dim))
            n = query_ids.shape[1]
        extra = self.extra_kv(b)
        if extra is not None:
            k, v = torch.cat([k, extra[0]], dim=2), torch.cat([v, extra[1]], dim=2)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))


class CrossAttention(nn.Module):
    """Queries from ``x``, keys and values from ``context`` (decoder -> encoder levels, or view 2 -> view 1)."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(context_dim or dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, n, d = x.shape
        m = context.shape[1]
        q = self.q(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).view(b, m, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))
