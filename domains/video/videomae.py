"""VideoMAE V2 (Wang et al., CVPR 2023): a video MAE with dual masking, on the core MAE.

The encoder is the core :class:`~maskworks.core.mae.MaskedAutoencoder` ViT over ``(T, H, W)`` with
``(2, 16, 16)`` tubelets; it sees the ~10 % of tubes that tube masking (the core ``TubeMasking``,
the same spatial mask in every frame) leaves visible. The decoder, VideoMAE V2's addition, does not
reconstruct every hidden token: running-cell masking (the core ``RunningCellMasking``) keeps half of
them, so the decoder receives the visible tokens plus mask tokens only at the kept places, and the
loss covers only tokens hidden from the encoder and kept by the decoder. That halves the decoder's
work at no cost in accuracy (the paper's Table 1). With ``decoder_mask_ratio=0`` it is VideoMAE.

Inputs are ``[B, 3, T, H, W]`` clips normalised with ImageNet statistics; targets are the clips'
``[0, 1]`` pixels (``target=``), optionally normalised per patch and channel (``norm_pix_loss``,
VideoMAE's choice).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from maskworks.core.mae import MaskedAutoencoder
from maskworks.core.masking import Mask, RunningCellMasking, TubeMasking, gather_tokens, mask_from_scores

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _rand(shape: Sequence[int], generator: torch.Generator | None, device) -> Tensor:
    """Uniform noise drawn on the generator's device, then moved (as the core strategies draw)."""
    gdev = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=gdev).to(device)


@dataclass
class DualMask:
    """Masking as data for both halves of VideoMAE V2.

    ``encoder``: the tube mask (True = hidden from the encoder). ``decoder``: the running-cell mask
    over the whole grid (True = dropped by the decoder), kept for drawing. ``decode_ids`` ``[B, M']``:
    the grid places the decoder reconstructs, in grid order: encoder-hidden places the decoder mask
    keeps (topped up or trimmed at random to a fixed count per sample, see :class:`DualMasking`).
    """

    encoder: Mask
    decoder: Mask | None
    decode_ids: Tensor

    @classmethod
    def plain(cls, encoder: Mask) -> "DualMask":
        """No decoder masking (VideoMAE): every encoder-hidden place is reconstructed."""
        return cls(encoder, None, encoder.ids_mask.sort(dim=1).values)

    @property
    def num_decoded(self) -> int:
        return self.decode_ids.shape[1]

    @property
    def decoded(self) -> Tensor:
        """``[B, *grid]`` True where the loss is taken."""
        flat = torch.zeros(self.encoder.batch_size, self.encoder.num_tokens, dtype=torch.bool,
                           device=self.decode_ids.device)
        flat.scatter_(1, self.decode_ids, True)
        return flat.reshape(self.encoder.mask.shape)

    def to(self, device) -> "DualMask":
        return DualMask(self.encoder.to(device), None if self.decoder is None else self.decoder.to(device),
                        self.decode_ids.to(device))

    def __getitem__(self, index: slice) -> "DualMask":
        return DualMask(self.encoder[index], None if self.decoder is None else self.decoder[index],
                        self.decode_ids[index])


def running_cell_mask(strategy: RunningCellMasking, batch_size: int, grid: Sequence[int],
                      generator: torch.Generator | None = None, device=None) -> Mask:
    """The core running-cell pattern on any ``(T, H, W)`` grid: odd sides (7 x 7 at 112 px) are
    padded to even for the pattern and cropped; a grid with partial cells then holds a few places
    more or fewer, so ties are broken at random to keep the same count in every sample."""
    t, h, w = (int(g) for g in grid)
    keep = strategy.scores(batch_size, (t, h + h % 2, w + w % 2), generator=generator, device=device)[:, :, :h, :w]
    num_keep = t * h * w * (4 - strategy.per_cell) // 4
    noise = _rand(keep.shape, generator, device)
    return mask_from_scores(keep + 0.5 * noise, num_keep=num_keep)


