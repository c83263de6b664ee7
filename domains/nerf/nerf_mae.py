"""NeRF-MAE (Irshad et al., 2024): masked autoencoding of radiance grids.

A grid ``[B, 4, S, S, S]`` (RGB + alpha, zero-padded to a cube with a validity mask) is cut into 4^3
patches; 75 % are masked (any core strategy: random, or 3-D blocks with ``grid_block``). Two models:

* :class:`SwinNeRFMAE` (the paper's): MONAI's 3-D Swin transformer encoder, masked patches replaced by
  a learned token after the patch embedding (SimMIM style, as NeRF-MAE does with Swin), and a UNETR-style
  convolutional decoder from MONAI's ``UnetrBasicBlock`` / ``UnetrUpBlock`` up to the patch grid, where a
  1x1x1 convolution predicts each 4^3 patch's voxels (SimMIM's pixel-shuffle head, in 3-D). Full-resolution
  convolutions cost 2-3 s a step on one CPU thread; the patch-level head costs nothing.
* :class:`ViTNeRFMAE` (lighter): the core MAE (:class:`~maskworks.core.mae.MaskedAutoencoder`) on 3-D
  input with 4^3 patches; its masked-patch predictions are put back into the grid.

The paper's loss (:func:`nerf_mae_loss`): on voxels of masked patches inside the valid region, MSE of
alpha everywhere and MSE of RGB where the target's alpha exceeds 0.01.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from maskworks.core.masking import Mask, MaskingStrategy, RandomMasking, no_mask

from .grid import ALPHA_THRESHOLD

PATCH = 4


@dataclass
class NeRFMAEOutput:
    loss: Tensor
    pred: Tensor  # [B, 4, S, S, S] the predicted grid (every voxel; only masked ones are trained)
    mask: Mask
    rgb_loss: Tensor
    alpha_loss: Tensor


def voxel_mask(mask: Mask, patch: int = PATCH) -> Tensor:
    """Patch mask ``[B, g, g, g]`` -> voxel mask ``[B, 1, g*p, g*p, g*p]`` (True = hidden)."""
    m = mask.mask
    for axis in (1, 2, 3):
        m = m.repeat_interleave(patch, dim=axis)
    return m[:, None]


def nerf_mae_loss(pred: Tensor, target: Tensor, hidden: Tensor, valid: Tensor | None = None,
                  threshold: float = ALPHA_THRESHOLD) -> tuple[Tensor, Tensor, Tensor]:
    """NeRF-MAE's loss: ``(rgb + alpha, rgb, alpha)``. ``pred``/``target`` ``[B, 4, ...]`` (RGB, alpha);
    ``hidden`` ``[B, 1, ...]`` the masked voxels; ``valid`` ``[B, 1, ...]`` the grid (not padding).
    Alpha: mean over hidden valid voxels; RGB: mean over those whose target alpha > ``threshold``."""
    region = hidden if valid is None else hidden & valid
    region = region.to(pred.dtype)
    a_err = (pred[:, 3:] - target[:, 3:]) ** 2
    alpha_loss = (a_err * region).sum() / region.sum().clamp_min(1.0)
    occ = region * (target[:, 3:] > threshold).to(pred.dtype)
    rgb_err = ((pred[:, :3] - target[:, :3]) ** 2).mean(1, keepdim=True)
    rgb_loss = (rgb_err * occ).sum() / occ.sum().clamp_min(1.0)
    return rgb_loss + alpha_loss, rgb_loss, alpha_loss


class _NeRFMAEBase(nn.Module):
    """What both models share: masking, the loss, reconstruction with visible voxels kept."""

    input_size: int
    masking: MaskingStrategy

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.input_size // PATCH,) * 3

    def make_mask(self, batch: int, generator: torch.Generator | None = None, device=None) -> Mask:
        return self.masking(batch, self.grid, generator=generator, device=device)

    def predict(self, x: Tensor, mask: Mask) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, valid: Tensor | None = None, mask: Mask | None = None,
                generator: torch.Generator | None = None) -> NeRFMAEOutput:
        if mask is None:
            mask = self.make_mask(x.shape[0], generator, x.device)
        pred = self.predict(x, mask)
        hidden = voxel_mask(mask)
        loss, rgb, alpha = nerf_mae_loss(pred, x, hidden, valid)
        return NeRFMAEOutput(loss, pred, mask, rgb, alpha)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, mask: Mask) -> Tensor:
        """The grid with visible voxels copied and hidden ones predicted."""
        pred = self.predict(x, mask)
        hidden = voxel_mask(mask)
        return torch.where(hidden, pred, x)


class SwinNeRFMAE(_NeRFMAEBase):
    """MONAI 3-D Swin encoder (4^3 patch embedding, mask token) + UNETR-style decoder to the full grid.

    ``depths`` sets the stages (each halves the token grid): ``input_size`` must be divisible by
    ``4 * 2 ** len(depths)``. ``out_channels`` other than 4 turns the decoder into a voxel labeller.
    """

    def __init__(self, input_size: int = 32, in_chans: int = 4, embed_dim: int = 24, depths: Sequence[int] = (2, 2),
                 num_heads: Sequence[int] = (3, 6), window_size: int = 4, out_channels: int = 4,
                 masking: MaskingStrategy | None = None) -> None:
        super().__init__()
        from monai.networks.blocks import UnetrBasicBlock, UnetrUpBlock
        from monai.networks.nets.swin_unetr import SwinTransformer

        if input_size % (PATCH * 2 ** len(depths)):
            raise ValueError(f"input_size {input_size} must be divisible by {PATCH * 2 ** len(depths)}")
        self.input_size, self.in_chans, self.out_channels = input_size, in_chans, out_channels
        self.masking = masking if masking is not None else RandomMasking(0.75)
        self.swin = SwinTransformer(in_chans=in_chans, embed_dim=embed_dim, window_size=(window_size,) * 3,
                                    patch_size=(PATCH,) * 3, depths=tuple(depths), num_heads=tuple(num_heads),
                                    spatial_dims=3, norm_layer=nn.LayerNorm)
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        norm = "instance"
        widths = [embed_dim * 2 ** i for i in range(len(depths) + 1)]  # per level, finest first
        self.skips = nn.ModuleList([UnetrBasicBlock(3, w, w, 3, 1, norm, res_block=True) for w in widths])
        self.ups = nn.ModuleList([UnetrUpBlock(3, widths[i + 1], widths[i], 3, 2, norm, res_block=True)
                                  for i in range(len(depths))])
        self.head = nn.Conv3d(widths[0], out_channels * PATCH ** 3, 1)

    def forward_encoder(self, x: Tensor, mask: Mask) -> list[Tensor]:
        """Hidden states per level ``[B, C_l, S/4/2^l, ...]``: the patch embedding (masked patches replaced
        by the mask token), then each Swin stage. MONAI's loop, with the token inserted."""
        h = self.swin.patch_embed(x)
        if mask.num_masked:
            m = mask.mask[:, None].to(h.dtype)
            h = h * (1 - m) + self.mask_token.view(1, -1, 1, 1, 1).to(h.dtype) * m
        h = self.swin.pos_drop(h)
        levels = [self.swin.proj_out(h, True)]
        stages = [self.swin.layers1, self.swin.layers2, self.swin.layers3, self.swin.layers4][:len(self.ups)]
        for stage in stages:
            h = stage[0](h.contiguous())
            levels.append(self.swin.proj_out(h, True))
        return levels

    def forward_decoder(self, levels: list[Tensor]) -> Tensor:
        """UNETR: from the coarsest level up, each step upsampling and fusing the next finer level; then
        each patch-grid cell's features -> its 4^3 voxels ``[B, out, S, S, S]`` (raw)."""
        y = self.skips[-1](levels[-1])
        for i in range(len(self.ups) - 1, -1, -1):
            y = self.ups[i](y, self.skips[i](levels[i]))
        y = self.head(y)  # [B, out * p^3, g, g, g]
        b, _, g0, g1, g2 = y.shape
        p = PATCH
        y = y.reshape(b, self.out_channels, p, p, p, g0, g1, g2).permute(0, 1, 5, 2, 6, 3, 7, 4)
        return y.reshape(b, self.out_channels, g0 * p, g1 * p, g2 * p)

    def predict(self, x: Tensor, mask: Mask) -> Tensor:
        out = self.forward_decoder(self.forward_encoder(x, mask))
        return torch.sigmoid(out) if self.out_channels == self.in_chans else out

    def logits(self, x: Tensor) -> Tensor:
        """Unmasked pass, raw head outputs (the voxel labeller's class scores)."""
        return self.forward_decoder(self.encode(x))

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.forward_encoder(x, no_mask(x.shape[0], self.grid, x.device))


