"""The downstream task: voxel labelling of a radiance grid, pre-trained NeRF-MAE vs random init.

Each voxel of a mesh's grid gets one of five labels derived from the mesh itself (no annotation needed,
yet not in the input): empty, inside (occupied, no surface), and surface facing up / down / sideways
(mean face normal's z above 0.5, below -0.5, or between). The input is the RGB + alpha grid only, so the
model must infer the surface's orientation from the occupancy pattern around each voxel: 3-D context a
masked-grid pre-training should teach. Both models share the architecture (the NeRF-MAE Swin encoder +
UNETR decoder with a 5-class head), data, augmentation (quarter turns about z and mirror flips, which keep
the labels valid) and step budget; only the initial weights differ.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .grid import pad_to_cube
from .mesh import grid_from_mesh
from .nerf_mae import SwinNeRFMAE
from .pretrain import model_input

CLASSES = ["empty", "inside", "up-facing", "down-facing", "side"]


@dataclass
class LabelledGrid:
    name: str
    x: np.ndarray       # [4, S, S, S]
    valid: np.ndarray   # [S, S, S]
    labels: np.ndarray  # [S, S, S] int64 in 0..4


def voxel_labels(occupancy: np.ndarray, normal_sum: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Labels from occupancy fraction, summed normals and sample counts per voxel."""
    lab = np.zeros(occupancy.shape, dtype=np.int64)
    occ = occupancy > 0
    surf = samples > 0
    nz = normal_sum[..., 2] / np.maximum(np.linalg.norm(normal_sum, axis=-1), 1e-9)
    lab[occ & ~surf] = 1
    lab[occ & surf & (nz > 0.5)] = 2
    lab[occ & surf & (nz < -0.5)] = 3
    lab[occ & surf & (nz >= -0.5) & (nz <= 0.5)] = 4
    return lab


def labelled_grid(path: str | Path, size: int = 32, up: str = "y") -> LabelledGrid:
    """A mesh -> its model input at ``size`` and the voxel labels on the same (padded) grid."""
    g = grid_from_mesh(path, size, up=up, normals=True)
    x, valid = model_input(g, size)
    lab = voxel_labels(g.alpha > 0, g.extras["normal_sum"], g.extras["samples"])
    lab_p, _ = pad_to_cube(lab[None], size)
    return LabelledGrid(Path(path).stem, x, valid, lab_p[0])


def augment_labelled(x: Tensor, valid: Tensor, labels: Tensor, k: int, flip: int) -> tuple[Tensor, Tensor, Tensor]:
    """A quarter turn ``k`` about z and a mirror (``flip`` 0: none, 1: x, 2: y), applied alike to all three
    (``[B, C, X, Y, Z]``; labels ``[B, X, Y, Z]``). Up/down/side are unchanged by these."""
    def t(a: Tensor, off: int) -> Tensor:
        a = torch.rot90(a, k, dims=(off, off + 1))
        return a.flip(off + flip - 1) if flip else a
    return t(x, 2), t(valid, 2), t(labels, 1)


def iou_per_class(pred: np.ndarray, labels: np.ndarray, valid: np.ndarray, classes: int = len(CLASSES)) -> np.ndarray:
    out = np.full(classes, np.nan)
    for c in range(classes):
        p, l = (pred == c) & valid, (labels == c) & valid
        union = (p | l).sum()
        if union:
            out[c] = (p & l).sum() / union
    return out


def stack(items: list[LabelledGrid]) -> tuple[Tensor, Tensor, Tensor]:
    return (torch.from_numpy(np.stack([i.x for i in items])), torch.from_numpy(np.stack([i.valid for i in items]))[:, None],
            torch.from_numpy(np.stack([i.labels for i in items])))


def finetune(model: SwinNeRFMAE, train: list[LabelledGrid], steps: int = 300, batch: int = 4, lr: float = 1e-3,
             seed: int = 0, progress: Callable[[int, float], None] | None = None) -> SwinNeRFMAE:
    """Cross-entropy over valid voxels, classes weighted by inverse square-root frequency."""
    x, valid, lab = stack(train)
    counts = torch.bincount(lab[valid[:, 0]].reshape(-1), minlength=len(CLASSES)).float()
    weight = (counts.sum() / counts.clamp_min(1)).sqrt()
    weight = weight / weight.mean()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(train), (batch,), generator=g)
        k, flip = int(torch.randint(0, 4, (1,), generator=g)), int(torch.randint(0, 3, (1,), generator=g))
        xb, vb, lb = augment_labelled(x[idx], valid[idx], lab[idx], k, flip)
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        logits = model.logits(xb)
        loss = F.cross_entropy(logits, lb, weight=weight, reduction="none")
        loss = (loss * vb[:, 0]).sum() / vb.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None and (step + 1) % 25 == 0:
            progress(step + 1, float(loss))
    return model.eval()


@torch.no_grad()
def evaluate(model: SwinNeRFMAE, test: list[LabelledGrid]) -> dict:
    """Mean IoU over the four occupied classes (per grid, then averaged) and voxel accuracy on occupied voxels."""
    ious, accs, per = [], [], {}
    for item in test:
        x, v, lab = stack([item])
        pred = model.logits(x).argmax(1)[0].numpy()
        iou = iou_per_class(pred, item.labels, item.valid)
        occ = item.valid & (item.labels > 0)
        acc = float((pred[occ] == item.labels[occ]).mean()) if occ.any() else float("nan")
        m = float(np.nanmean(iou[1:]))
        ious.append(m)
        accs.append(acc)
        per[item.name] = {"miou_occupied": round(m, 4), "accuracy_occupied": round(acc, 4)}
    return {"miou_occupied": float(np.mean(ious)), "accuracy_occupied": float(np.mean(accs)), "per_grid": per}


def pretrained_vs_scratch(pretrained: SwinNeRFMAE, train: list[LabelledGrid], test: list[LabelledGrid], steps: int = 300,
                          batch: int = 4, lr: float = 1e-3, seed: int = 0,
                          progress: Callable[[str, int, float], None] | None = None) -> dict:
    """Fine-tune a labeller from ``pretrained``'s weights and one from random init, same budget; score both."""
    arch = dict(input_size=pretrained.input_size, embed_dim=pretrained.swin.embed_dim,
                depths=[len(layer[0].blocks) for layer in _stages(pretrained)],
                num_heads=[layer[0].blocks[0].attn.num_heads for layer in _stages(pretrained)],
                window_size=pretrained.swin.window_size[0], out_channels=len(CLASSES))
    out = {"classes": CLASSES, "train_grids": [t.name for t in train], "test_grids": [t.name for t in test],
           "steps": steps, "batch": batch, "lr": lr, "seed": seed}
    for init in ("pretrained", "scratch"):
        torch.manual_seed(seed)
        model = SwinNeRFMAE(**arch)
        if init == "pretrained":
            state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("head.")}
            missing, unexpected = model.load_state_dict(state, strict=False)
            assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
        t0 = time.time()
        finetune(model, train, steps, batch, lr, seed, None if progress is None else (lambda s, l, i=init: progress(i, s, l)))
        out[init] = {**evaluate(model, test), "seconds": round(time.time() - t0, 1)}
    return out


def _stages(model: SwinNeRFMAE) -> list:
    s = model.swin
    return [layer for layer in (s.layers1, s.layers2, s.layers3, s.layers4) if len(layer)][:len(model.ups)]