def decoder_targets(encoder: Mask, decoder: Mask, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """``[B, M']`` sorted grid places the decoder reconstructs: encoder-hidden places that the
    decoder mask keeps, ``M' = round(M * (1 - ratio))`` of the ``M`` hidden ones in every sample.

    Where the two masks overlap in more (or fewer) places than ``M'``, random ones are dropped
    (or random encoder-hidden, decoder-dropped ones added): a batch must be rectangular, and the
    few places involved (a fraction of the visible tubes) do not bias which tokens are learnt.
    """
    hidden = encoder.flat
    kept = ~decoder.flat
    m_dec = int(round(encoder.num_masked * (1.0 - ratio)))
    if not 1 <= m_dec <= encoder.num_masked:
        raise ValueError(f"decoder mask ratio {ratio} leaves {m_dec} of {encoder.num_masked} hidden tokens")
    noise = _rand(hidden.shape, generator, hidden.device)
    score = torch.where(hidden, kept.float() + 0.5 * noise, torch.full_like(noise, -1.0))
    return score.topk(m_dec, dim=1).indices.sort(dim=1).values


class DualMasking:
    """Draws a :class:`DualMask`: tube masking at ``ratio`` for the encoder (core ``TubeMasking``),
    running-cell masking at ``decoder_ratio`` for the decoder (core ``RunningCellMasking``);
    ``decoder_ratio=0`` turns decoder masking off. Callable like a core strategy, so
    ``StepContext.mask`` draws it for the whole batch and hands each rank its share."""

    def __init__(self, ratio: float = 0.9, decoder_ratio: float = 0.5) -> None:
        self.tube = TubeMasking(ratio)
        self.ratio = float(ratio)
        self.decoder_ratio = float(decoder_ratio)
        self.cells = RunningCellMasking(decoder_ratio) if decoder_ratio else None

    def __call__(self, batch_size: int, grid: Sequence[int], *, generator: torch.Generator | None = None,
                 device=None, **inputs) -> DualMask:
        enc = self.tube(batch_size, grid, generator=generator, device=device)
        if self.cells is None:
            return DualMask.plain(enc)
        dec = running_cell_mask(self.cells, batch_size, grid, generator, device)
        return DualMask(enc, dec, decoder_targets(enc, dec, self.decoder_ratio, generator))

    def __repr__(self) -> str:
        return f"DualMasking(ratio={self.ratio}, decoder_ratio={self.decoder_ratio})"


def normalize_tube_patches(patches: Tensor, channels: int = 3, eps: float = 1e-6) -> Tensor:
    """VideoMAE's ``norm_pix`` target: each patch to zero mean and unit (unbiased) std per colour
    channel, over its ``t * p * p`` pixels (``[B, N, t*p*p*C]`` in the core's (t, p, p, C) order)."""
    b, n, d = patches.shape
    x = patches.reshape(b, n, d // channels, channels)
    x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + eps)
    return x.reshape(b, n, d)


@dataclass
class VideoMAEOutput:
    loss: Tensor
    pred: Tensor  # [B, M', P]: predictions at mask.decode_ids
    mask: DualMask


class VideoMAE(MaskedAutoencoder):
    """VideoMAE V2 on the core MAE: no class token, tubelets ``(tubelet, patch, patch)``.

    Defaults are VideoMAE's ViT-S at 112 px: 16 frames, dim 384, 12 layers, 6 heads, decoder 192 x 4.
    """

    def __init__(self, num_frames: int = 16, image_size: int = 112, tubelet: int = 2, patch: int = 16,
                 embed_dim: int = 384, depth: int = 12, num_heads: int = 6, decoder_embed_dim: int = 192,
                 decoder_depth: int = 4, decoder_num_heads: int = 3, mlp_ratio: float = 4.0,
                 mask_ratio: float = 0.9, decoder_mask_ratio: float = 0.5, norm_pix_loss: bool = False) -> None:
        super().__init__(input_size=(num_frames, image_size, image_size), patch_size=(tubelet, patch, patch),
                         in_chans=3, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                         decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
                         decoder_num_heads=decoder_num_heads, mlp_ratio=mlp_ratio, norm_pix_loss=norm_pix_loss,
                         masking=TubeMasking(mask_ratio), cls_token=False)
        self.dual = DualMasking(mask_ratio, decoder_mask_ratio)

    def make_mask(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> DualMask:
        return self.dual(batch_size, self.grid, generator=generator, device=device)

    def forward_decoder(self, latent: Tensor, mask: DualMask | Mask, contexts=None) -> Tensor:
        """Visible tokens plus mask tokens at ``mask.decode_ids`` only; pixels predicted for those.

        The last block computes outputs for the mask tokens only (they still attend to everything).
        """
        mask = DualMask.plain(mask) if isinstance(mask, Mask) else mask
        x = self.decoder_embed(latent)
        b, c = x.shape[0], int(self.has_cls)
        pos = self.decoder_pos_embed.to(x.dtype)
        grid_pos = pos[c:].expand(b, -1, -1)
        visible = x[:, c:] + gather_tokens(grid_pos, mask.encoder.ids_keep)
        queries = self.mask_token.to(x.dtype) + gather_tokens(grid_pos, mask.decode_ids)
        parts = ([x[:, :c] + pos[:c]] if c else []) + [visible, queries]
        x = torch.cat(parts, dim=1)
        first = x.shape[1] - queries.shape[1]
        targets = torch.arange(first, x.shape[1], device=x.device).expand(b, -1)
        for i, blk in enumerate(self.decoder_blocks):
            last = i == len(self.decoder_blocks) - 1
            x = blk(x, context=None if contexts is None else contexts[i], query_ids=targets if last else None)
        if len(self.decoder_blocks) == 0:
            x = x[:, first:]
        return self.decoder_pred(self.decoder_norm(x))

    def targets(self, target: Tensor, mask: DualMask, patches: Tensor | None = None) -> Tensor:
        """The pixels the loss compares with: ``[B, M', P]`` at ``decode_ids`` (normalised with ``norm_pix_loss``)."""
        t = gather_tokens(self.patchify(target) if patches is None else patches, mask.decode_ids)
        return normalize_tube_patches(t, self.in_chans) if self.norm_pix_loss else t

    def forward_loss(self, target: Tensor, pred: Tensor, mask: DualMask, patches: Tensor | None = None) -> Tensor:
        """MSE over the tokens hidden from the encoder and kept by the decoder only."""
        return F.mse_loss(pred.float(), self.targets(target, mask, patches).float())

    def forward(self, video: Tensor, mask: DualMask | Mask | None = None, generator: torch.Generator | None = None,
                target: Tensor | None = None) -> VideoMAEOutput:
        """Pre-training pass. ``target`` (default ``video``) is what is reconstructed, e.g. the
        un-normalised ``[0, 1]`` clip; ``mask`` a :class:`DualMask` (a plain tube ``Mask`` = VideoMAE)."""
        if mask is None:
            mask = self.make_mask(video.shape[0], generator, video.device)
        mask = DualMask.plain(mask) if isinstance(mask, Mask) else mask
        latent = self.forward_encoder(video, mask.encoder)
        pred = self.forward_decoder(latent, mask)
        tp = None if target is not None else self.patchify(video)
        return VideoMAEOutput(self.forward_loss(video if target is None else target, pred, mask, tp), pred, mask)

    @torch.no_grad()
    def reconstruct(self, video: Tensor, mask: DualMask | Mask, target: Tensor | None = None) -> Tensor:
        """The whole clip, ``target``'s pixels where the encoder saw them and predictions in every
        hidden tube (decoder masking is a training saving; here every hidden token is decoded).
        With ``norm_pix_loss`` predictions are mapped back with each hidden patch's own statistics."""
        enc = mask.encoder if isinstance(mask, DualMask) else mask
        full_mask = DualMask.plain(enc)
        target = video if target is None else target
        pred = self.forward_decoder(self.forward_encoder(video, enc), full_mask).float()
        patches = self.patchify(target).float()
        if self.norm_pix_loss:
            t = gather_tokens(patches, full_mask.decode_ids)
            b, m, d = t.shape
            tc = t.reshape(b, m, d // self.in_chans, self.in_chans)
            p = pred.reshape(tc.shape) * (tc.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
            pred = (p + tc.mean(dim=-2, keepdim=True)).reshape(b, m, d)
        patches.scatter_(1, full_mask.decode_ids.unsqueeze(-1).expand_as(pred), pred)
        return self.unpatchify(patches)

    def features(self, video: Tensor) -> Tensor:
        """Mean of the encoder's tokens over the whole, unmasked clip: ``[B, D]`` (probing)."""
        return self.encode(video).mean(dim=1)


def normalize_clip(clip: Tensor) -> Tensor:
    """``[B, 3, T, H, W]`` in ``[0, 1]`` -> ImageNet-normalised model input."""
    mean = clip.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = clip.new_tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (clip - mean) / std

