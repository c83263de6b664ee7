"""Losses used across the domains: masked reconstruction, Chamfer, scaled cosine error, InfoNCE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize_patches(target: Tensor, eps: float = 1e-6) -> Tensor:
    """MAE's ``norm_pix_loss`` target: each patch to zero mean, unit (unbiased) variance."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps) ** 0.5


def _masked_mean(per_token: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return per_token.mean()
    w = mask.reshape(per_token.shape).to(per_token.dtype)
    return (per_token * w).sum() / w.sum().clamp_min(1.0)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None, norm_pix: bool = False) -> Tensor:
    """Mean over tokens of the per-token MSE; with ``mask`` ``[B, N]`` only where it is True/1.

    Give ``pred``/``target`` ``[B, N, P]`` on the full grid with a mask, or already gathered to the
    masked tokens without one (MAE predicts masked tokens only): both give the same number.
    """
    if norm_pix:
        target = normalize_patches(target)
    return _masked_mean(((pred.float() - target.float()) ** 2).mean(dim=-1), mask)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None, norm_pix: bool = False) -> Tensor:
    """As :func:`masked_mse` with absolute error (SimMIM)."""
    if norm_pix:
        target = normalize_patches(target)
    return _masked_mean((pred.float() - target.float()).abs().mean(dim=-1), mask)


def _nearest_sq_dists(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    d = torch.cdist(a.float(), b.float()).pow(2)  # [B, N, M]
    return d.min(dim=2).values, d.min(dim=1).values


def chamfer_l2(a: Tensor, b: Tensor) -> Tensor:
    """Point-MAE's ChamferDistanceL2: ``mean(min ||a-b||^2) + mean(min ||b-a||^2)``, ``[B, N, 3]`` x ``[B, M, 3]``."""
    d1, d2 = _nearest_sq_dists(a, b)
    return d1.mean() + d2.mean()


def chamfer_l1(a: Tensor, b: Tensor) -> Tensor:
    """Point-MAE's ChamferDistanceL1: ``(mean(min ||a-b||) + mean(min ||b-a||)) / 2``."""
    d1, d2 = _nearest_sq_dists(a, b)
    return (d1.clamp_min(0).sqrt().mean() + d2.clamp_min(0).sqrt().mean()) / 2


def scaled_cosine_error(pred: Tensor, target: Tensor, gamma: float = 2.0, mask: Tensor | None = None) -> Tensor:
    """GraphMAE's SCE: mean of ``(1 - cos(pred, target))^gamma`` over (masked) nodes."""
    cos = F.cosine_similarity(pred.float(), target.float(), dim=-1)
    return _masked_mean((1 - cos).pow(gamma), mask)


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.07, symmetric: bool = True) -> Tensor:
    """InfoNCE between paired embeddings ``[B, D]``: row i of ``a`` should match row i of ``b``."""
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    logits = a @ b.t() / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.t(), labels)) / 2
    return loss
