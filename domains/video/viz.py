"""Pictures of dual masking and reconstruction, shared by the training recipe, the job and the tab.

One column per tubelet step (2 frames): the clip; what each half sees (visible tubes in full colour
with a green edge; hidden tubes the decoder reconstructs in orange, hidden tubes its running cells
drop in dark grey); the reconstruction (visible tubes copied, hidden tubes predicted); the baseline
that copies the nearest visible patch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from maskworks.core.masking import patchify, unpatchify

GREEN = np.array([40, 200, 80], np.float32)
ORANGE = np.array([255, 140, 0], np.float32)


def to_uint8(clip: Tensor) -> np.ndarray:
    """``[3, T, H, W]`` in [0, 1] -> ``uint8 [T, H, W, 3]``."""
    return (clip.detach().float().clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def nearest_visible_baseline(clip: Tensor, hidden: Tensor, patch: Sequence[int]) -> Tensor:
    """Every hidden tube filled with the pixels of the nearest visible tube of the same time step
    (Euclidean distance between grid places; ties go to the first in row-major order).

    ``clip`` ``[3, T, H, W]``, ``hidden`` ``[T', h, w]`` bool (True = hidden). The simplest guess a
    reconstruction has to beat: copy what is next to the hole.
    """
    tg, h, w = hidden.shape
    patches = patchify(clip[None], patch)[0]  # [N, P]
    out = patches.clone()
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    places = torch.stack([ii.reshape(-1), jj.reshape(-1)], 1).float()  # [h*w, 2]
    for t in range(tg):
        hid = hidden[t].reshape(-1).cpu()
        vis = (~hid).nonzero().flatten()
        if len(vis) == 0 or not hid.any():
            continue
        d = torch.cdist(places[hid], places[vis])  # [hidden, visible]
        src = vis[d.argmin(dim=1)] + t * h * w
        out[t * h * w + hid.nonzero().flatten()] = patches[src]
    return unpatchify(out[None], patch, hidden.shape, clip.shape[0])[0]


def visible_mean_baseline(clip: Tensor, hidden: Tensor, patch: Sequence[int]) -> Tensor:
    """Every hidden tube filled with the mean patch of the visible tubes of the same time step: a
    blurry guess, the kind an MSE-trained model drifts to when it has learnt little."""
    tg, h, w = hidden.shape
    patches = patchify(clip[None], patch)[0]
    out = patches.clone()
    n = h * w
    for t in range(tg):
        hid = hidden[t].reshape(-1).cpu()
        if hid.any() and (~hid).any():
            block = patches[t * n:(t + 1) * n]
            out[t * n + hid.nonzero().flatten()] = block[~hid].mean(dim=0)
    return unpatchify(out[None], patch, hidden.shape, clip.shape[0])[0]


def masked_mse(a: Tensor, b: Tensor, hidden: Tensor, patch: Sequence[int]) -> float:
    """Mean squared error (pixels in [0, 1]) over the hidden tubes only."""
    pa, pb = patchify(a[None].float(), patch)[0], patchify(b[None].float(), patch)[0]
    sel = hidden.reshape(-1).to(pa.device)
    return float(((pa[sel] - pb[sel]) ** 2).mean())


def _tint(img: np.ndarray, cell: np.ndarray, color: np.ndarray | None, alpha: float, dim: float = 1.0) -> np.ndarray:
    out = img.astype(np.float32) * dim
    if color is not None:
        out = out * (1 - alpha) + color * alpha
    return np.where(cell[..., None], out, img.astype(np.float32))


def draw_dual_mask(frames: np.ndarray, encoder_hidden: Tensor, decoded: Tensor | None, patch: Sequence[int]) -> np.ndarray:
    """``uint8 [T, H, W, 3]`` frames with the masks drawn on (see the module docstring).

    ``encoder_hidden`` and ``decoded`` (True = reconstructed by the decoder) are ``[T', h, w]``.
    """
    pt, ph, pw = patch
    out = frames.astype(np.float32).copy()
    t_frames, height, width = frames.shape[:3]
    up = lambda g: g.cpu().numpy().repeat(pt, 0).repeat(ph, 1).repeat(pw, 2)[:t_frames, :height, :width]  # noqa: E731
    hidden = up(encoder_hidden)
    dec = up(decoded) if decoded is not None else hidden
    out = _tint(out, hidden & dec, ORANGE, 0.55, 0.6)
    out = _tint(out, hidden & ~dec, None, 0.0, 0.18)
    # a green edge around each visible patch
    vis = ~hidden
    edge = np.zeros_like(vis)
    edge[:, ::ph, :] = True
    edge[:, ph - 1::ph, :] = True
    edge[:, :, ::pw] = True
    edge[:, :, pw - 1::pw] = True
    out = np.where((vis & edge)[..., None], GREEN, out)
    return out.clip(0, 255).astype(np.uint8)


def _label(img: Image.Image, text: str, xy: tuple[int, int]) -> None:
    d = ImageDraw.Draw(img)
    d.rectangle([xy[0], xy[1], xy[0] + int(d.textlength(text)) + 6, xy[1] + 14], fill=(0, 0, 0))
    d.text((xy[0] + 3, xy[1] + 1), text, fill=(255, 255, 255))


def _zoom(frames: np.ndarray, zoom: int) -> np.ndarray:
    """Nearest-neighbour enlargement (patch edges stay sharp), for small clips on screens."""
    return frames if zoom == 1 else frames.repeat(zoom, axis=1).repeat(zoom, axis=2)


def panel(rows: dict[str, np.ndarray], step: int = 2, gap: int = 2, zoom: int = 2) -> Image.Image:
    """Rows of frames (``uint8 [T, H, W, 3]`` each) -> one picture, one column per ``step`` frames,
    each row labelled, enlarged ``zoom`` times."""
    rows = {k: _zoom(v, zoom) for k, v in rows.items()}
    names = list(rows)
    t, h, w = next(iter(rows.values())).shape[:3]
    cols = list(range(0, t, step))
    canvas = Image.new("RGB", (len(cols) * (w + gap) - gap, len(names) * (h + gap) - gap), (255, 255, 255))
    for r, name in enumerate(names):
        for c, f in enumerate(cols):
            canvas.paste(Image.fromarray(rows[name][f]), (c * (w + gap), r * (h + gap)))
        _label(canvas, name, (2, r * (h + gap) + 2))
    return canvas


def save_gif(rows: dict[str, np.ndarray], path: str | Path, fps: float = 8.0, zoom: int = 2) -> Path:
    """Animated GIF, the rows side by side, one frame per clip frame, looping, enlarged ``zoom`` times."""
    rows = {k: _zoom(v, zoom) for k, v in rows.items()}
    names = list(rows)
    t = next(iter(rows.values())).shape[0]
    frames = []
    for i in range(t):
        strip = np.concatenate([rows[n][i] for n in names], axis=1)
        img = Image.fromarray(strip)
        w = rows[names[0]].shape[2]
        for k, n in enumerate(names):
            _label(img, n, (k * w + 2, 2))
        frames.append(img)
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0, optimize=True)
    return path
