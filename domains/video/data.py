"""Video data sets: a ``videos/`` folder with ``labels.csv`` (``file,label[,split]``), clips cut with
the shared reader (``maskworks.core.io.video``) and resized/cropped with pytorchvideo's transforms.

A clip is ``float32 [3, T, H, W]`` in ``[0, 1]``; ImageNet normalisation happens in the model's step
(:func:`~maskworks.domains.video.videomae.normalize_clip`), so the same clip also serves as the
reconstruction target. Which window and crop an item uses is a function of its index only, so a
resumed run reads the same clips; random flips are drawn in the training step from the step's seed.
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from maskworks.core.io import InputError, resolve_shipped
from maskworks.core.io.video import VIDEO_SUFFIXES, VideoCaps, probe_video, read_frames, sample_indices


def _pytorchvideo_transforms():
    """pytorchvideo 0.1.5 imports a torchvision module that was renamed; alias it first (see the guide)."""
    import torchvision

    sys.modules.setdefault("torchvision.transforms.functional_tensor", torchvision.transforms._functional_tensor)
    import pytorchvideo.transforms.functional as F

    return F


@dataclass(frozen=True)
class VideoEntry:
    path: Path
    label: str
    split: str


def read_video_folder(root: str | Path, split: str | None = None) -> list[VideoEntry]:
    """The entries of a ``videos/`` + ``labels.csv`` folder (all, or those of ``split``).

    ``labels.csv`` needs the columns ``file`` and ``label`` (``split`` optional); ``file`` is relative
    to ``videos/``. A folder without labels.csv lists every video in ``videos/`` (label ``""``), so
    unlabelled footage can be pre-trained on as it is.
    """
    root = resolve_shipped(root)
    videos = root / "videos"
    if not videos.is_dir():
        raise InputError(root, "has no videos/ folder", "put the clips in <folder>/videos/ and list them in "
                         "<folder>/labels.csv with the columns file,label[,split]")
    table = root / "labels.csv"
    if not table.is_file():
        files = sorted(p for p in videos.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        entries = [VideoEntry(p, "", "") for p in files]
    else:
        with table.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"file", "label"} <= set(rows[0]):
            raise InputError(table, "needs the columns file,label (and optionally split)",
                             "write a header line 'file,label,split' and one row per clip")
        entries = []
        for i, r in enumerate(rows, start=2):
            p = videos / (r["file"] or "").strip()
            if not r["file"] or not p.is_file():
                raise InputError(table, f"line {i} names {r['file']!r}, which is not in videos/",
                                 "fix the file name or remove the line")
            entries.append(VideoEntry(p, (r["label"] or "").strip(), (r.get("split") or "").strip()))
    if split is not None:
        entries = [e for e in entries if e.split == split]
    if not entries:
        raise InputError(root, f"holds no videos{f' in split {split!r}' if split else ''}",
                         "add clips to videos/ (and rows to labels.csv)")
    return entries


def to_clip(frames: np.ndarray, size: int, scale: int | None = None, spatial_idx: int = 1) -> Tensor:
    """RGB ``uint8 [T, H, W, 3]`` -> ``float [3, T, size, size]`` in [0, 1]: pytorchvideo's short-side
    scale (to ``scale``, default ``size``) then its uniform crop (0 left/top, 1 centre, 2 right/bottom)."""
    F = _pytorchvideo_transforms()
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255.0)
    x = F.short_side_scale(x, int(scale or size))
    return F.uniform_crop(x, int(size), int(spatial_idx)).clamp_(0.0, 1.0).contiguous()


class VideoClips(Dataset):
    """``windows`` clips per video of ``num_frames`` frames ``interval`` apart, evenly spread over
    each video, short side scaled to ``scale`` and cropped to ``size`` (left, centre, right in turn;
    always the centre with ``center_crop``, for evaluation).

    ``cache`` decodes each video once (frames scaled to ``scale``) and keeps it in memory when the
    whole set fits in ``cache_mb``; otherwise every item is decoded from its file.
    """

    def __init__(self, root: str | Path, split: str | None = None, num_frames: int = 16, interval: int = 4,
                 size: int = 112, scale: int | None = 128, windows: int = 8, cache: bool = True,
                 cache_mb: float = 1024, caps: VideoCaps = VideoCaps(), center_crop: bool = False) -> None:
        self.entries = read_video_folder(root, split)
        self.num_frames, self.interval, self.size, self.windows = num_frames, interval, size, max(1, int(windows))
        self.scale = int(scale or size)
        self.caps, self.center_crop = caps, center_crop
        self.infos = [probe_video(e.path, caps) for e in self.entries]
        self.labels = sorted({e.label for e in self.entries})
        self._frames: list[Tensor] | None = None
        if cache:
            need = sum(i.num_frames * self.scale * self.scale * i.width / max(i.height, 1) * 3
                       for i in self.infos) / 2 ** 20
            if need <= cache_mb:
                self._frames = [self._decode(k, np.arange(info.num_frames)) for k, info in enumerate(self.infos)]

    def _decode(self, k: int, idx: np.ndarray) -> Tensor:
        """Frames ``idx`` of video ``k`` with the short side scaled to ``scale``: ``uint8 [T, h, w, 3]``."""
        info = self.infos[k]
        h, w = info.height, info.width
        s = self.scale / min(h, w)
        size = (max(self.scale, int(round(h * s))), max(self.scale, int(round(w * s))))
        clip = read_frames(self.entries[k].path, idx, info=info, caps=self.caps, size=size)
        return torch.from_numpy(clip.frames)  # [T, h, w, 3] uint8

    def __len__(self) -> int:
        return len(self.entries) * self.windows

    def window(self, i: int) -> tuple[int, np.ndarray, int]:
        """(video, frame indices, spatial crop) of item ``i``."""
        k, j = divmod(i, self.windows)
        n = self.infos[k].num_frames
        room = max(n - self.num_frames * self.interval, 0)
        start = int(round(j * room / (self.windows - 1))) if self.windows > 1 else room // 2
        return k, sample_indices(n, self.num_frames, self.interval, start=start), 1 if self.center_crop else j % 3

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        k, idx, crop = self.window(i)
        if self._frames is not None:  # a header may over-count: the cache holds what really decoded
            frames = self._frames[k][torch.from_numpy(np.minimum(idx, len(self._frames[k]) - 1))]
        else:
            frames = self._decode(k, idx)
        clip = to_clip(frames.numpy(), self.size, self.scale, crop)
        label = self.labels.index(self.entries[k].label)
        return {"clip": clip, "label": torch.tensor(label), "video": torch.tensor(k)}


def hflip(clip: Tensor, flip: Tensor) -> Tensor:
    """Flip ``[B, C, T, H, W]`` clips left-right where ``flip`` ``[B]`` is True."""
    return torch.where(flip.view(-1, 1, 1, 1, 1), clip.flip(-1), clip)
