"""MemMC-MAE: a memory-augmented, multi-level cross-attentional masked autoencoder for
unsupervised anomaly detection in chest X-rays (after Tian et al., MICCAI MLMI 2023).

Trained on *normal* images only, with heavy masking. Two ideas make anomalies reconstruct badly:

* **memory** — every encoder block's self-attention also attends to learned memory slots
  (:class:`MemoryAttention`: slots appended to keys and values). The slots are shared by all
  images, so they learn prototypes of normal anatomy; a token is re-expressed partly through them,
  which pulls the representation of a lesion towards "normal" and leaves a reconstruction error.
* **multi-level cross-attention** — the decoder cross-attends to the (visible) tokens of *every*
  encoder level, combined per decoder block by learned softmax gates, so fine detail from early
  levels is available to the decoder (sharper normal reconstructions, fewer false positives).

Both can be switched off (``memory_size=0``, ``multi_level=False``); with both off the model is
exactly the plain :class:`~maskworks.core.mae.MaskedAutoencoder` (the ablation's baseline).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from maskworks.core.layers import Attention, Block
from maskworks.core.mae import MAEOutput, MaskedAutoencoder
from maskworks.core.masking import Mask
from maskworks.core.masking.registry import build_masking
from maskworks.core.training.task import StepContext, Task, unwrap
from torch import Tensor, nn

__all__ = ["MemMCMAE", "MemMCTask", "MemoryAttention", "normal_split", "recalibrate"]


class MemoryAttention(Attention):
    """Self-attention whose keys and values also hold ``memory_size`` learned slots (shared by every image):
    each token is re-expressed partly through prototypes of what training images looked like."""

    def __init__(self, dim: int, num_heads: int, memory_size: int, qkv_bias: bool = True) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias)
        self.memory = nn.Parameter(torch.zeros(memory_size, dim))
        nn.init.normal_(self.memory, std=0.02)

    def extra_kv(self, batch: int) -> tuple[Tensor, Tensor]:
        d = self.memory.shape[1]
        mk, mv = self.qkv(self.memory[None])[..., d:].chunk(2, dim=-1)  # the slots' keys and values, once
        return self._heads(mk).expand(batch, -1, -1, -1), self._heads(mv).expand(batch, -1, -1, -1)


class MemMCMAE(MaskedAutoencoder):
    """:class:`MaskedAutoencoder` with memory slots in the encoder and a decoder that
    cross-attends to gated encoder levels.

    ``memory_size`` slots of width ``embed_dim`` per encoder block (0 = no memory);
    ``multi_level`` adds a cross-attention sub-layer to each decoder block whose context is
    ``sum_l softmax(gate_j)_l * proj_l(LN(h_l))`` over the encoder levels ``h_1..h_depth``.
    """

    def __init__(self, *args, memory_size: int = 32, multi_level: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dim = self.patch_embed.out_features
        ddim = self.decoder_embed.out_features
        depth, ddepth = len(self.blocks), len(self.decoder_blocks)
        self.memory_size = int(memory_size)
        self.multi_level = bool(multi_level)
        if self.memory_size > 0:
            for blk in self.blocks:
                blk.attn = MemoryAttention(dim, blk.attn.num_heads, self.memory_size)
            self._register_load_state_dict_pre_hook(_memory_keys_moved)
        if self.multi_level:
            if ddepth == 0:
                raise ValueError("multi_level=True needs decoder_depth >= 1 (the decoder blocks cross-attend)")
            first = self.decoder_blocks[0]
            heads = first.attn.num_heads
            mlp_ratio = first.mlp.fc1.out_features / ddim
            norm = type(first.norm1)
            eps = getattr(first.norm1, "eps", 1e-6)
            self.decoder_blocks = nn.ModuleList([
                Block(ddim, heads, mlp_ratio, qkv_bias=True, norm_layer=lambda d: norm(d, eps=eps),
                      cross_attention=True) for _ in range(ddepth)])
            self.level_norms = nn.ModuleList([nn.LayerNorm(dim, eps=1e-6) for _ in range(depth)])
            self.level_proj = nn.ModuleList([nn.Linear(dim, ddim) for _ in range(depth)])
            # gates start favouring the last level (what a plain MAE decoder sees) and learn from there
            init = torch.zeros(ddepth, depth)
            init[:, -1] = 2.0
            self.level_gates = nn.Parameter(init)
        if self.memory_size > 0 or self.multi_level:
            self.initialize_weights()  # the replaced attention and decoder blocks, the level projections

    @property
    def memory(self) -> list[nn.Parameter] | None:
        """Each encoder block's memory slots ``[memory_size, embed_dim]`` (None without memory)."""
        return [blk.attn.memory for blk in self.blocks] if self.memory_size > 0 else None

    def gate_weights(self) -> Tensor:
        """``[decoder_depth, depth]``: how much each decoder block listens to each encoder level."""
        if not self.multi_level:
            raise ValueError("this model has no multi-level cross-attention (multi_level=False)")
        return self.level_gates.softmax(-1)

    def level_contexts(self, levels: Sequence[Tensor]) -> list[Tensor]:
        """One cross-attention context per decoder block: the gated sum of projected encoder levels."""
        proj = torch.stack([p(n(h)) for h, n, p in zip(levels, self.level_norms, self.level_proj)], 0)
        w = self.gate_weights().to(proj.dtype)  # [Dd, L]
        return [torch.einsum("l,lbnd->bnd", w[j], proj) for j in range(w.shape[0])]

    # -- decoder --------------------------------------------------------------------------
    def forward_decoder(self, latent: Tensor, mask: Mask, levels: Sequence[Tensor] | None = None) -> Tensor:
        if not self.multi_level:
            return super().forward_decoder(latent, mask)
        if levels is None:
            raise ValueError("multi-level decoding needs the encoder levels: use forward() or forward_intermediates()")
        return super().forward_decoder(latent, mask, contexts=self.level_contexts(levels))

    def forward(self, imgs: Tensor, mask: Mask | None = None, generator: torch.Generator | None = None) -> MAEOutput:
        if mask is None:
            mask = self.make_mask(imgs.shape[0], generator, imgs.device)
        patches = self.patchify(imgs)
        latent, levels = self.forward_intermediates(imgs, mask, patches)
        pred = self.forward_decoder(latent, mask, levels)
        return MAEOutput(self.forward_loss(imgs, pred, mask, patches), pred, mask)


