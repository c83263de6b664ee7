"""VideoMAE V2 pre-training (recipe ``video/videomae-v2``) on any ``videos/`` + ``labels.csv`` folder.

The labels are not used; the clips are cut by :class:`~maskworks.domains.video.data.VideoClips`.
At the end, the held-out split's clips (``data.val_split``) are reconstructed: pictures, an animated
GIF, and the hidden-tube error against copying the nearest visible patch.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from maskworks.core.training.task import StepContext, Task
from maskworks.domains.video.data import VideoClips, hflip
from maskworks.domains.video.videomae import VideoMAE, normalize_clip


class VideoMAETask(Task):
    """``data``: root, split, val_split, num_frames, interval, size, scale, windows; ``masking``:
    ratio (tubes hidden from the encoder), decoder_ratio (running cells dropped by the decoder);
    ``model``: :class:`VideoMAE` sizes."""

    def build_model(self) -> VideoMAE:
        d, m, k = self.cfg["data"], dict(self.cfg.get("model", {})), self.cfg.get("masking", {})
        return VideoMAE(num_frames=int(d.get("num_frames", 16)), image_size=int(d.get("size", 112)),
                        mask_ratio=float(k.get("ratio", 0.9)), decoder_mask_ratio=float(k.get("decoder_ratio", 0.5)),
                        **m)

    def build_dataset(self, split: str = "train") -> VideoClips:
        d = self.cfg["data"]
        name = d.get("split") if split == "train" else d.get("val_split")
        return VideoClips(d["root"], split=name or None, num_frames=int(d.get("num_frames", 16)),
                          interval=int(d.get("interval", 4)), size=int(d.get("size", 112)),
                          scale=int(d.get("scale", 128)), windows=int(d.get("windows", 8)),
                          cache=bool(d.get("cache", True)))

    def training_step(self, model, batch, ctx: StepContext):
        clip = batch["clip"]
        if self.cfg.get("augment", {}).get("flip", True):
            clip = hflip(clip, (ctx.rand() < 0.5).to(clip.device))
        raw = model.module if hasattr(model, "module") else model
        mask = ctx.mask(raw.dual, raw.grid)
        return model(normalize_clip(clip), mask, target=clip).loss

    @torch.no_grad()
    def on_fit_end(self, model: VideoMAE, run_dir: Path) -> dict:
        """Reconstructions of held-out clips (val split, else train): PNG + GIF per clip, and the
        hidden-tube MSE of the model and of the nearest-visible-patch baseline (``reconstruction.json``)."""
        from maskworks.domains.video.viz import (draw_dual_mask, masked_mse, nearest_visible_baseline, panel,
                                                 save_gif, to_uint8)

        try:
            ds, which = self.build_dataset("val"), "val"
        except Exception:  # noqa: BLE001 - no held-out split: show training clips, and say so
            ds, which = self.build_dataset("train"), "train"
        out_dir = Path(run_dir) / "reconstructions"
        out_dir.mkdir(parents=True, exist_ok=True)
        dev = next(model.parameters()).device
        g = torch.Generator().manual_seed(1234)
        rows, pictures = [], []
        picks = sorted({k * ds.windows + ds.windows // 2 for k in range(len(ds.entries))})[:4]
        for i in picks:
            item = ds[i]
            clip = item["clip"][None].to(dev)
            mask = model.make_mask(1, g).to(dev)
            rec = model.reconstruct(normalize_clip(clip), mask, target=clip)[0].cpu()
            hidden = mask.encoder.mask[0].cpu()
            base = nearest_visible_baseline(clip[0].cpu(), hidden, model.patch_size)
            name = ds.entries[int(item["video"])].path.stem
            rows.append({"clip": name, "model_mse": masked_mse(rec, clip[0].cpu(), hidden, model.patch_size),
                         "nearest_visible_mse": masked_mse(base, clip[0].cpu(), hidden, model.patch_size)})
            frames = {"clip": to_uint8(clip[0]),
                      "seen": draw_dual_mask(to_uint8(clip[0]), hidden, mask.decoded[0].cpu(), model.patch_size),
                      "model": to_uint8(rec), "nearest visible": to_uint8(base)}
            panel(frames).save(out_dir / f"{name}.png")
            save_gif(frames, out_dir / f"{name}.gif")
            pictures.append(str(out_dir / f"{name}.png"))
        summary = {"split": which, "clips": rows,
                   "model_mse": sum(r["model_mse"] for r in rows) / len(rows),
                   "nearest_visible_mse": sum(r["nearest_visible_mse"] for r in rows) / len(rows)}
        (Path(run_dir) / "reconstruction.json").write_text(json.dumps(summary, indent=2))
        return {"reconstruction_split": which, "model_mse": round(summary["model_mse"], 5),
                "nearest_visible_mse": round(summary["nearest_visible_mse"], 5), "reconstructions": pictures}
