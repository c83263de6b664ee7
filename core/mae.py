"""The generic masked autoencoder (MAE, He et al.), for images, volumes, videos and spectrograms.

Method names follow facebookresearch/mae: ``patchify``, ``forward_encoder``, ``forward_decoder``,
``forward_loss``. Masks are data (:class:`~maskworks.core.masking.Mask`), so any strategy plugs in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch
from maskworks.core.layers import Block, sincos_pos_embed
from maskworks.core.losses import masked_mse
from maskworks.core.masking import (
    Mask,
    MaskingStrategy,
    RandomMasking,
    gather_tokens,
    keep_visible,
    no_mask,
)
from maskworks.core.masking.ops import patchify, restore_tokens, unpatchify
from torch import Tensor, nn


@dataclass
class MAEOutput:
    loss: Tensor
    pred: Tensor  # [B, M, P]: predictions for the masked tokens, in ids_mask order
    mask: Mask


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(v),) * n if isinstance(v, int) else tuple(int(x) for x in v)


class MaskedAutoencoder(nn.Module):
    """ViT encoder over visible tokens only; light decoder with mask tokens; pixels predicted only for
    masked tokens; fixed sin-cos position embeddings in 1-, 2- or 3-D.

    ``input_size``/``patch_size`` set the dimensionality: ``(H, W)`` for images and spectrograms,
    ``(D, H, W)`` for volumes, ``(T, H, W)`` for videos with tubelets ``(t, p, p)``.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (224, 224),
        patch_size: int | Sequence[int] = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        block: type[Block] = Block,
        norm_pix_loss: bool = False,
        masking: MaskingStrategy | None = None,
        cls_token: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = tuple(int(s) for s in input_size)
        self.patch_size = _tuple(patch_size, len(self.input_size))
        if any(s % p for s, p in zip(self.input_size, self.patch_size)):
            raise ValueError(f"input size {self.input_size} is not divisible by patch size {self.patch_size}")
        self.grid = tuple(s // p for s, p in zip(self.input_size, self.patch_size))
        self.num_patches = math.prod(self.grid)
        self.in_chans = in_chans
        self.norm_pix_loss = norm_pix_loss
        self.masking = masking if masking is not None else RandomMasking(0.75)
        self.has_cls = cls_token
        patch_dim = math.prod(self.patch_size) * in_chans

        self.patch_embed = nn.Linear(patch_dim, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if cls_token else None
        self.register_buffer("pos_embed", sincos_pos_embed(embed_dim, self.grid, cls_token), persistent=False)
        self.blocks = nn.ModuleList(
            [block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)]
        )
        self.norm = norm_layer(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(decoder_embed_dim))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed(decoder_embed_dim, self.grid, cls_token),
                             persistent=False)
        self.decoder_blocks = nn.ModuleList(
            [block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
             for _ in range(decoder_depth)]
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_dim)
        self.initialize_weights()

    # -- set-up -------------------------------------------------------------------------------
    def initialize_weights(self) -> None:
        """MAE's init: xavier-uniform linears, N(0, 0.02) tokens, unit LayerNorms."""
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- the method ---------------------------------------------------------------------------
    def patchify(self, imgs: Tensor) -> Tensor:
        """``[B, C, *S]`` -> ``[B, N, prod(P) * C]``."""
        if tuple(imgs.shape[1:]) != (self.in_chans, *self.input_size):
            raise ValueError(f"expected input [B, {self.in_chans}, {', '.join(map(str, self.input_size))}], "
                             f"got {list(imgs.shape)}")
        return patchify(imgs, self.patch_size)

    def unpatchify(self, x: Tensor) -> Tensor:
        return unpatchify(x, self.patch_size, self.grid, self.in_chans)

    def make_mask(self, batch_size: int, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> Mask:
        """A mask from this model's strategy (pre-training); inference uses :meth:`encode`, unmasked."""
        return self.masking(batch_size, self.grid, generator=generator, device=device)

    def forward_encoder(self, imgs: Tensor, mask: Mask, patches: Tensor | None = None) -> Tensor:
        """Embed the visible patches only, add positions, run the ViT: ``[B, (1+) K, D]``.

        Embedding after dropping masked patches gives the same tokens as MAE's embed-then-drop at a
        quarter of the cost (75 % masking). ``patches`` (from :meth:`patchify`) saves a second patchify.
        """
        return self.forward_intermediates(imgs, mask, patches)[0]

    def forward_intermediates(self, imgs: Tensor, mask: Mask | None = None, patches: Tensor | None = None,
                              indices: Sequence[int] | None = None) -> tuple[Tensor, list[Tensor]]:
        """The encoder with its levels handed out (as lightly's masked ViT and timm do), so models that need
        them (multi-level decoders, hierarchical skips, feature scorers) never rewrite this loop.

        Returns ``(latent, levels)``: the final normed latent of :meth:`forward_encoder` and the raw output of
        every block (or of the blocks in ``indices``; negative indices count from the last), each
        ``[B, (1+) K, D]`` over the visible tokens. ``mask=None`` runs the whole, unmasked input."""
        if mask is None:
            mask = no_mask(imgs.shape[0], self.grid, imgs.device)
        x = self.embed_visible(self.patchify(imgs) if patches is None else patches, mask)
        depth = len(self.blocks)
        wanted = range(depth) if indices is None else {i % depth for i in indices}
        levels = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in wanted:
                levels.append(x)
        return self.norm(x), levels

    def embed_visible(self, patches: Tensor, mask: Mask) -> Tensor:
        """Visible patches -> tokens with positions, class token first: the encoder's input."""
        c = int(self.has_cls)
        pos = self.pos_embed[c:].to(patches.dtype).expand(patches.shape[0], -1, -1)
        x = self.patch_embed(keep_visible(patches, mask)) + keep_visible(pos, mask)
        if self.cls_token is not None:
            cls = self.cls_token + self.pos_embed[:1].to(x.dtype)
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        return x

    def forward_decoder(self, latent: Tensor, mask: Mask, contexts: Sequence[Tensor] | None = None) -> Tensor:
        """Fill masked places with the mask token, decode, and predict pixels of masked tokens only
        (of every token when nothing is masked). The last block computes outputs for masked tokens
        only; they still attend to every token, so the result equals decoding all and selecting.
        ``contexts`` gives each decoder block a cross-attention context (e.g. encoder levels)."""
        x = self.decoder_embed(latent)
        c = int(self.has_cls)
        pos = self.decoder_pos_embed.to(x.dtype)
        x = torch.cat([x[:, :c], restore_tokens(x[:, c:], mask, self.mask_token)], dim=1) + pos
        targets = mask.ids_mask + c if mask.num_masked else None
        for i, blk in enumerate(self.decoder_blocks):
            last = i == len(self.decoder_blocks) - 1
            x = blk(x, context=None if contexts is None else contexts[i], query_ids=targets if last else None)
        if targets is None or len(self.decoder_blocks) == 0:
            x = x[:, c:] if targets is None else gather_tokens(x, targets)
        return self.decoder_pred(self.decoder_norm(x))

    def forward_loss(self, imgs: Tensor, pred: Tensor, mask: Mask, patches: Tensor | None = None) -> Tensor:
        """Per-patch MSE (optionally on normalised patches), averaged over masked patches."""
        target = self.patchify(imgs) if patches is None else patches
        if mask.num_masked:
            target = gather_tokens(target, mask.ids_mask)
        return masked_mse(pred, target, norm_pix=self.norm_pix_loss)

    def forward(self, imgs: Tensor, mask: Mask | None = None, generator: torch.Generator | None = None) -> MAEOutput:
        """Pre-training forward pass. Without ``mask`` one is drawn from ``self.masking``."""
        if mask is None:
            mask = self.make_mask(imgs.shape[0], generator, imgs.device)
        patches = self.patchify(imgs)
        latent = self.forward_encoder(imgs, mask, patches)
        pred = self.forward_decoder(latent, mask)
        return MAEOutput(self.forward_loss(imgs, pred, mask, patches), pred, mask)

    @torch.no_grad()
    def reconstruct(self, imgs: Tensor, mask: Mask) -> Tensor:
        """Full image with visible patches copied and masked patches predicted (de-normalised when
        ``norm_pix_loss``, using each masked patch's own statistics as MAE's visualisation does)."""
        out = self(imgs, mask)
        target = self.patchify(imgs)
        pred = out.pred.float()
        if self.norm_pix_loss and mask.num_masked:
            t = gather_tokens(target, mask.ids_mask)
            pred = pred * (t.var(-1, keepdim=True) + 1e-6) ** 0.5 + t.mean(-1, keepdim=True)
        full = target.clone()
        if mask.num_masked:
            full.scatter_(1, mask.ids_mask.unsqueeze(-1).expand_as(pred), pred.to(full.dtype))
        else:
            full = pred.to(full.dtype)
        return self.unpatchify(full)

    def encode(self, imgs: Tensor) -> Tensor:
        """Features of the whole, unmasked input (fine-tuning, probing, inference)."""
        return self.forward_encoder(imgs, no_mask(imgs.shape[0], self.grid, imgs.device))
