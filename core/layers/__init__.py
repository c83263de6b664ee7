"""Reusable transformer layers, apart from model assembly (as in timm)."""
from maskworks.core.layers.attention import Attention, CrossAttention
from maskworks.core.layers.block import Block, Mlp
from maskworks.core.layers.pos_embed import sincos_pos_embed, sincos_pos_embed_1d

__all__ = ["Attention", "CrossAttention", "Block", "Mlp", "sincos_pos_embed", "sincos_pos_embed_1d"]