class ViTNeRFMAE(_NeRFMAEBase):
    """The core MAE on ``[4, S, S, S]`` grids with 4^3 patches; predictions pass a sigmoid."""

    def __init__(self, input_size: int = 32, in_chans: int = 4, embed_dim: int = 132, depth: int = 4,
                 num_heads: int = 4, decoder_embed_dim: int = 96, decoder_depth: int = 2, decoder_num_heads: int = 4,
                 masking: MaskingStrategy | None = None) -> None:
        super().__init__()
        from maskworks.core.mae import MaskedAutoencoder

        self.input_size, self.in_chans = input_size, in_chans
        self.masking = masking if masking is not None else RandomMasking(0.75)
        self.mae = MaskedAutoencoder(input_size=(input_size,) * 3, patch_size=PATCH, in_chans=in_chans,
                                     embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                                     decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
                                     decoder_num_heads=decoder_num_heads, masking=self.masking)

    def predict(self, x: Tensor, mask: Mask) -> Tensor:
        patches = self.mae.patchify(x)
        latent = self.mae.forward_encoder(x, mask, patches)
        pred = torch.sigmoid(self.mae.forward_decoder(latent, mask))
        if not mask.num_masked:
            return self.mae.unpatchify(pred)
        full = patches.scatter(1, mask.ids_mask.unsqueeze(-1).expand_as(pred), pred.to(patches.dtype))
        return self.mae.unpatchify(full)

    def encode(self, x: Tensor) -> Tensor:
        return self.mae.encode(x)


