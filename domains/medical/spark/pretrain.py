"""Self-supervised pre-training tasks for medical images (recipes ``medical/spark-cxr``,
``medical/spark-ct``, ``medical/moco-cxr``, and the 2-D CT slice recipes ``medical/spark-ct28``,
``medical/moco-ct28``, ``medical/simclr-ct28``).

* :class:`SparKCXRTask`: SparK (sparse masked modelling) on a timm CNN over chest X-ray folders;
* :class:`SparKCTTask`: 3-D SparK on patches cut from CT/MR volumes (NIfTI, DICOM series);
* :class:`SimCLRTask`: a second contrastive baseline, SimCLR (in-batch negatives, NT-Xent), on
  the same backbone and data;
* :class:`MoCoCXRTask`: the contrastive baseline, MoCo v2 (momentum key encoder, a queue of
  negatives, InfoNCE with the positive key against the queue; MLP projection head; He et al. 2020,
  Chen et al. 2020), on the *same* backbone and data so the label-fraction study compares
  objectives, not architectures.

Every task writes ``backbone.safetensors`` in ``on_fit_end``: the dense backbone's own parameter
names, loadable with :func:`maskworks.domains.medical.spark.spark.load_backbone` into a fresh
``timm_backbone(...)`` / ``ResNet3d(...)`` for fine-tuning.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from maskworks.core.io import resolve_shipped
from maskworks.core.training.task import StepContext, Task, unwrap
from maskworks.domains.medical.imaging.datasets import (
    LabelledSplit,
    UnlabelledImages,
    standardize,
)
from maskworks.domains.medical.spark.spark import SparK, SparK2d, SparK3d, timm_backbone
from torch import Tensor, nn
from torch.utils.data import Dataset

BACKBONE_FILE = "backbone.safetensors"




# ------------------------------------------------------------------------------- augmentations

def random_resized_crop(x: Tensor, scale: tuple[float, float], u: Tensor) -> Tensor:
    """Batched square random-resized crop; ``u`` is ``[B, 3]`` uniform (area, x-shift, y-shift).

    Works for 2-D ``[B, C, H, W]`` inputs; the draws come from ``ctx.rand`` so resumed and
    multi-process runs crop identically.
    """
    b = x.shape[0]
    side = (scale[0] + u[:, 0] * (scale[1] - scale[0])).sqrt()
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = side.to(x)
    theta[:, 1, 1] = side.to(x)
    theta[:, 0, 2] = ((u[:, 1] * 2 - 1) * (1 - side)).to(x)
    theta[:, 1, 2] = ((u[:, 2] * 2 - 1) * (1 - side)).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(x: Tensor, u: Tensor, dims: Sequence[int] = (-1,)) -> Tensor:
    """Flip sample ``i`` along ``dims[j]`` where ``u[i, j] < 0.5`` (``u`` ``[B, len(dims)]``)."""
    for j, d in enumerate(dims):
        flip = (u[:, j] < 0.5).to(x.device).view(-1, *([1] * (x.dim() - 1)))
        x = torch.where(flip, x.flip(d), x)
    return x


def intensity_jitter(x: Tensor, u: Tensor, strength: float) -> Tensor:
    """Per-sample contrast and brightness change on [0, 1] images (MoCo-CXR keeps it mild:
    radiograph intensities carry the finding, unlike colours in natural images)."""
    c = (1 + strength * (2 * u[:, 0] - 1)).to(x).view(-1, *([1] * (x.dim() - 1)))
    b = (strength * (u[:, 1] - 0.5)).to(x).view(-1, *([1] * (x.dim() - 1)))
    mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    return ((x - mean) * c + mean + b).clamp(0, 1)


def cxr_view(x: Tensor, ctx: StepContext, crop_scale: Sequence[float] | None, flip: bool,
             jitter: float = 0.0) -> Tensor:
    """One augmented, standardised view of a [0, 1] chest X-ray batch."""
    if crop_scale:
        x = random_resized_crop(x, (float(crop_scale[0]), float(crop_scale[1])), ctx.rand(3))
    if flip:
        x = random_flip(x, ctx.rand(1))
    if jitter:
        x = intensity_jitter(x, ctx.rand(2), jitter)
    return standardize(x)


# ------------------------------------------------------------------------------------ 2-D SparK

class _CXRData:
    """Shared data handling of the chest X-ray tasks: ``data.roots`` (list), ``data.size``,
    ``data.train_split`` / ``data.eval_split`` (split-column values, default train and
    val/valid/validation/test) and ``data.holdout`` (only for folders without a split column)."""

    cfg: dict

    def build_dataset(self, split: str = "train") -> Dataset:
        d = self.cfg["data"]
        roots = d.get("roots") or ([d["root"]] if "root" in d else [])
        return UnlabelledImages(roots, int(d["size"]), "train" if split == "train" else "eval",
                                float(d.get("holdout", 0.2)), int(d.get("channels", 1)),
                                d.get("train_split"), d.get("eval_split"))

    def _eval_images(self, n: int = 64) -> Tensor:
        """Up to ``n`` evaluation images of the first folder (to report a held-out loss)."""
        d = self.cfg["data"]
        roots = d.get("roots") or [d["root"]]
        images, _ = LabelledSplit(roots[0], int(d["size"]), d.get("train_split"), d.get("eval_split"),
                                  float(d.get("holdout", 0.2))).part("eval")
        return images[:n]


class SparKCXRTask(_CXRData, Task):
    """SparK on chest X-rays (``model``: backbone, mask_ratio, decoder_width, norm_pix_loss;
    ``augment``: crop_scale, flip)."""

    def build_model(self) -> SparK2d:
        m = self.cfg.get("model", {})
        d = self.cfg["data"]
        return SparK2d(m.get("backbone", "resnet18"), int(d.get("channels", 1)), int(d["size"]),
                       mask_ratio=float(m.get("mask_ratio", 0.6)), decoder_width=int(m.get("decoder_width", 256)),
                       norm_pix_loss=bool(m.get("norm_pix_loss", True)))

    def training_step(self, model: nn.Module, batch: dict[str, Tensor], ctx: StepContext) -> Tensor:
        aug = self.cfg.get("augment", {})
        x = cxr_view(batch["image"], ctx, aug.get("crop_scale"), bool(aug.get("flip", False)))
        raw = unwrap(model)
        mask = ctx.mask(raw.masking, raw.grid)
        loss, _ = model(x, mask)
        return loss

    @torch.no_grad()
    def held_out_loss(self, model: SparK, images: Tensor, seed: int = 1234) -> float:
        """Masked-patch loss on standardised held-out images with a fixed mask."""
        dev = next(model.parameters()).device
        x = standardize(images).to(dev)
        mask = model.make_mask(x.shape[0], torch.Generator().manual_seed(seed)).to(dev)
        return float(model(x, mask)[0])

    def on_fit_end(self, model: nn.Module, run_dir: Path) -> dict:
        """Export the dense backbone; report the held-out masked loss."""
        model = unwrap(model)
        path = Path(run_dir) / BACKBONE_FILE
        model.export_backbone(path)
        out: dict[str, Any] = {"backbone": str(path)}
        try:
            out["val_masked_loss"] = round(self.held_out_loss(model.eval(), self._eval_images()), 5)
        except Exception as e:  # a folder without an evaluation part still exports
            out["val_masked_loss_error"] = str(e)
        return out


# ------------------------------------------------------------------------------------ 3-D SparK

def volume_pipeline(window: str | Sequence[float], size: int, stride: int | None, zoom: float = 1.0):
    """The CT/MR volume pipeline as a MONAI ``Compose`` of this package's transforms (a MONAI user can take it
    or its parts into their own pipeline): read (HU for CT) -> window to [0, 1] (a HU window, or ``"minmax"``:
    MONAI's 0.5-99.5 percentile scaling for MR) -> first channel -> optional trilinear zoom -> ``size``-cube
    patches ``[N, 1, size, size, size]``."""
    from monai.transforms import Compose, Lambda, ScaleIntensityRangePercentiles

    from maskworks.domains.medical.imaging.transforms import HUWindow, LoadMedicalImage, VolumeToPatches

    minmax = isinstance(window, str) and window.lower() == "minmax"
    scale = (ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True) if minmax
             else HUWindow(window if isinstance(window, str) else tuple(window)))
    steps = [LoadMedicalImage(), Lambda(lambda v: v[:1]), scale, Lambda(lambda v: torch.as_tensor(v, dtype=torch.float32))]
    if zoom != 1.0:
        steps.append(Lambda(lambda v: F.interpolate(v[None], scale_factor=zoom, mode="trilinear", align_corners=False)[0]))
    stride = stride or size
    steps.append(VolumeToPatches((size,) * 3, (stride,) * 3))
    return Compose(steps)


def volume_patches(path: str | Path, window: str | Sequence[float], size: int, stride: int | None,
                   min_foreground: float, zoom: float = 1.0) -> Tensor:
    """Read one volume (NIfTI file, DICOM series folder, multi-frame DICOM) through :func:`volume_pipeline`
    and keep the patches with enough foreground (> ``min_foreground`` of voxels above 0.05): air-only patches
    teach nothing."""
    from monai.transforms import Compose

    from maskworks.core.io import InputError

    load, *rest = volume_pipeline(window, size, stride, zoom).transforms
    vol = load(str(path))
    if vol.ndim != 4:
        raise InputError(path, f"is a 2-D image (shape {tuple(vol.shape)}), not a volume",
                         "Pass a NIfTI volume, a DICOM series folder or a multi-frame DICOM")
    shape = [round(s * zoom) for s in vol.shape[1:]] if zoom != 1.0 else list(vol.shape[1:])
    if min(shape) < size:
        raise InputError(path, f"volume {tuple(shape)} (after zoom {zoom}) is thinner than the {size}-voxel patch",
                         "Lower data.patch or data.zoom, or use a larger volume")
    patches = torch.as_tensor(Compose(rest)(vol))
    fg = (patches > 0.05).float().mean(dim=(1, 2, 3, 4))
    return patches[fg > min_foreground]


class VolumePatches(Dataset):
    """3-D patches of every volume in ``data.volumes`` (entries: a path, or ``{path, window}``)."""

    def __init__(self, volumes: Sequence[Any], size: int, stride: int | None = None, window: Any = "minmax",
                 min_foreground: float = 0.1, zoom: float = 1.0) -> None:
        parts = []
        for v in volumes:
            spec = v if isinstance(v, dict) else {"path": v}
            parts.append(volume_patches(resolve_shipped(spec["path"]), spec.get("window", window), size, stride,
                                        float(spec.get("min_foreground", min_foreground)),
                                        float(spec.get("zoom", zoom))))
        self.patches = torch.cat(parts) if parts else torch.zeros(0)
        if len(self.patches) == 0:
            raise ValueError(f"no 3-D patch with foreground > {min_foreground} in data.volumes {list(volumes)}")

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": self.patches[i]}


class SparKCTTask(Task):
    """3-D SparK on volume patches (``data``: volumes, patch, stride, window, zoom, min_foreground;
    ``model``: widths, depths, norm, mask_ratio, decoder_width)."""

    def build_model(self) -> SparK3d:
        m = self.cfg.get("model", {})
        return SparK3d(1, int(self.cfg["data"]["patch"]), widths=tuple(m.get("widths", (32, 64, 128, 256))),
                       depths=tuple(m.get("depths", (1, 1, 1, 1))), norm=m.get("norm", "instance"),
                       mask_ratio=float(m.get("mask_ratio", 0.6)), decoder_width=int(m.get("decoder_width", 128)),
                       norm_pix_loss=bool(m.get("norm_pix_loss", True)))

    def build_dataset(self, split: str = "train") -> VolumePatches:
        d = self.cfg["data"]
        return VolumePatches(d["volumes"], int(d["patch"]), d.get("stride"), d.get("window", "minmax"),
                             float(d.get("min_foreground", 0.1)), float(d.get("zoom", 1.0)))

    def training_step(self, model: nn.Module, batch: dict[str, Tensor], ctx: StepContext) -> Tensor:
        x = batch["image"]
        if self.cfg.get("augment", {}).get("flip", True):
            x = random_flip(x, ctx.rand(3), dims=(-3, -2, -1))
        raw = unwrap(model)
        loss, _ = model(standardize(x), ctx.mask(raw.masking, raw.grid))
        return loss

    def on_fit_end(self, model: nn.Module, run_dir: Path) -> dict:
        model = unwrap(model)
        path = Path(run_dir) / BACKBONE_FILE
        model.export_backbone(path)
        return {"backbone": str(path), "backbone_config": model.backbone_config}


# ---------------------------------------------------------------------------------------- MoCo

def _projection(cin: int, hidden: int, dim: int) -> nn.Sequential:
    """MoCo v2's 2-layer MLP head (replaces v1's linear projection)."""
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


class MoCo(nn.Module):
    """MoCo v2 on a timm CNN: query encoder (``encoder`` + ``head``) trained by InfoNCE against a
    momentum key encoder's positive and a FIFO queue of ``queue_size`` past keys as negatives.

    Single-process BN "shuffling": the key batch is permuted and encoded in ``bn_splits`` chunks
    (each with its own BatchNorm statistics), the single-device stand-in for MoCo's cross-GPU
    shuffle BN that keeps the model from matching keys through batch statistics.
    """

    def __init__(self, backbone: str = "resnet18", in_chans: int = 1, dim: int = 128, hidden: int = 512,
                 queue_size: int = 1024, momentum: float = 0.99, temperature: float = 0.2,
                 bn_splits: int = 4) -> None:
        super().__init__()
        self.encoder = timm_backbone(backbone, in_chans)
        self.backbone_name = backbone
        self.head = _projection(self.encoder.num_features, hidden, dim)
        self.encoder_k = copy.deepcopy(self.encoder)
        self.head_k = copy.deepcopy(self.head)
        for p in list(self.encoder_k.parameters()) + list(self.head_k.parameters()):
            p.requires_grad_(False)
        self.momentum, self.temperature, self.bn_splits = momentum, temperature, bn_splits
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _embed(encoder: nn.Module, head: nn.Module, x: Tensor) -> Tensor:
        feats = encoder(x)
        return F.normalize(head(feats.mean(dim=tuple(range(2, feats.dim())))), dim=1)

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for q, k in zip(list(self.encoder.parameters()) + list(self.head.parameters()),
                        list(self.encoder_k.parameters()) + list(self.head_k.parameters())):
            k.mul_(self.momentum).add_(q.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def _keys(self, x: Tensor, perm: Tensor) -> Tensor:
        splits = max(1, min(self.bn_splits, x.shape[0] // 2))
        k = torch.cat([self._embed(self.encoder_k, self.head_k, c) for c in x[perm].chunk(splits)])
        return k[torch.argsort(perm)]

    @torch.no_grad()
    def _enqueue(self, k: Tensor) -> None:
        n = self.queue.shape[0]
        idx = (self.queue_ptr + torch.arange(k.shape[0], device=k.device)) % n
        self.queue[idx] = k[-n:] if k.shape[0] > n else k
        self.queue_ptr.copy_((self.queue_ptr + k.shape[0]) % n)

    def forward(self, query: Tensor, key: Tensor, perm: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(loss, logits)`` for two views; ``logits[:, 0]`` is the positive. In training mode the
        key encoder is updated by momentum first and the keys are enqueued afterwards."""
        q = self._embed(self.encoder, self.head, query)
        if self.training:
            self._momentum_update()
        perm = torch.arange(key.shape[0], device=key.device) if perm is None else perm.to(key.device)
        k = self._keys(key, perm)
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone().t()
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        loss = F.cross_entropy(logits.float(), torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        if self.training:
            self._enqueue(k)
        return loss, logits

    def backbone_state_dict(self) -> dict[str, Tensor]:
        """Query encoder weights under the dense timm backbone's names."""
        return {k: v.detach().clone().contiguous() for k, v in self.encoder.state_dict().items()}

    def export_backbone(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(self.backbone_state_dict(), str(path), metadata={"format": "pt", "source": "maskworks MoCo v2"})


class MoCoCXRTask(_CXRData, Task):
    """MoCo v2 on chest X-rays (``model``: backbone, dim, hidden, queue_size, momentum,
    temperature, bn_splits; ``augment``: crop_scale, flip, jitter)."""

    def build_model(self) -> MoCo:
        m = self.cfg.get("model", {})
        return MoCo(m.get("backbone", "resnet18"), int(self.cfg["data"].get("channels", 1)), int(m.get("dim", 128)),
                    int(m.get("hidden", 512)), int(m.get("queue_size", 1024)), float(m.get("momentum", 0.99)),
                    float(m.get("temperature", 0.2)), int(m.get("bn_splits", 4)))

    def training_step(self, model: nn.Module, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        if ctx.world_size > 1:
            raise NotImplementedError("MoCo's queue is per process here (no key all-gather): train moco-cxr "
                                      "with trainer.devices=1")
        aug = self.cfg.get("augment", {})
        crop, flip, jitter = aug.get("crop_scale"), bool(aug.get("flip", True)), float(aug.get("jitter", 0.0))
        x = batch["image"]
        q = cxr_view(x, ctx, crop, flip, jitter)
        k = cxr_view(x, ctx, crop, flip, jitter)
        perm = torch.argsort(ctx.rand(1)[:, 0])
        loss, logits = model(q, k, perm)
        acc = (logits.argmax(dim=1) == 0).float().mean()
        return {"loss": loss, "top1": acc.detach()}

    def on_fit_end(self, model: nn.Module, run_dir: Path) -> dict:
        model = unwrap(model)
        path = Path(run_dir) / BACKBONE_FILE
        model.export_backbone(path)
        return {"backbone": str(path)}


# -------------------------------------------------------------------------------------- SimCLR

def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's NT-Xent: each of the 2N views must pick its partner among the other 2N - 1 views
    (the other view of the same image against both views of every other image), cosine similarity
    over ``temperature``, averaged over all 2N views. (``core.losses.info_nce`` is the CLIP form,
    cross-view negatives only; SimCLR also uses the same-view ones.)"""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLR(nn.Module):
    """SimCLR (Chen et al. 2020) on a CNN: both views through one encoder (in one batch, so
    BatchNorm sees both, as SimCLR's global BN) and a 2-layer MLP projection, NT-Xent loss."""

    def __init__(self, backbone: str = "resnet18", in_chans: int = 1, dim: int = 128, hidden: int = 512,
                 temperature: float = 0.2) -> None:
        super().__init__()
        self.encoder = timm_backbone(backbone, in_chans)
        self.backbone_name = backbone
        self.head = _projection(self.encoder.num_features, hidden, dim)
        self.temperature = temperature

    def forward(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss, top1)``: top1 = share of views whose most similar other view is their partner."""
        feats = self.encoder(torch.cat([view1, view2]))
        z = self.head(feats.mean(dim=tuple(range(2, feats.dim()))))
        z1, z2 = z.chunk(2)
        loss = nt_xent(z1, z2, self.temperature)
        with torch.no_grad():
            zn = F.normalize(z.float(), dim=1)
            sim = (zn @ zn.t()).fill_diagonal_(float("-inf"))
            n = z1.shape[0]
            top1 = (sim.argmax(1) == torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)).float().mean()
        return loss, top1

    def backbone_state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().clone().contiguous() for k, v in self.encoder.state_dict().items()}

    def export_backbone(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(self.backbone_state_dict(), str(path), metadata={"format": "pt", "source": "maskworks SimCLR"})


class SimCLRTask(_CXRData, Task):
    """SimCLR on an image folder (``model``: backbone, dim, hidden, temperature; ``augment``:
    crop_scale, flip, jitter), the same data handling as the SparK and MoCo tasks."""

    def build_model(self) -> SimCLR:
        m = self.cfg.get("model", {})
        return SimCLR(m.get("backbone", "resnet18"), int(self.cfg["data"].get("channels", 1)), int(m.get("dim", 128)),
                      int(m.get("hidden", 512)), float(m.get("temperature", 0.2)))

    def training_step(self, model: nn.Module, batch: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        if ctx.world_size > 1:
            raise NotImplementedError("SimCLR's negatives are per process here (no all-gather): train with "
                                      "trainer.devices=1")
        aug = self.cfg.get("augment", {})
        crop, flip, jitter = aug.get("crop_scale"), bool(aug.get("flip", True)), float(aug.get("jitter", 0.0))
        x = batch["image"]
        loss, top1 = model(cxr_view(x, ctx, crop, flip, jitter), cxr_view(x, ctx, crop, flip, jitter))
        return {"loss": loss, "top1": top1}

    def on_fit_end(self, model: nn.Module, run_dir: Path) -> dict:
        model = unwrap(model)
        path = Path(run_dir) / BACKBONE_FILE
        model.export_backbone(path)
        return {"backbone": str(path)}


def dense_backbone_for(cfg: dict) -> nn.Module:
    """A fresh dense backbone matching a recipe (what ``backbone.safetensors`` loads into)."""
    task = cfg["task"]
    m = cfg.get("model", {})
    if task.endswith(":SparKCTTask"):
        from maskworks.domains.medical.spark.resnet3d import ResNet3d

        return ResNet3d(1, tuple(m.get("widths", (32, 64, 128, 256))), tuple(m.get("depths", (1, 1, 1, 1))),
                        m.get("norm", "instance"))
    return timm_backbone(m.get("backbone", "resnet18"), int(cfg["data"].get("channels", 1)))


__all__ = ["SparKCXRTask", "SparKCTTask", "MoCoCXRTask", "MoCo", "SimCLR", "SimCLRTask", "nt_xent", "VolumePatches", "dense_backbone_for",
           "random_resized_crop", "random_flip", "intensity_jitter", "BACKBONE_FILE"]
