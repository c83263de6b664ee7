"""Point-CMAE: two random masks of the same cloud through one shared encoder and two decoders.

Loss = Chamfer-L2 of each view's masked groups + ``cos_weight`` x a per-token cosine term that
pulls together the two decoders' features of the groups hidden in *both* views (only those have a
decoder feature in both; the per-token form, not a G x G similarity matrix). A small predictor on
view 1 and a stop-gradient on view 2 (SimSiam-style) keep the term from collapsing the features.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from maskworks.core.losses import scaled_cosine_error
from maskworks.core.masking import Mask, RandomMasking
from maskworks.core.training.task import StepContext, unwrap
from torch import Tensor, nn

from .encoder import PointDecoder, PointEncoder, scatter_to_grid
from .point_mae import PointMAETask, masked_group_chamfer


def both_masked_cosine(feat1: Tensor, feat2: Tensor, mask1: Mask, mask2: Mask) -> tuple[Tensor, Tensor]:
    """Mean ``1 - cos`` between decoder features of the tokens masked in both views.

    ``feat1`` / ``feat2``: ``[B, M1, D]`` / ``[B, M2, D]`` in each mask's ``ids_mask`` order.
    Returns ``(loss, both)`` where ``both`` ``[B, G]`` marks the tokens that count; the loss is 0 when
    no token is masked twice.
    """
    g = mask1.num_tokens
    both = mask1.flat & mask2.flat
    if not both.any():
        return feat1.sum() * 0, both
    f1 = scatter_to_grid(feat1, mask1.ids_mask, g)
    f2 = scatter_to_grid(feat2, mask2.ids_mask, g)
    return scaled_cosine_error(f1, f2, gamma=1.0, mask=both), both


@dataclass
class PointCMAEOutput:
    loss: Tensor
    chamfer1: Tensor
    chamfer2: Tensor
    cosine: Tensor


class PointCMAE(nn.Module):
    """Shared encoder, decoders 1 and 2, shared reconstruction head, predictor for the cosine term."""

    def __init__(self, num_groups: int = 64, group_size: int = 32, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, decoder_depth: int = 2, decoder_num_heads: int = 4, tokenizer_hidden: int = 32,
                 drop_path: float = 0.0, mask_ratio: float = 0.6, cos_weight: float = 1.0) -> None:
        super().__init__()
        self.encoder = PointEncoder(num_groups, group_size, embed_dim, depth, num_heads, tokenizer_hidden, drop_path)
        self.decoder1 = PointDecoder(embed_dim, decoder_depth, decoder_num_heads)
        self.decoder2 = PointDecoder(embed_dim, decoder_depth, decoder_num_heads)
        self.head = nn.Linear(embed_dim, group_size * 3)
        self.predictor = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.masking = RandomMasking(mask_ratio)
        self.grid = (num_groups,)
        self.cos_weight = cos_weight

    def forward(self, neighborhoods: Tensor, centers: Tensor, mask1: Mask, mask2: Mask) -> PointCMAEOutput:
        b, m = len(centers), mask1.num_masked
        f1 = self.decoder1(self.encoder(neighborhoods, centers, mask1), centers, mask1)
        f2 = self.decoder2(self.encoder(neighborhoods, centers, mask2), centers, mask2)
        c1, _ = masked_group_chamfer(self.head(f1).reshape(b, m, -1, 3), neighborhoods, mask1)
        c2, _ = masked_group_chamfer(self.head(f2).reshape(b, mask2.num_masked, -1, 3), neighborhoods, mask2)
        cos, _ = both_masked_cosine(self.predictor(f1), f2.detach(), mask1, mask2)
        return PointCMAEOutput(c1 + c2 + self.cos_weight * cos, c1, c2, cos)


class PointCMAETask(PointMAETask):
    """Point-MAE's data and augmentation; two masks per cloud drawn from the step's generator."""

    model_cls = PointCMAE

    def training_step(self, model, batch, ctx: StepContext):
        raw = unwrap(model)
        nb, ct = raw.encoder.group(self.augmented(batch, ctx))
        strategy = self.strategy(model)
        m1, m2 = ctx.mask(strategy, raw.grid, centers=ct), ctx.mask(strategy, raw.grid, centers=ct)
        out = model(nb, ct, m1, m2)
        return {"loss": out.loss, "chamfer1": out.chamfer1, "chamfer2": out.chamfer2, "cosine": out.cosine}

    def on_fit_end(self, model, run_dir):
        ds = self.build_dataset("train")
        raw = unwrap(model)
        x = ds.points[:16]
        nb, ct = raw.encoder.group(x)
        g = torch.Generator().manual_seed(1234)
        m1, m2 = (self.strategy(model)(len(x), raw.grid, generator=g, centers=ct) for _ in range(2))
        with torch.no_grad():
            out = model(nb, ct, m1, m2)
        return {"masked_chamfer_l2_view1": round(float(out.chamfer1), 6), "cosine_term": round(float(out.cosine), 6)}
