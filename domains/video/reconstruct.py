"""The video reconstruction job: one clip of a video file -> VideoMAE V2's reconstruction of its
hidden tubes, the masks of both halves, and the error against copying the nearest visible patch.

The tab (``apps/tabs/video.py``), ``maskworks predict video/videomae`` and Python users all call
:meth:`VideoReconstructor.predict_file`, so they give the same numbers for the same file and seed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from maskworks.core.io import InputError, resolve_shipped
from maskworks.core.io.video import VIDEO_SUFFIXES, VideoCaps, VideoInfo, probe_video, read_frames, sample_indices
from maskworks.domains.video.data import to_clip
from maskworks.domains.video.videomae import DualMask, VideoMAE, normalize_clip
from maskworks.domains.video.viz import (draw_dual_mask, masked_mse, nearest_visible_baseline, panel, save_gif,
                                         to_uint8, visible_mean_baseline)

SHIPPED_WEIGHTS = "shipped:weights/videomae-v2-small.safetensors"
SUFFIXES = tuple(sorted(VIDEO_SUFFIXES))
ROWS = ("clip", "seen", "model", "nearest visible")


@dataclass
class VideoReconstruction:
    """One clip's reconstruction. ``frames`` holds the rows of the pictures (``uint8 [T, H, W, 3]``):
    the clip, what the encoder and decoder see, the model's reconstruction, the baseline's."""

    source: str
    info: VideoInfo
    indices: np.ndarray
    timestamps_s: np.ndarray
    frames: dict[str, np.ndarray]
    model_mse: float
    baseline_mse: float
    mean_mse: float
    per_step: list[dict]
    tokens: dict
    seed: int
    weights: str
    notes: list[str] = field(default_factory=list)

    @property
    def beats_baseline(self) -> bool:
        return self.model_mse < self.baseline_mse

    def to_json(self) -> dict:
        return {"file": Path(self.source).name, "video": self.info.to_json(),
                "frames": self.indices.tolist(), "times_s": [round(float(t), 4) for t in self.timestamps_s],
                "seed": self.seed, "tokens": self.tokens,
                "hidden_tube_mse": {"model": round(self.model_mse, 6), "nearest_visible_patch": round(self.baseline_mse, 6),
                                    "ratio_baseline_over_model": round(self.baseline_mse / max(self.model_mse, 1e-12), 3),
                                    "visible_patch_mean": round(self.mean_mse, 6)},
                "per_step": self.per_step, "beats_baseline": self.beats_baseline, "weights": self.weights,
                "notes": self.notes}

    def picture(self):
        """The rows as one PIL image, one column per 2-frame tubelet step."""
        return panel({k: self.frames[k] for k in ROWS})

    def write(self, base: Path) -> list[Path]:
        """``<base>_panel.png`` (rows x steps), ``<base>.gif`` (animated, the rows side by side)."""
        base = Path(base)
        base.parent.mkdir(parents=True, exist_ok=True)
        png = base.with_name(base.name + "_panel.png")
        self.picture().save(png)
        gif = save_gif({k: self.frames[k] for k in ROWS}, base.with_name(base.name + ".gif"))
        return [png, gif]


class VideoReconstructor:
    """A trained VideoMAE V2 and the clip settings it was trained with (frames, interval, size)."""

    def __init__(self, model: VideoMAE, cfg: dict, weights: str, device: torch.device) -> None:
        self.model, self.cfg, self.weights, self.device = model.eval(), cfg, weights, device
        d = cfg.get("data", {})
        self.num_frames, self.interval = int(d.get("num_frames", 16)), int(d.get("interval", 4))
        self.size, self.scale = int(d.get("size", 112)), int(d.get("scale", d.get("size", 112)))
        self.trained_on = _describe_training(weights)

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | torch.device | None = None) -> "VideoReconstructor":
        """The shipped model (``weights=None``) or a ``maskworks train video/videomae-v2`` run's
        ``model.safetensors`` (or run folder); on the GPU when there is one."""
        from maskworks.core.training.task import load_trained

        path = resolve_shipped(weights or SHIPPED_WEIGHTS)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        task, model = load_trained(path, dev)
        if not isinstance(model, VideoMAE):
            raise ValueError(f"{path} is a {type(model).__name__}, not a VideoMAE V2 model "
                             "(train one with `maskworks train video/videomae-v2`)")
        return cls(model, task.cfg, str(weights or SHIPPED_WEIGHTS), dev)

    def clip_indices(self, info: VideoInfo, start_s: float | None) -> np.ndarray:
        start: int | Literal["center"] = "center"
        if start_s is not None:
            if not 0 <= start_s < info.duration_s:
                raise InputError(info.path, f"start {start_s:g} s is outside the video (0 to {info.duration_s:.2f} s)",
                                 "give a start inside the video, or none for the middle")
            start = min(int(start_s * info.fps), info.num_frames - 1)
        return sample_indices(info.num_frames, self.num_frames, self.interval, start=start)

    @torch.no_grad()
    def predict_file(self, path: str | Path, seed: int = 0, start_s: float | None = None,
                     caps: VideoCaps = VideoCaps()) -> VideoReconstruction:
        """Read one clip (``num_frames`` frames ``interval`` apart, from ``start_s`` or the middle),
        mask it with the model's dual masking drawn from ``seed``, reconstruct it, score it."""
        path = Path(path)
        info = probe_video(path, caps)
        idx = self.clip_indices(info, start_s)
        s = self.scale / min(info.height, info.width)
        size = (max(self.scale, round(info.height * s)), max(self.scale, round(info.width * s)))
        clip_frames = read_frames(path, idx, info=info, caps=caps, size=size)
        clip = to_clip(clip_frames.frames, self.size, self.scale, 1)
        notes = self._notes(info, clip_frames.indices, clip)
        m = self.model
        mask: DualMask = m.make_mask(1, torch.Generator().manual_seed(int(seed))).to(self.device)
        x = clip[None].to(self.device)
        rec = m.reconstruct(normalize_clip(x), mask, target=x)[0].float().cpu()
        hidden = mask.encoder.mask[0].cpu()
        base = nearest_visible_baseline(clip, hidden, m.patch_size)
        per_step = []
        t_patch = m.patch_size[0]
        for t in range(hidden.shape[0]):
            sl = slice(t * t_patch, (t + 1) * t_patch)
            h = hidden[t:t + 1]
            per_step.append({"frames": clip_frames.indices[sl].tolist(),
                             "model": round(masked_mse(rec[:, sl], clip[:, sl], h, m.patch_size), 6),
                             "nearest_visible_patch": round(masked_mse(base[:, sl], clip[:, sl], h, m.patch_size), 6)})
        model_mse = masked_mse(rec, clip, hidden, m.patch_size)
        base_mse = masked_mse(base, clip, hidden, m.patch_size)
        mean_mse = masked_mse(visible_mean_baseline(clip, hidden, m.patch_size), clip, hidden, m.patch_size)
        if model_mse >= base_mse:
            notes.append(f"On this clip the model does worse than copying the nearest visible patch "
                         f"({model_mse:.4f} vs {base_mse:.4f}): it was trained on {self.trained_on}.")
        frames = {"clip": to_uint8(clip), "seen": draw_dual_mask(to_uint8(clip), hidden, mask.decoded[0].cpu(), m.patch_size),
                  "model": to_uint8(rec), "nearest visible": to_uint8(base)}
        tokens = {"grid": list(m.grid), "total": mask.encoder.num_tokens, "encoder_visible": mask.encoder.num_keep,
                  "hidden": mask.encoder.num_masked, "decoder_reconstructs_in_training": mask.num_decoded}
        return VideoReconstruction(str(path), info, clip_frames.indices, clip_frames.timestamps_s, frames, model_mse,
                                   base_mse, mean_mse, per_step, tokens, int(seed), self.weights, notes)

    def _notes(self, info: VideoInfo, got: np.ndarray, clip: torch.Tensor) -> list[str]:
        notes = []
        span = self.num_frames * self.interval
        if info.num_frames < span:
            repeats = int((got == got.max()).sum()) - 1
            notes.append(f"The video has {info.num_frames} frames, fewer than the {span} a clip spans "
                         f"({self.num_frames} frames {self.interval} apart): its last frame repeats {repeats} times.")
        if info.width != info.height:
            notes.append(f"Frames are {info.width}x{info.height}: scaled to {self.scale} px on the short side and "
                         f"centre-cropped to {self.size}x{self.size}, so the sides are not shown.")
        c = clip.float()
        if float((c[0] - c[1]).abs().max()) < 0.02 and float((c[1] - c[2]).abs().max()) < 0.02:
            notes.append("The clip is greyscale; the model was trained on colour video.")
        if float(c.mean()) < 0.04:
            notes.append("The clip is almost black; errors on it say little.")
        return notes


def _describe_training(weights: str | Path | None) -> str:
    """The shipped weights' sidecar JSON says what they were trained on; a run's config otherwise."""
    try:
        side = resolve_shipped(str(weights or SHIPPED_WEIGHTS))
        meta = json.loads(side.with_suffix(".json").read_text())
        return meta["trained_on_short"]
    except (OSError, KeyError, ValueError):
        return "the data of its training run"

