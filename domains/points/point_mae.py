"""Point-MAE (Pang et al. 2022): mask 60 % of point groups at random, reconstruct their points.

The encoder sees only the visible groups; the decoder adds mask tokens, and a linear head predicts
``group_size x 3`` centre-relative coordinates per masked group, scored with Chamfer-L2 against
the true neighbourhood (the point order inside a group is arbitrary, hence a set distance).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from maskworks.core.losses import chamfer_l2
from maskworks.core.masking import Mask, RandomMasking, gather_tokens
from maskworks.core.masking.registry import build_masking
from maskworks.core.training.task import StepContext, Task, unwrap
from torch import Tensor, nn

from .encoder import PointDecoder, PointEncoder
from .objects import PretrainClouds, augment


@dataclass
class PointMAEOutput:
    loss: Tensor
    pred: Tensor  # [B, M, K, 3] predicted masked groups (centre-relative)
    target: Tensor  # [B, M, K, 3] true masked groups


def masked_group_chamfer(pred: Tensor, neighborhoods: Tensor, mask: Mask) -> tuple[Tensor, Tensor]:
    """Chamfer-L2 between predicted ``[B, M, K, 3]`` and the true groups at ``mask.ids_mask`` (mean over groups)."""
    b, g, k, _ = neighborhoods.shape
    target = gather_tokens(neighborhoods.reshape(b, g, k * 3), mask.ids_mask).reshape(b, -1, k, 3)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {list(pred.shape)} does not match the masked groups {list(target.shape)}")
    return chamfer_l2(pred.reshape(-1, k, 3), target.reshape(-1, k, 3)), target


class PointMAE(nn.Module):
    """Encoder on visible groups, decoder with mask tokens, linear head -> masked group points."""

    def __init__(self, num_groups: int = 64, group_size: int = 32, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, decoder_depth: int = 2, decoder_num_heads: int = 4, tokenizer_hidden: int = 32,
                 drop_path: float = 0.0, mask_ratio: float = 0.6) -> None:
        super().__init__()
        self.encoder = PointEncoder(num_groups, group_size, embed_dim, depth, num_heads, tokenizer_hidden, drop_path)
        self.decoder = PointDecoder(embed_dim, decoder_depth, decoder_num_heads)
        self.head = nn.Linear(embed_dim, group_size * 3)
        self.masking = RandomMasking(mask_ratio)
        self.grid = (num_groups,)

    def predict(self, features: Tensor) -> Tensor:
        b, m, _ = features.shape
        return self.head(features).reshape(b, m, -1, 3)

    def forward(self, neighborhoods: Tensor, centers: Tensor, mask: Mask) -> PointMAEOutput:
        visible = self.encoder(neighborhoods, centers, mask)
        pred = self.predict(self.decoder(visible, centers, mask))
        loss, target = masked_group_chamfer(pred, neighborhoods, mask)
        return PointMAEOutput(loss, pred, target)




class PointMAETask(Task):
    """Pre-training on the shipped real clouds. ``data``: num_points, scene_crops, pcl_scans, repeat;
    ``augment``: scale range, jitter (rotation about z is always on); ``model``: :class:`PointMAE` args."""

    model_cls: type[nn.Module] = PointMAE

    def build_model(self) -> nn.Module:
        m = dict(self.cfg.get("model", {}))
        masking = self.cfg.get("masking") or {}
        if "ratio" in masking and isinstance(masking["ratio"], (int, float)):
            m.setdefault("mask_ratio", float(masking["ratio"]))
        return self.model_cls(**m)

    def build_dataset(self, split: str = "train") -> PretrainClouds:
        if getattr(self, "_dataset", None) is None:  # built once: on_fit_end reuses it
            self._dataset = self._make_dataset()
        return self._dataset

    def _make_dataset(self) -> PretrainClouds:
        d = self.cfg.get("data", {})
        return PretrainClouds(num_points=int(d.get("num_points", 1024)), scene_crops=int(d.get("scene_crops", 32)),
                              min_points=int(d.get("min_points", 5)), seed=int(d.get("seed", 0)),
                              repeat=int(d.get("repeat", 1)), pcl_scans=str(d.get("pcl_scans", "all")))

    def strategy(self, model: nn.Module):
        spec = self.cfg.get("masking")
        return build_masking(spec) if spec else unwrap(model).masking

    def augmented(self, batch: dict, ctx: StepContext) -> Tensor:
        a = self.cfg.get("augment", {})
        x = batch["points"]
        return augment(x, ctx.rand(2), ctx.rand(*x.shape[1:]), tuple(a.get("scale", (0.8, 1.2))),
                       float(a.get("jitter", 0.01)))

    def training_step(self, model, batch, ctx: StepContext):
        raw = unwrap(model)
        nb, ct = raw.encoder.group(self.augmented(batch, ctx))
        mask = ctx.mask(self.strategy(model), raw.grid, centers=ct)
        return {"loss": model(nb, ct, mask).loss}

    def on_fit_end(self, model: nn.Module, run_dir: Path) -> dict:
        """Masked-group Chamfer-L2 on the (unaugmented) first clouds, and a picture of one reconstruction."""
        ds = self.build_dataset("train")
        raw = unwrap(model)
        x = ds.points[:16].to(next(raw.parameters()).device)
        nb, ct = raw.encoder.group(x)
        mask = self.strategy(model)(len(x), raw.grid, generator=torch.Generator().manual_seed(1234), centers=ct)
        with torch.no_grad():
            out = model(nb, ct, mask.to(x.device))
        path = Path(run_dir) / "reconstruction.png"
        save_point_reconstruction(nb[0], ct[0], mask[0:1], out.pred[0], path)
        return {"masked_chamfer_l2": round(float(out.loss), 6), "reconstruction": str(path)}


def save_point_reconstruction(nb: Tensor, ct: Tensor, mask: Mask, pred: Tensor, path: Path) -> None:
    """Three panels: visible groups, the hidden truth, visible + predicted groups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vis = (nb + ct[:, None])[~mask.flat[0]].reshape(-1, 3).cpu()
    hid_idx = mask.ids_mask[0]
    truth = (nb[hid_idx] + ct[hid_idx][:, None]).reshape(-1, 3).cpu()
    guess = (pred + ct[hid_idx][:, None]).reshape(-1, 3).cpu()
    fig = plt.figure(figsize=(12, 4))
    for i, (title, parts) in enumerate([("visible groups", [(vis, "tab:blue")]),
                                        ("hidden groups (truth)", [(vis, "lightgray"), (truth, "tab:red")]),
                                        ("hidden groups (predicted)", [(vis, "lightgray"), (guess, "tab:green")])]):
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        for pts, col in parts:
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=1, c=col)
        ax.set_title(title)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
