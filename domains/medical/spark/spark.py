"""SparK: BERT-style masked modelling for any CNN (Tian et al., "Designing BERT for Convolutional
Networks: Sparse and Hierarchical Masked Modeling", ICLR 2023), in 2-D and 3-D.

* the mask lives on the coarsest feature grid (input / 32), 60 % of cells hidden, and the input is
  zeroed outside visible cells;
* the encoder is the CNN made sparse (:mod:`.sparse`): masked positions never leak into visible ones;
* each of the 4 feature scales gets its own learnable mask token (filling masked positions) and a
  "densify" norm + projection to the decoder width;
* a light U-Net decoder upsamples by 2 per block, adding each scale's densified map;
* loss: MSE on per-patch normalised pixels (patch = 32), masked patches only.

``forward(x, mask=None)`` returns ``(loss, pred)``; ``make_mask`` draws the mask; the pre-trained
encoder is saved with :meth:`SparK.export_backbone` (safetensors, dense parameter names) and read
back with :func:`load_backbone` (safetensors only, no pickle).
"""
from __future__ import annotations

import math
import os
from typing import Callable, Sequence

import torch
from maskworks.core.losses import masked_mse
from maskworks.core.masking import GridBlockMasking, Mask, patchify
from maskworks.domains.medical.spark.sparse import SparseEncoder, active_at
from torch import Tensor, nn

PathLike = str | os.PathLike[str]


