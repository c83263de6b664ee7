"""HiCMAE pre-training (recipe ``audiovisual/hicmae``) on any folder of talking-face clips with sound.

Labels are not used. Each item is a 2.56 s window (16 face frames + 256 filter-bank frames); the
training step flips the video left-right at random and draws both masks from the step's seed. At
the end, a few windows are reconstructed (pictures and ``reconstruction.json``: the loss on the hidden
patches next to copying the nearest visible patch, under the same masks).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from maskworks.core.training.task import StepContext, Task
from maskworks.domains.audiovisual.data import AVWindows
from maskworks.domains.audiovisual.features import normalize_video
from maskworks.domains.audiovisual.hicmae import HiCMAE


def hicmae_kwargs(cfg: dict) -> dict:
    """The :class:`HiCMAE` arguments of a recipe: ``model`` sizes and the ``masking`` ratios."""
    m, k = dict(cfg.get("model", {})), cfg.get("masking", {})
    if "levels" in m:
        m["levels"] = tuple(m["levels"])
    return m | {"video_mask_ratio": float(k.get("video_ratio", 0.9)), "audio_mask_ratio": float(k.get("audio_ratio", 0.8))}


def hflip(video: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Flip ``[B, C, T, H, W]`` clips left-right where ``flip`` ``[B]`` is True."""
    return torch.where(flip.view(-1, 1, 1, 1, 1), video.flip(-1), video)


class HiCMAETask(Task):
    """``data``: root, split, val_split, windows; ``masking``: video_ratio, audio_ratio; ``model``:
    :class:`HiCMAE` sizes (levels, temperature, contrastive_weight, frame_diff, ...)."""

    def build_model(self) -> HiCMAE:
        return HiCMAE(**hicmae_kwargs(self.cfg))

    def build_dataset(self, split: str = "train") -> AVWindows:
        d = self.cfg["data"]
        name = d.get("split") if split == "train" else d.get("val_split")
        if split != "train" and not name:
            raise ValueError("no val_split")
        return AVWindows(d["root"], split=name or None, windows=int(d.get("windows", 4)), require="both",
                         face_crop=str(d.get("face_crop", "none")))

    def training_step(self, model, batch, ctx: StepContext):
        video = batch["video"]
        if self.cfg.get("augment", {}).get("flip", True):
            video = hflip(video, (ctx.rand() < 0.5).to(video.device))
        raw = model.module if hasattr(model, "module") else model
        vm = ctx.mask(raw.video.masking, raw.video.grid)
        am = ctx.mask(raw.audio.masking, raw.audio.grid)
        out = model(normalize_video(video), batch["audio"], vm, am, video_target=video)
        return {"loss": out.loss, "loss_video": out.loss_video.detach(), "loss_audio": out.loss_audio.detach(),
                "loss_contrastive": out.loss_contrastive.detach()}

    @torch.no_grad()
    def on_fit_end(self, model: HiCMAE, run_dir: Path) -> dict:
        """Reconstruct the middle window of up to 4 held-out clips (the val split, else training clips)."""
        from maskworks.domains.audiovisual.viz import reconstruction_panel, reconstruction_scores

        try:
            ds, which = self.build_dataset("val"), "val"
        except Exception:  # noqa: BLE001 - no held-out split: show training clips, and say so
            ds, which = self.build_dataset("train"), "train"
        out_dir = Path(run_dir) / "reconstructions"
        out_dir.mkdir(parents=True, exist_ok=True)
        dev = next(model.parameters()).device
        g = torch.Generator().manual_seed(1234)
        rows, pictures = [], []
        for k in range(min(4, len(ds.entries))):
            item = ds[k * ds.windows + ds.windows // 2]
            video, audio = item["video"][None].to(dev), item["audio"][None].to(dev)
            vm, am = model.make_masks(1, g)
            vm, am = vm.to(dev), am.to(dev)
            rec_v, rec_a = model.reconstruct(normalize_video(video), audio, vm, am, video_target=video)
            scores = reconstruction_scores(model, video, audio, vm, am)
            name = ds.entries[k].name
            rows.append({"clip": name} | scores)
            reconstruction_panel(video[0].cpu(), audio[0].cpu(), rec_v[0].cpu(), rec_a[0].cpu(), vm.mask[0].cpu(),
                                 am.mask[0].cpu(), model).save(out_dir / f"{name}.png")
            pictures.append(str(out_dir / f"{name}.png"))
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "clip"}
        (Path(run_dir) / "reconstruction.json").write_text(json.dumps({"split": which, "clips": rows, "mean": mean},
                                                                       indent=2))
        return {"reconstruction_split": which, **{k: round(v, 5) for k, v in mean.items()}, "reconstructions": pictures}