def build_model(cfg: dict, masking: MaskingStrategy | None = None) -> _NeRFMAEBase:
    """``model:`` section -> a model (``arch: swin`` or ``vit``; other keys are the class's arguments)."""
    cfg = dict(cfg or {})
    arch = cfg.pop("arch", "swin")
    if arch == "swin":
        return SwinNeRFMAE(masking=masking, **cfg)
    if arch == "vit":
        return ViTNeRFMAE(masking=masking, **cfg)
    raise ValueError(f"unknown NeRF-MAE arch {arch!r}; use 'swin' or 'vit'")


def nearest_visible_patch(x: Tensor, mask: Mask, patch: int = PATCH) -> Tensor:
    """Baseline reconstruction: every hidden patch is a copy of the nearest visible patch (patch-grid
    Euclidean distance, ties to the lowest index)."""
    b = x.shape[0]
    g = mask.grid
    n = math.prod(g)
    coords = torch.stack(torch.meshgrid(*[torch.arange(s, device=x.device) for s in g], indexing="ij"), -1).reshape(n, 3).float()
    d = torch.cdist(coords, coords)  # [N, N]
    out = x.clone()
    flat = mask.flat
    for i in range(b):
        vis = (~flat[i]).nonzero().squeeze(1)
        hid = flat[i].nonzero().squeeze(1)
        if len(hid) == 0 or len(vis) == 0:
            continue
        src = vis[d[hid][:, vis].argmin(1)]
        for h_id, s_id in zip(hid.tolist(), src.tolist()):
            hz = [(h_id // (g[1] * g[2])), (h_id // g[2]) % g[1], h_id % g[2]]
            sz = [(s_id // (g[1] * g[2])), (s_id // g[2]) % g[1], s_id % g[2]]
            out[i, :, hz[0] * patch:(hz[0] + 1) * patch, hz[1] * patch:(hz[1] + 1) * patch, hz[2] * patch:(hz[2] + 1) * patch] = \
                x[i, :, sz[0] * patch:(sz[0] + 1) * patch, sz[1] * patch:(sz[1] + 1) * patch, sz[2] * patch:(sz[2] + 1) * patch]
    return out