def _layers(dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d
    if dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d
    raise ValueError(f"SparK supports 2-D images and 3-D volumes, got {dims} spatial dims")


class UNetBlock(nn.Module):
    """SparK's decoder block: 2x transposed-conv upsampling, then two 3x3 conv-BN-ReLU6."""

    def __init__(self, cin: int, cout: int, dims: int) -> None:
        super().__init__()
        conv, convt, bn = _layers(dims)
        self.up = convt(cin, cin, kernel_size=4, stride=2, padding=1, bias=True)
        self.conv = nn.Sequential(conv(cin, cin, 3, 1, 1, bias=False), bn(cin), nn.ReLU6(inplace=True),
                                  conv(cin, cout, 3, 1, 1, bias=False), bn(cout), nn.ReLU6(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.up(x))


class LightDecoder(nn.Module):
    """``log2(stride)`` upsampling blocks, widths halving from ``width``; scale i's map is added
    before block i (deepest first), then a 1x1 conv to the input channels. A CNN whose first
    scale is at stride 1 (small-image ResNets) has one scale more than blocks: it is added after
    the last block, at full size."""

    def __init__(self, width: int, out_chans: int, downsample: int = 32, dims: int = 2) -> None:
        super().__init__()
        n = int(round(math.log2(downsample)))
        if 2 ** n != downsample:
            raise ValueError(f"decoder needs a power-of-two total stride, got {downsample}")
        if width % 2 ** n:
            raise ValueError(f"decoder width {width} must be divisible by {2 ** n} (it halves {n} times)")
        widths = [width // 2 ** i for i in range(n + 1)]
        self.widths = widths
        self.blocks = nn.ModuleList(UNetBlock(widths[i], widths[i + 1], dims) for i in range(n))
        self.proj = _layers(dims)[0](widths[-1], out_chans, kernel_size=1)

    def forward(self, to_dec: Sequence[Tensor]) -> Tensor:
        x: Tensor | int = 0
        for i, block in enumerate(self.blocks):
            if i < len(to_dec):
                x = x + to_dec[i]
            x = block(x)
        if len(to_dec) > len(self.blocks):  # a stride-1 scale (small-image CNNs): added at full size
            x = x + to_dec[len(self.blocks)]
        return self.proj(x)


class SparK(nn.Module):
    """SparK pre-training around any dense CNN ``backbone`` (2-D or 3-D).

    ``feature_modules`` names the modules whose outputs are the 4 scales (strides 4, 8, 16, 32);
    by default the last four entries of ``backbone.feature_info`` (timm's convention, also used by
    :class:`~maskworks.domains.medical.spark.resnet3d.ResNet3d`). Channels and strides are measured by
    one dummy forward, so any CNN whose scales halve works.
    """

    def __init__(self, backbone: nn.Module, input_size: Sequence[int], in_chans: int = 1,
                 feature_modules: Sequence[str] | None = None, mask_ratio: float = 0.6,
                 decoder_width: int = 256, norm_pix_loss: bool = True) -> None:
        super().__init__()
        self.input_size = tuple(int(s) for s in input_size)
        self.dims = len(self.input_size)
        conv, _, bn = _layers(self.dims)
        if feature_modules is None:
            info = getattr(backbone, "feature_info", None)
            if not info:
                raise ValueError("backbone has no feature_info: pass feature_modules=[...] (4 module names)")
            feature_modules = [f["module"] for f in list(info)[-4:]]
        self.in_chans = in_chans
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.masking = GridBlockMasking(mask_ratio, block=1)
        self.encoder = SparseEncoder(backbone, feature_modules)
        channels, strides = self._probe()
        self.downsample = strides[-1]
        self.grid = tuple(s // self.downsample for s in self.input_size)
        if any(s % self.downsample for s in self.input_size):
            raise ValueError(f"input size {self.input_size} must be divisible by the backbone stride {self.downsample}")
        self.feature_channels = channels  # shallow -> deep
        self.feature_strides = strides
        self.decoder = LightDecoder(decoder_width, in_chans, self.downsample, self.dims)
        # per scale, deepest first: mask token, densify norm, densify projection (SparK's naming)
        deep_first = list(reversed(channels))
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, c, *([1] * self.dims))) for c in deep_first)
        for t in self.mask_tokens:
            nn.init.trunc_normal_(t, std=0.02, a=-0.02, b=0.02)
        self.densify_norms = nn.ModuleList(bn(c) for c in deep_first)
        self.densify_projs = nn.ModuleList(
            (nn.Identity() if i == 0 and c == self.decoder.widths[0] else
             conv(c, self.decoder.widths[i], kernel_size=1 if i == 0 else 3, padding=0 if i == 0 else 1))
            for i, c in enumerate(deep_first))

    @torch.no_grad()
    def _probe(self) -> tuple[list[int], list[int]]:
        was_training = self.encoder.training
        self.encoder.eval()
        feats = self.encoder(torch.zeros(1, self.in_chans, *self.input_size))
        self.encoder.train(was_training)
        channels = [f.shape[1] for f in feats]
        strides = [self.input_size[0] // f.shape[2] for f in feats]
        for f, s in zip(feats, strides):
            if tuple(n * s for n in f.shape[2:]) != self.input_size:
                raise ValueError(f"feature map {tuple(f.shape[2:])} is not input {self.input_size} / {s} on every axis")
        if any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise ValueError(f"feature strides {strides} must double from scale to scale")
        return channels, strides

    def make_mask(self, batch_size: int, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> Mask:
        """Random 60 % (``mask_ratio``) of the stride-32 grid cells hidden, same count per sample."""
        return self.masking(batch_size, self.grid, generator=generator, device=device)

    def _check(self, x: Tensor, mask: Mask) -> None:
        if x.dim() != 2 + self.dims or x.shape[1] != self.in_chans or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(f"expected input [B, {self.in_chans}, {', '.join(map(str, self.input_size))}], "
                             f"got {tuple(x.shape)}")
        if tuple(mask.grid) != self.grid or mask.batch_size != x.shape[0]:
            raise ValueError(f"mask grid {mask.grid} / batch {mask.batch_size} does not match grid {self.grid} / "
                             f"batch {x.shape[0]}; use make_mask")

    def forward_features(self, x: Tensor, mask: Mask) -> list[Tensor]:
        """Sparse encoder on the masked input; features shallow -> deep, masked positions 0."""
        active = ~mask.mask
        x = x * active_at(active, x.shape[2:]).unsqueeze(1).to(x.dtype)
        return self.encoder(x, active)

    def forward_decoder(self, feats: Sequence[Tensor], mask: Mask) -> Tensor:
        """Fill masked positions with mask tokens, densify, decode to ``[B, C, *input_size]``."""
        active = ~mask.mask
        to_dec = []
        for i, f in enumerate(reversed(feats)):
            keep = active_at(active, f.shape[2:]).unsqueeze(1)
            f = torch.where(keep, f, self.mask_tokens[i].to(f.dtype).expand_as(f))
            to_dec.append(self.densify_projs[i](self.densify_norms[i](f)))
        return self.decoder(to_dec)

    def forward_loss(self, x: Tensor, pred: Tensor, mask: Mask) -> Tensor:
        """MSE of per-patch normalised pixels (patch = stride), averaged over masked patches."""
        patch = (self.downsample,) * self.dims
        return masked_mse(patchify(pred, patch), patchify(x, patch), mask.flat, norm_pix=self.norm_pix_loss)

    def forward(self, x: Tensor, mask: Mask | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(loss, pred)``; ``pred`` is the full-size reconstruction (normalised-patch space if
        ``norm_pix_loss``). Without ``mask`` one is drawn with ``make_mask(generator)``."""
        if mask is None:
            mask = self.make_mask(x.shape[0], generator, x.device)
        self._check(x, mask)
        pred = self.forward_decoder(self.forward_features(x, mask), mask)
        return self.forward_loss(x, pred, mask), pred

    @torch.no_grad()
    def reconstruct(self, x: Tensor, pred: Tensor, mask: Mask) -> Tensor:
        """Image for display: visible pixels from ``x``, masked ones from ``pred`` (de-normalised
        with each patch's true mean/std when ``norm_pix_loss``)."""
        patch = (self.downsample,) * self.dims
        from maskworks.core.masking import unpatchify

        tgt, rec = patchify(x, patch), patchify(pred, patch)
        if self.norm_pix_loss:
            rec = rec * (tgt.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + tgt.mean(dim=-1, keepdim=True)
        out = torch.where(mask.flat.unsqueeze(-1), rec, tgt)
        return unpatchify(out, patch, self.grid, self.in_chans)

    def backbone_state_dict(self) -> dict[str, Tensor]:
        """Encoder weights under the dense backbone's own parameter names."""
        return {k: v.detach().clone().contiguous() for k, v in self.encoder.body.state_dict().items()}

    def export_backbone(self, path: PathLike) -> None:
        """Save the pre-trained dense backbone weights as safetensors."""
        from safetensors.torch import save_file

        save_file(self.backbone_state_dict(), str(path), metadata={"format": "pt", "source": "maskworks SparK"})


def load_backbone(model: nn.Module, path: PathLike, allowed_missing: Callable[[str], bool] | None = None) -> nn.Module:
    """Load exported SparK weights into a dense backbone (safetensors only, never pickle).

    Keys the checkpoint lacks must be head-only (``allowed_missing``, default: names starting with
    ``head.``, ``fc.`` or ``classifier.``); unknown keys in the checkpoint are an error.
    """
    from safetensors.torch import load_file

    allowed = allowed_missing or (lambda k: k.split(".")[0] in {"head", "fc", "classifier"})
    result = model.load_state_dict(load_file(str(path)), strict=False)
    missing = [k for k in result.missing_keys if not allowed(k)]
    if result.unexpected_keys or missing:
        raise ValueError(f"{path}: weights do not fit {type(model).__name__}: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}; build the backbone with the same "
                         "name, in_chans and widths as in pre-training")
    return model


def timm_backbone(name: str = "resnet18", in_chans: int = 1) -> nn.Module:
    """A randomly initialised CNN without classifier or pooling: a timm model (``pretrained=False``,
    no download), or a small-image ResNet for ``resnet18_28px[_wN]`` / ``resnet34_28px[_wN]``
    (:mod:`.resnet_small`: stride-1 stem, no max-pool, for 28-32 px inputs)."""
    import timm
    from maskworks.domains.medical.spark.resnet_small import small_resnet

    small = small_resnet(name, in_chans)
    if small is not None:
        return small
    return timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=0, global_pool="")


class SparK2d(SparK):
    """SparK on a timm CNN (resnet18/50, convnext_atto/tiny, ...); ``in_chans=1`` for grayscale."""

    def __init__(self, backbone: str = "resnet18", in_chans: int = 1, input_size: int | Sequence[int] = 224,
                 mask_ratio: float = 0.6, decoder_width: int = 256, norm_pix_loss: bool = True) -> None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        super().__init__(timm_backbone(backbone, in_chans), size, in_chans, mask_ratio=mask_ratio,
                         decoder_width=decoder_width, norm_pix_loss=norm_pix_loss)
        self.backbone_name = backbone


class SparK3d(SparK):
    """SparK on :class:`~maskworks.domains.medical.spark.resnet3d.ResNet3d` for CT/MR volumes ``[B, C, D, H, W]``."""

    def __init__(self, in_chans: int = 1, input_size: int | Sequence[int] = 64,
                 widths: Sequence[int] = (32, 64, 128, 256), depths: Sequence[int] = (1, 1, 1, 1),
                 norm: str = "instance", mask_ratio: float = 0.6, decoder_width: int = 128,
                 norm_pix_loss: bool = True) -> None:
        from maskworks.domains.medical.spark.resnet3d import ResNet3d

        size = (input_size,) * 3 if isinstance(input_size, int) else tuple(input_size)
        super().__init__(ResNet3d(in_chans, widths, depths, norm), size, in_chans, mask_ratio=mask_ratio,
                         decoder_width=decoder_width, norm_pix_loss=norm_pix_loss)
        self.backbone_config = {"in_chans": in_chans, "widths": tuple(widths), "depths": tuple(depths), "norm": norm}
