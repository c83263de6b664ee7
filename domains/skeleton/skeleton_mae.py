"""SkeletonMAE (Yan et al., ICCV 2023): GraphMAE on the skeleton graph, whole body parts masked.

No code was released; this follows the paper's description (``shared/METHODS.md``) and GraphMAE:

- joints are graph nodes over the bones of the layout (NTU-25 by default), one graph per segment of
  ``frames_per_node`` frames; a node's feature is its joint's bone (position minus its parent's)
  in each frame of that segment (:mod:`.data`), so the model reconstructs pieces of motion;
- masking hides whole body parts (head, torso, each arm, each leg): the core
  :class:`~maskworks.core.masking.BodyPartMasking` draws a priority per part and the
  ``parts_masked`` lowest parts are hidden, the same parts in every segment of a window (the GIN
  keeps every node, so no fixed token count is needed and no part is cut);
- hidden nodes get a learnable mask token; a 3-layer GIN encodes, GraphMAE's re-mask zeroes the
  hidden nodes' codes, a 1-layer GIN decodes; scaled cosine error (beta = 2) on the hidden nodes;
- every node also carries which joint it is (a one-hot, GraphMAE's ``context``): the bone graph is
  left-right symmetric and a whole hidden arm is zeros after the re-mask, so without it neither the
  encoder nor the decoder can tell a left wrist from a right one.

SCE ignores length, so a reconstruction is a direction (a bone keeps its length, so a direction is all
there is to rebuild); ``feature_mean`` (each joint's mean feature over the pre-training windows, the mean
pose, stored with the weights) is the baseline it is compared with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from maskworks.core.masking import BodyPartMasking
from maskworks.core.training.task import StepContext, Task

from .graph_mae import GraphMAE
from .layouts import Layout, get_layout


def batched_edges(edge_index: Tensor, num_graphs: int, num_nodes: int) -> Tensor:
    """One ``edge_index`` for ``num_graphs`` copies of a graph of ``num_nodes`` nodes (PyG batching)."""
    offset = torch.arange(num_graphs, device=edge_index.device) * num_nodes
    return (edge_index[:, None, :] + offset[None, :, None]).reshape(2, -1)


def body_part_mask(strategy: BodyPartMasking, batch: int, segments: int, parts_masked: int,
                   generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Tensor:
    """``[batch, segments, V]`` True on the joints of ``parts_masked`` whole parts per sample, the same
    parts in every segment (the parts with the lowest priorities ``strategy.scores`` draws)."""
    v = strategy.num_joints
    scores = strategy.scores(batch, (v,), generator=generator, device=device)  # [B, V]: the part's priority
    part_of = strategy.part_of.to(scores.device)
    first = torch.stack([torch.nonzero(part_of == p)[0, 0] for p in range(len(strategy.parts))])
    part_scores = scores[:, first]  # [B, P]
    hidden_parts = part_scores.argsort(dim=1)[:, :parts_masked]  # lowest priority = hidden
    hidden = torch.zeros_like(part_scores, dtype=torch.bool).scatter_(1, hidden_parts, True)
    mask = hidden[:, part_of]  # [B, V]
    return mask[:, None, :].expand(batch, segments, v).contiguous()


@dataclass
class SkeletonMAEOutput:
    loss: Tensor
    recon: Tensor  # [B, S, V, F]
    mask: Tensor   # [B, S, V] bool


class SkeletonMAE(nn.Module):
    """GraphMAE over ``[B, S, V, F]`` node features of skeleton windows with body-part masks."""

    def __init__(self, layout: str | Layout = "ntu25", frames_per_node: int = 4, coords: int = 3, hidden: int = 64,
                 num_layers: int = 3, beta: float = 2.0, parts_masked: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.layout = get_layout(layout)
        self.frames_per_node, self.coords = frames_per_node, coords
        self.in_dim = frames_per_node * coords
        self.parts_masked = parts_masked
        self.graph = GraphMAE(self.in_dim, hidden, num_layers, 1, beta, dropout, context_dim=self.layout.num_joints)
        self.register_buffer("edge_index", self.layout.edge_index(), persistent=False)
        self.register_buffer("feature_mean", torch.zeros(self.layout.num_joints, self.in_dim))
        parts = {k: list(v) for k, v in self.layout.parts.items()}
        self.masking = BodyPartMasking(parts_masked / len(parts), parts=parts)

    @property
    def hidden(self) -> int:
        return self.graph.encoder_to_decoder.in_features

    def draw_mask(self, batch: int, segments: int, generator: torch.Generator | None = None) -> Tensor:
        return body_part_mask(self.masking, batch, segments, self.parts_masked, generator, self.edge_index.device)

    def _flat(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, s, v, f = x.shape
        joint_id = torch.eye(v, device=x.device, dtype=x.dtype).repeat(b * s, 1)
        return x.reshape(b * s * v, f), batched_edges(self.edge_index, b * s, v), joint_id

    def forward(self, x: Tensor, mask: Tensor) -> SkeletonMAEOutput:
        b, s, v, f = x.shape
        flat, edges, joint_id = self._flat(x)
        out = self.graph(flat, edges, mask.reshape(-1), joint_id)
        return SkeletonMAEOutput(out.loss, out.recon.reshape(b, s, v, f), mask)

    def encode(self, x: Tensor) -> Tensor:
        """``[B, S, V, D]`` codes of unmasked windows (the unmasked encoder path)."""
        b, s, v, _ = x.shape
        flat, edges, joint_id = self._flat(x)
        return self.graph.forward_encoder(flat, edges, None, joint_id).reshape(b, s, v, -1)


def _raw(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


class SkeletonMAETask(Task):
    """Pre-training on a labelled folder or pyskl file (labels unused). ``data``: root, frames,
    frames_per_node, stride, max_persons, subjects (optional list to train on, e.g. a study's training
    fold); ``augment``: max_angle_deg, scale; ``model``: :class:`SkeletonMAE` arguments."""

    def _collection(self):
        if getattr(self, "_coll", None) is None:
            from .data import read_collection

            self._coll = read_collection(self.cfg.get("data", {}).get("root", "shipped:skeleton/cmu"))
        return self._coll

    def _indices(self) -> list[int]:
        d = self.cfg.get("data", {})
        coll = self._collection()
        keep = d.get("subjects")
        names = d.get("sequences")
        idx = list(range(len(coll.samples)))
        if keep is not None:
            keep = {str(k) for k in keep}
            idx = [i for i in idx if str(coll.samples[i].subject) in keep]
        if names is not None:
            names = set(names)
            idx = [i for i in idx if coll.samples[i].name in names]
        return idx

    def build_dataset(self, split: str = "train"):
        if getattr(self, "_ds", None) is None:
            from .data import WindowDataset

            d, m = self.cfg.get("data", {}), self.cfg.get("model", {})
            self._ds = WindowDataset(self._collection(), self._indices(), frames=int(d.get("frames", 32)),
                                     frames_per_node=int(m.get("frames_per_node", 4)), stride=int(d.get("stride", 8)),
                                     max_persons=int(d.get("max_persons", 2)), persons="each",
                                     max_windows=d.get("max_windows"))
        return self._ds

    def build_model(self) -> SkeletonMAE:
        return SkeletonMAE(**self.cfg.get("model", {}))

    def set_feature_mean(self, model: SkeletonMAE) -> None:
        """Each joint's mean feature over a sample of the training windows (the reconstruction baseline)."""
        xs = self._sample_windows(512)  # [N, S, V, F]
        model.feature_mean.copy_(xs.mean(dim=(0, 1)).to(model.feature_mean))

    def _sample_windows(self, n: int) -> Tensor:
        ds = self.build_dataset()
        return torch.stack([ds[i]["x"] for i in range(0, len(ds), max(1, len(ds) // n))])

    def training_step(self, model, batch, ctx: StepContext):
        from .data import augment

        raw = _raw(model)
        if ctx.step == 0:  # measured at the start (not in build_model, which also rebuilds trained models)
            self.set_feature_mean(raw)
        a = self.cfg.get("augment", {})
        x = augment(batch["x"], ctx.rand(2), float(a.get("max_angle_deg", 30.0)), tuple(a.get("scale", (0.9, 1.1))))
        total = ctx.local_batch * ctx.world_size
        mask = raw.draw_mask(total, x.shape[1], ctx.generator)
        lo = ctx.rank * ctx.local_batch
        return {"loss": model(x, mask[lo:lo + ctx.local_batch].to(x.device)).loss}

    def on_fit_end(self, model: nn.Module, run_dir: Path) -> dict:
        """Masked-joint SCE on up to 256 training windows (fixed masks), beside the SCE of predicting each
        joint's mean feature (the baseline a model that ignores the visible joints could reach)."""
        raw = _raw(model).eval()
        x = self._sample_windows(256).to(raw.feature_mean.device)
        mask = raw.draw_mask(len(x), x.shape[1], torch.Generator().manual_seed(1234))
        with torch.no_grad():
            out = raw(x, mask)
        mean = raw.feature_mean.expand_as(x)
        base = raw.graph.forward_loss(mean.reshape(-1, x.shape[-1]), x.reshape(-1, x.shape[-1]), mask.reshape(-1))
        return {"masked_sce": round(float(out.loss), 5), "mean_feature_sce": round(float(base), 5),
                "windows_scored": len(x)}


def load_skeleton_mae(path: str | Path, device: str | torch.device = "cpu") -> SkeletonMAE:
    from maskworks.core.training.task import load_trained

    _, model = load_trained(path, device)
    if not isinstance(model, SkeletonMAE):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a SkeletonMAE")
    return model



def drawn_joints(x: Tensor, mask: Tensor, pred: Tensor, frames_per_node: int) -> Tensor:
    """Joint positions ``[N, S*L, V, 3]`` of windows whose hidden nodes (``mask``) take the direction of
    ``pred`` at the length of the true feature (SCE fixes directions only; a bone keeps its length),
    chained onto the visible bones."""
    from .data import features_to_joints

    unit = pred / pred.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    feats = torch.where(mask[..., None], unit * x.norm(dim=-1, keepdim=True), x)
    return features_to_joints(feats, frames_per_node)


@torch.no_grad()
def reconstruction_errors(model: SkeletonMAE, x: Tensor) -> dict[str, float]:
    """On windows ``x`` ``[N, S, V, F]``, every pair (``parts_masked``-tuple) of hidden parts in turn: masked
    SCE and the mean position error of the hidden joints (torso units) for SkeletonMAE and for the
    baseline that gives every hidden joint its mean training feature (the mean pose)."""
    from itertools import combinations

    from .data import features_to_joints

    model.eval()
    part_of = torch.as_tensor(model.layout.part_of(), device=x.device)
    truth = features_to_joints(x, model.frames_per_node)
    sums = {"sce": 0.0, "sce_mean_pose": 0.0, "error": 0.0, "error_mean_pose": 0.0}
    combos = list(combinations(range(len(model.layout.parts)), model.parts_masked))
    for parts in combos:
        hidden_joint = torch.isin(part_of, torch.tensor(parts, device=x.device))
        mask = hidden_joint.expand(*x.shape[:3])
        out = model(x, mask)
        mean = model.feature_mean.expand_as(x)
        sums["sce"] += float(out.loss)
        sums["sce_mean_pose"] += float(model.graph.forward_loss(mean.reshape(-1, x.shape[-1]), x.reshape(-1, x.shape[-1]),
                                                                mask.reshape(-1)))
        for key, pred in (("error", out.recon), ("error_mean_pose", mean)):
            drawn = drawn_joints(x, mask, pred, model.frames_per_node)
            sums[key] += float((drawn - truth)[..., hidden_joint, :].norm(dim=-1).mean())
    return {k: v / len(combos) for k, v in sums.items()}
