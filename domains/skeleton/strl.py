"""STRL (SkeletonMAE's Spatial-Temporal Representation Learning) for action recognition.

For each person, the (pre-trained) SkeletonMAE encoder codes every joint of every segment; a
learnable temporal position embedding marks the segment; ``spatial_layers`` (M = 3) blocks model
the body (a GIN layer over the bones) and its motion (a temporal convolution over segments), each
with a residual; multi-scale temporal pooling averages the joints and then the segments into 1, 2
and 4 bins and concatenates them; the persons present are averaged; an MLP gives the class logits.
The paper's figure is the guide for this layout (no code was released); the temporal convolution
inside each block is our choice, so the blocks can relate neighbouring segments before pooling.

``probe_features`` is the frozen-encoder path of the study's linear probe: the encoder's codes
pooled the same way, without the blocks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskworks.core.training.task import StepContext, Task

from .graph_mae import GIN, gin_layer
from .layouts import Layout, get_layout
from .skeleton_mae import batched_edges


class SpatialTemporalBlock(nn.Module):
    """``h + GIN(LN(h))`` over the bones, then ``h + TemporalConv(LN(h))`` over segments."""

    def __init__(self, dim: int, kernel: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.spatial = gin_layer(dim, dim)
        self.temporal = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, edge_index: Tensor) -> Tensor:
        g, s, v, d = h.shape  # graphs (batch x persons), segments, joints, dim
        y = self.spatial(self.norm1(h).reshape(-1, d), batched_edges(edge_index, g * s, v)).reshape(g, s, v, d)
        h = h + self.drop(self.act(y))
        y = self.norm2(h).permute(0, 2, 3, 1).reshape(g * v, d, s)
        y = self.temporal(y).reshape(g, v, d, s).permute(0, 3, 1, 2)
        return h + self.drop(self.act(y))


def multiscale_temporal_pool(h: Tensor, scales: Sequence[int]) -> Tensor:
    """``[G, S, V, D]`` -> ``[G, D * sum(scales)]``: mean over joints, then segments averaged into
    each number of bins in ``scales`` (1 = the whole window)."""
    per_segment = h.mean(dim=2).transpose(1, 2)  # [G, D, S]
    return torch.cat([F.adaptive_avg_pool1d(per_segment, k).flatten(1) for k in scales], dim=1)


class STRL(nn.Module):
    """SkeletonMAE encoder per person + temporal position embedding + M spatial-temporal blocks +
    multi-scale temporal pooling + MLP classifier. Input ``x`` ``[B, M, S, V, F]``, ``valid`` ``[B, M]``."""

    def __init__(self, num_classes: int, layout: str | Layout = "ntu25", frames_per_node: int = 4, coords: int = 3,
                 hidden: int = 64, num_layers: int = 3, segments: int = 8, spatial_layers: int = 3,
                 scales: Sequence[int] = (1, 2, 4), dropout: float = 0.3, encoder_dropout: float = 0.0) -> None:
        super().__init__()
        self.layout = get_layout(layout)
        self.scales = tuple(int(k) for k in scales)
        self.num_classes = num_classes
        self.encoder = GIN(frames_per_node * coords + self.layout.num_joints, hidden, num_layers, dropout=encoder_dropout)
        self.pos_embed = nn.Parameter(torch.zeros(segments, hidden))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(SpatialTemporalBlock(hidden, dropout=dropout / 3) for _ in range(spatial_layers))
        width = hidden * sum(self.scales)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Dropout(dropout), nn.Linear(width, hidden), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.register_buffer("edge_index", self.layout.edge_index(), persistent=False)

    def encode(self, x: Tensor) -> Tensor:
        """``[G, S, V, F]`` -> ``[G, S, V, D]`` codes (the SkeletonMAE encoder, unmasked)."""
        g, s, v, f = x.shape
        joint_id = torch.eye(v, device=x.device, dtype=x.dtype).repeat(g * s, 1)  # as in SkeletonMAE
        flat = torch.cat([x.reshape(-1, f), joint_id], dim=-1)
        return self.encoder(flat, batched_edges(self.edge_index, g * s, v)).reshape(g, s, v, -1)

    @staticmethod
    def _persons_mean(z: Tensor, valid: Tensor) -> Tensor:
        w = valid.to(z.dtype)
        return (z * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)

    def probe_features(self, x: Tensor, valid: Tensor) -> Tensor:
        """Frozen-encoder features ``[B, D * sum(scales)]`` (encoder codes, multi-scale pooled)."""
        b, m = x.shape[:2]
        z = multiscale_temporal_pool(self.encode(x.flatten(0, 1)), self.scales).reshape(b, m, -1)
        return self._persons_mean(z, valid)

    def features(self, x: Tensor, valid: Tensor) -> Tensor:
        b, m, s = x.shape[:3]
        h = self.encode(x.flatten(0, 1)) + self.pos_embed[:s, None, :]
        for blk in self.blocks:
            h = blk(h, self.edge_index)
        return self._persons_mean(multiscale_temporal_pool(h, self.scales).reshape(b, m, -1), valid)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return self.head(self.features(x, valid))

    def load_encoder(self, skeleton_mae_state: dict[str, Tensor]) -> None:
        """Copy a SkeletonMAE's encoder (``graph.encoder.*``) into this model's encoder."""
        prefix = "graph.encoder."
        enc = {k[len(prefix):]: v for k, v in skeleton_mae_state.items() if k.startswith(prefix)}
        if not enc:
            raise ValueError("the state has no SkeletonMAE encoder (graph.encoder.*)")
        self.encoder.load_state_dict(enc)


def _raw(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


class STRLTask(Task):
    """Fine-tuning: STRL on labelled windows, encoder from ``model.pretrained`` (a SkeletonMAE
    ``model.safetensors`` or run folder; none = random init). ``data`` as the SkeletonMAE task plus
    ``label_smoothing``; ``model``: :class:`STRL` arguments (``num_classes`` from the data)."""

    def _collection(self):
        if getattr(self, "_coll", None) is None:
            from .data import read_collection

            self._coll = read_collection(self.cfg.get("data", {}).get("root", "shipped:skeleton/cmu"))
        return self._coll

    def _indices(self) -> list[int]:
        from .skeleton_mae import SkeletonMAETask

        return SkeletonMAETask._indices(self)  # same subject / sequence filters

    def build_dataset(self, split: str = "train"):
        if getattr(self, "_ds", None) is None:
            from .data import WindowDataset

            d, m = self.cfg.get("data", {}), self.cfg.get("model", {})
            self._ds = WindowDataset(self._collection(), self._indices(), frames=int(d.get("frames", 32)),
                                     frames_per_node=int(m.get("frames_per_node", 4)), stride=int(d.get("stride", 8)),
                                     max_persons=int(d.get("max_persons", 2)), persons="all",
                                     max_windows=d.get("max_windows"))
        return self._ds

    def model_kwargs(self) -> dict:
        m = {k: v for k, v in self.cfg.get("model", {}).items() if k != "pretrained"}
        if "num_classes" not in m:  # given in a trained model's stored recipe, so loading needs no data
            m["num_classes"] = len(self._collection().label_names)
        m.setdefault("segments", int(self.cfg.get("data", {}).get("frames", 32)) // int(m.get("frames_per_node", 4)))
        return m

    def model_config(self) -> dict:
        cfg = super().model_config()
        model = dict(cfg.get("model", {}))
        model.pop("pretrained", None)  # the weights now hold the encoder; rebuilding must not need the file
        model.update({k: v for k, v in self.model_kwargs().items() if k in ("num_classes", "segments")})
        coll = self._collection()
        return {**cfg, "model": model, "label_names": coll.label_names}

    def build_model(self) -> STRL:
        model = STRL(**self.model_kwargs())
        pre = self.cfg.get("model", {}).get("pretrained")
        if pre:
            from maskworks.core.io import resolve_shipped
            from maskworks.core.training.checkpoint import load_weights

            p = resolve_shipped(pre)
            model.load_encoder(load_weights(p / "model.safetensors" if p.is_dir() else p))
        return model

    def training_step(self, model, batch, ctx: StepContext):
        from .data import augment

        a = self.cfg.get("augment", {})
        x = augment(batch["x"], ctx.rand(2), float(a.get("max_angle_deg", 30.0)), tuple(a.get("scale", (0.9, 1.1))))
        logits = model(x, batch["valid"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=float(self.cfg.get("data", {}).get(
            "label_smoothing", 0.1)))
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        return {"loss": loss, "accuracy": acc.detach()}

    def on_fit_end(self, model: nn.Module, run_dir: Path) -> dict:
        """Training-window accuracy (what the model fits; held-out figures come from ``maskworks eval``)."""
        raw = _raw(model).eval()
        ds = self.build_dataset()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(ds), 64):
                items = [ds[j] for j in range(i, min(len(ds), i + 64))]
                x = torch.stack([t["x"] for t in items]).to(raw.pos_embed.device)
                valid = torch.stack([t["valid"] for t in items]).to(x.device)
                y = torch.stack([t["label"] for t in items]).to(x.device)
                correct += int((raw(x, valid).argmax(1) == y).sum())
        return {"train_window_accuracy": round(correct / max(len(ds), 1), 4), "train_windows": len(ds)}