def _memory_keys_moved(state_dict: dict, prefix: str, *args) -> None:
    """Weights saved before the slots moved into the attention layers (``memory.{i}``, e.g. the shipped
    memmc-cxr.safetensors) load as ``blocks.{i}.attn.memory``."""
    for key in [k for k in state_dict if k.startswith(prefix + "memory.")]:
        i = key[len(prefix + "memory."):]
        state_dict[f"{prefix}blocks.{i}.attn.memory"] = state_dict.pop(key)


def normal_split(is_normal: Tensor, holdout: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Indices of the normal images, split into (train, held-out calibration) by a seeded permutation.

    The held-out normals are never trained on: their scores normalise new scores and set the
    default threshold, so they must behave like unseen normal images do.
    """
    idx = torch.nonzero(is_normal, as_tuple=False).flatten()
    perm = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]
    n_hold = int(round(len(idx) * holdout))
    return perm[n_hold:].sort().values, perm[:n_hold].sort().values


class _Subset(torch.utils.data.Dataset):
    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": self.images[i], "index": torch.tensor(i)}


class MemMCTask(Task):
    """Recipe ``medical/memmc-cxr``: MemMC-MAE on the *normal* images of ``data.split``.

    ``data.holdout`` (fraction) of those normals is kept out of training for calibration
    (``build_dataset("calib")``); ``model.memory_size`` / ``model.multi_level`` switch the two
    ideas for the ablation. ``scoring`` holds the scorer's settings, stored with the weights.
    """

    SECTIONS = {"scoring": None}  # the scorer's settings (AnomalyScorer.from_config checks them)

    def build_model(self) -> MemMCMAE:
        m = dict(self.cfg.get("model", {}))
        d = self.cfg["data"]
        size = int(d["size"])
        return MemMCMAE(input_size=(size, size), in_chans=int(d.get("channels", 1)),
                        masking=build_masking(self.cfg.get("masking")), **m)

    def _folder(self, split: str | None):
        from maskworks.core.datasets import LabelledImageFolder
        from maskworks.core.io import resolve_shipped

        d = self.cfg["data"]
        return LabelledImageFolder(resolve_shipped(d["root"]), split=split, size=int(d["size"]),
                                   channels=int(d.get("channels", 1)))

    def build_dataset(self, split: str = "train") -> torch.utils.data.Dataset:
        """``train``: training normals; ``calib``: held-out training normals; ``val``: the whole
        validation split (normal and abnormal, with labels)."""
        d = self.cfg["data"]
        if split == "val":
            return self._folder(d.get("val_split"))
        ds = self._folder(d.get("split"))
        train_idx, calib_idx = normal_split(ds.is_normal, float(d.get("holdout", 0.1)), int(d.get("holdout_seed", 0)))
        return _Subset(ds.images[train_idx if split == "train" else calib_idx])

    def training_step(self, model, batch, ctx: StepContext):
        from maskworks.core.tasks.image_mae import random_resized_crop

        x = batch["image"]
        aug = self.cfg.get("augment", {}) or {}
        if aug.get("crop_scale"):
            x = random_resized_crop(x, tuple(aug["crop_scale"]), ctx.rand(3))
        raw = unwrap(model)
        mask = ctx.mask(raw.masking, raw.grid)
        return model(x, mask).loss

    def model_config(self) -> dict:
        return {k: self.cfg[k] for k in ("task", "model", "data", "masking", "name", "scoring") if k in self.cfg}

    def on_fit_end(self, model: MemMCMAE, run_dir: Path) -> dict:
        """Score the held-out normals and write ``anomaly.json`` (the record the app and the
        predictor need: recipe, data sizes, normal-score statistics and the default threshold)."""
        from maskworks.domains.medical.anomaly.scoring import AnomalyScorer, Calibration

        scorer = AnomalyScorer.from_config(model, self.cfg.get("scoring") or {})
        calib = self.build_dataset("calib")
        train = self.build_dataset("train")
        train_n = len(train)
        if scorer.standardise != "none":  # per-pixel statistics from training normals, image ones from held-out
            scorer.fit_normal(train.images)
        res = scorer.score(calib.images, progress=False)
        cal = Calibration.fit(res.scores, res.heatmaps, specificity=float((self.cfg.get("scoring") or {})
                                                                          .get("specificity", 0.95)))
        from maskworks.domains.medical.anomaly.ood import DistributionGate

        gate = DistributionGate.fit(calib.images, cal.normalise(res.scores.numpy()),
                                    fitted_on=f"{len(calib)} held-out normal images of {self.cfg['data']['root']}")
        record = {
            "model": self.cfg.get("name", "memmc"), "version": _version_string(self.cfg),
            "recipe": self.cfg, "data": {"root": self.cfg["data"]["root"], "split": self.cfg["data"].get("split"),
                                         "train_normals": train_n, "calibration_normals": len(calib)},
            "steps": int((self.cfg.get("trainer") or {}).get("max_steps", 0)),
            "scoring": scorer.config(), "calibration": cal.to_dict(), "pixel_stats": scorer.pixel_stats(),
            "ood": gate.to_dict(),
        }
        (Path(run_dir) / "anomaly.json").write_text(json.dumps(record, indent=2, default=str))
        return {"calibration_normals": len(calib), "threshold_z": round(cal.threshold, 4),
                "anomaly_record": str(Path(run_dir) / "anomaly.json")}


def recalibrate(weights: str | Path, scoring: dict | None = None) -> dict:
    """Re-score a trained run with (new) ``scoring`` settings and rewrite its ``anomaly.json``
    (same calibration protocol as at the end of training); returns the record."""
    from maskworks.core.training.task import load_trained

    weights = Path(weights)
    task, model = load_trained(weights)
    if scoring:
        task.cfg["scoring"] = {**(task.cfg.get("scoring") or {}), **scoring}
    task.on_fit_end(model, weights.parent)
    return json.loads((weights.parent / "anomaly.json").read_text())


def _version_string(cfg: dict) -> str:
    import hashlib

    blob = json.dumps({k: cfg.get(k) for k in ("model", "data", "masking", "trainer", "scoring")},
                      sort_keys=True, default=str)
    return f"{cfg.get('name', 'memmc')}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"
