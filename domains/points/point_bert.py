"""Point-BERT (Yu et al. 2022): nearest-block masking of groups, BERT-style encoder, and optionally
a dVAE tokenizer whose discrete group ids are the prediction targets.

The encoder sees every group, with a learned mask token in place of the hidden ones (BERT), and
the masked positions are a contiguous block: the 25-45 % of groups nearest a random seed group
(:class:`PointBlockMasking`). With ``use_dvae`` the target of a masked group is the id the dVAE
assigns to it (cross-entropy); without, its points (Chamfer-L2, as Point-MAE).

Simplifications, stated: the dVAE is trained jointly with the BERT loss (the paper pre-trains it
first) and tokenises each group on its own with a mini-PointNet (the paper's uses a DGCNN over
neighbouring groups); no MoCo term and no class token.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from maskworks.core.losses import chamfer_l2
from maskworks.core.masking import (
    Mask,
    PointBlockMasking,
    gather_tokens,
    replace_masked,
)
from maskworks.core.training.task import StepContext, unwrap
from torch import Tensor, nn

from .encoder import PointEncoder
from .point_mae import PointMAETask, masked_group_chamfer
from .tokenizer import MiniPointNet


def gumbel_softmax(logits: Tensor, u: Tensor, tau: float = 1.0, hard: bool = False) -> Tensor:
    """Gumbel-softmax from given uniform draws ``u`` (so the noise comes from the step's generator)."""
    g = -torch.log(-torch.log(u.to(logits).clamp(1e-9, 1 - 1e-9)))
    soft = F.softmax((logits + g) / tau, dim=-1)
    if not hard:
        return soft
    hard_1h = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft)
    return hard_1h - soft.detach() + soft  # straight-through: one-hot forward, soft gradient


class DVAE(nn.Module):
    """Group -> logits over a small codebook -> (Gumbel-softmax mix of codes) -> group points."""

    def __init__(self, group_size: int = 32, num_tokens: int = 64, code_dim: int = 64, hidden: int = 32) -> None:
        super().__init__()
        self.num_tokens, self.group_size = num_tokens, group_size
        self.encoder = MiniPointNet(num_tokens, hidden)
        self.codebook = nn.Parameter(torch.randn(num_tokens, code_dim) * 0.1)
        self.decoder = nn.Sequential(nn.Linear(code_dim, 128), nn.GELU(), nn.Linear(128, group_size * 3))

    def logits(self, neighborhoods: Tensor) -> Tensor:
        return self.encoder(neighborhoods)

    @torch.no_grad()
    def tokens(self, neighborhoods: Tensor) -> Tensor:
        """Discrete ids ``[B, G]`` in ``[0, num_tokens)``."""
        return self.logits(neighborhoods).argmax(-1)

    def forward(self, neighborhoods: Tensor, u: Tensor, tau: float = 1.0, hard: bool = False) -> tuple[Tensor, Tensor]:
        """Reconstructed groups ``[B, G, K, 3]`` and logits ``[B, G, V]``; ``u`` uniform ``[B, G, V]``."""
        logits = self.logits(neighborhoods)
        mix = gumbel_softmax(logits, u, tau, hard) @ self.codebook
        b, g, _ = logits.shape
        return self.decoder(mix).reshape(b, g, self.group_size, 3), logits

    def loss(self, neighborhoods: Tensor, u: Tensor, tau: float = 1.0, kl_weight: float = 0.1) -> Tensor:
        """Chamfer-L2 of the reconstruction + ``kl_weight`` x KL(q || uniform) (keeps the codebook in use)."""
        recon, logits = self(neighborhoods, u, tau)
        k = neighborhoods.shape[2]
        rec = chamfer_l2(recon.reshape(-1, k, 3), neighborhoods.reshape(-1, k, 3))
        q = F.softmax(logits, -1).mean(dim=(0, 1))  # batch-averaged code usage
        kl = (q * (q.clamp_min(1e-9).log() + torch.log(torch.tensor(float(self.num_tokens))))).sum()
        return rec + kl_weight * kl


class PointBERT(nn.Module):
    """BERT-style masked group modelling; target = dVAE ids (``use_dvae``) or the group points."""

    def __init__(self, num_groups: int = 64, group_size: int = 32, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, tokenizer_hidden: int = 32, drop_path: float = 0.0,
                 mask_ratio: tuple[float, float] | list[float] = (0.25, 0.45), use_dvae: bool = True,
                 num_tokens: int = 64, tau: float = 1.0, kl_weight: float = 0.1) -> None:
        super().__init__()
        self.encoder = PointEncoder(num_groups, group_size, embed_dim, depth, num_heads, tokenizer_hidden, drop_path)
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.use_dvae, self.tau, self.kl_weight = use_dvae, tau, kl_weight
        self.dvae = DVAE(group_size, num_tokens, hidden=tokenizer_hidden) if use_dvae else None
        self.head = nn.Linear(embed_dim, num_tokens if use_dvae else group_size * 3)
        self.masking = PointBlockMasking(tuple(mask_ratio))
        self.grid = (num_groups,)

    def forward(self, neighborhoods: Tensor, centers: Tensor, mask: Mask, u: Tensor | None = None) -> dict[str, Tensor]:
        enc = self.encoder
        x = replace_masked(enc.tokenizer(neighborhoods), mask, self.mask_token)
        x = enc.transformer(x, enc.pos_embed(centers))
        pred = self.head(gather_tokens(x, mask.ids_mask))  # [B, M, V] or [B, M, K*3]
        if not self.use_dvae:
            loss, _ = masked_group_chamfer(pred.reshape(*pred.shape[:2], -1, 3), neighborhoods, mask)
            return {"loss": loss}
        if u is None:
            u = torch.rand(*neighborhoods.shape[:2], self.dvae.num_tokens, device=neighborhoods.device)
        dvae_loss = self.dvae.loss(neighborhoods, u, self.tau, self.kl_weight)
        target = gather_tokens(self.dvae.tokens(neighborhoods)[..., None], mask.ids_mask)[..., 0]
        ce = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))
        return {"loss": ce + dvae_loss, "cross_entropy": ce.detach(), "dvae": dvae_loss.detach()}


class PointBERTTask(PointMAETask):
    """Point-MAE's data; nearest-block masks from ``centers``; Gumbel noise from ``ctx.rand``."""

    model_cls = PointBERT

    def training_step(self, model, batch, ctx: StepContext):
        raw = unwrap(model)
        nb, ct = raw.encoder.group(self.augmented(batch, ctx))
        mask = ctx.mask(self.strategy(model), raw.grid, centers=ct)
        u = ctx.rand(nb.shape[1], raw.dvae.num_tokens) if raw.use_dvae else None
        return model(nb, ct, mask, u)

    def on_fit_end(self, model, run_dir):
        raw = unwrap(model)
        if not raw.use_dvae:
            return {}
        x = self.build_dataset("train").points[:16]
        nb, _ = raw.encoder.group(x)
        ids = raw.dvae.tokens(nb)
        return {"dvae_codes_used": int(ids.unique().numel()), "dvae_codebook": raw.dvae.num_tokens}
