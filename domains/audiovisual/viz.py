"""Pictures for the recipe, the job and the tab: face frames and spectrograms (as seen, with the hidden
patches greyed, and as rebuilt), reconstruction errors next to a baseline, and the emotion bar plot."""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from maskworks.core.masking import patchify, unpatchify

GREY = 0.0  # hidden patches are drawn solid grey: what the encoder saw, nothing more
LABEL_H = 18


def nearest_visible(x: Tensor, hidden: Tensor, patch: Sequence[int]) -> Tensor:
    """Every hidden patch of ``x`` (``[C, *S]``) replaced by the nearest visible patch on the grid
    (Euclidean distance between grid places; ties go to the first in row-major order): the simplest
    guess a reconstruction has to beat. ``hidden``: ``[*grid]`` bool."""
    patches = patchify(x[None].float(), patch)[0]
    grid = hidden.shape
    coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij"), -1).reshape(-1, len(grid)).float()
    hid = hidden.reshape(-1).cpu()
    out = patches.clone()
    if hid.any() and (~hid).any():
        vis = (~hid).nonzero().flatten()
        src = vis[torch.cdist(coords[hid], coords[vis]).argmin(dim=1)]
        out[hid.nonzero().flatten()] = patches[src]
    return unpatchify(out[None], patch, grid, x.shape[0])[0]


def hidden_mse(a: Tensor, b: Tensor, hidden: Tensor, patch: Sequence[int]) -> float:
    """Mean squared error over the hidden patches only."""
    pa, pb = patchify(a[None].float(), patch)[0], patchify(b[None].float(), patch)[0]
    sel = hidden.reshape(-1)
    return float(((pa[sel] - pb[sel]) ** 2).mean())


@torch.no_grad()
def reconstruction_scores(model, video: Tensor, audio: Tensor, video_mask, audio_mask) -> dict[str, float]:
    """The loss's own error on the hidden patches (``[0, 1]`` pixels or normalised filter banks, each patch
    normalised when the model's targets are) for the model, for copying the nearest visible patch under
    the same masks, and (normalised targets) for predicting each patch's own mean, i.e. 0. ``video`` ``[1, 3, T, H, W]`` in [0, 1], ``audio`` ``[1, 1, 256, 128]``; the
    masks are batch-1 :class:`Mask` es. (Pictures fill hidden patches with their own mean and contrast,
    MAE's convention; these numbers do not.)"""
    from maskworks.domains.audiovisual.features import normalize_video

    out = model(normalize_video(video), audio, video_mask, audio_mask, video_target=video)
    vh, ah = video_mask.mask[0].cpu(), audio_mask.mask[0].cpu()
    vb = nearest_visible(video[0].cpu(), vh, model.video.patch_size)[None].to(video.device)
    ab = nearest_visible(audio[0].cpu(), ah, model.audio.patch_size)[None].to(audio.device)
    mse = lambda a, b: float(((a.float() - b.float()) ** 2).mean())  # noqa: E731
    vt, at = model.video_targets(video, video_mask), model.audio_targets(audio, audio_mask)
    res = {"video_mse": float(out.loss_video), "video_nearest_visible_mse": mse(model.video_targets(vb, video_mask), vt),
           "audio_mse": float(out.loss_audio), "audio_nearest_visible_mse": mse(model.audio_targets(ab, audio_mask), at)}
    if model.video.norm_pix_loss:
        res["video_patch_mean_mse"] = mse(torch.zeros_like(vt), vt)
    if model.audio.norm_pix_loss:
        res["audio_patch_mean_mse"] = mse(torch.zeros_like(at), at)
    return res


def _veil(img: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Grey out the pixels where ``cell`` (bool ``[H, W]``) is True."""
    out = img.astype(np.float32)
    out[cell] = out[cell] * GREY + 128 * (1 - GREY)
    return out.astype(np.uint8)


def _upsample(mask2d: np.ndarray, ph: int, pw: int) -> np.ndarray:
    return np.repeat(np.repeat(mask2d, ph, axis=0), pw, axis=1)


def _label(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + LABEL_H), "white")
    out.paste(img, (0, LABEL_H))
    ImageDraw.Draw(out).text((4, 3), text, fill=(20, 20, 20))
    return out


def _stack(images: list[Image.Image], gap: int = 6) -> Image.Image:
    w = max(i.width for i in images)
    out = Image.new("RGB", (w, sum(i.height for i in images) + gap * (len(images) - 1)), "white")
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height + gap
    return out


def face_rows(video: Tensor, hidden: Tensor | None, rec: Tensor | None, patch: Sequence[int],
              columns: int = 8) -> Image.Image:
    """One column per tube step (its first frame): the clip, what the encoder saw (hidden tubes grey),
    the reconstruction. ``video``/``rec``: ``[3, T, H, W]`` in [0, 1]; ``hidden``: ``[T/t, h, w]``."""
    t_patch, ph, pw = patch
    frames = (video.clamp(0, 1).permute(1, 2, 3, 0).numpy() * 255 + 0.5).astype(np.uint8)
    steps = list(range(0, frames.shape[0], t_patch))[:columns]
    rows = [("face frames (one per 2-frame tube step)", [frames[s] for s in steps])]
    if hidden is not None:
        hn = hidden.numpy()
        rows.append(("what the encoder saw (grey: hidden tubes)",
                     [_veil(frames[s], _upsample(hn[s // t_patch], ph, pw)) for s in steps]))
    if rec is not None:
        rf = (rec.clamp(0, 1).permute(1, 2, 3, 0).numpy() * 255 + 0.5).astype(np.uint8)
        rows.append(("rebuilt by the decoder (hidden tubes drawn with their own mean and contrast, as MAE draws them)",
                     [rf[s] for s in steps]))
    out = []
    for title, imgs in rows:
        strip = Image.fromarray(np.concatenate(imgs, axis=1))
        out.append(_label(strip, title))
    return _stack(out)


def _spectrogram_rgb(spec: Tensor, lo: float, hi: float) -> np.ndarray:
    """``[256, 128]`` (time x mel) -> RGB ``[128, 256, 3]`` with low frequencies at the bottom (magma)."""
    from matplotlib import colormaps

    x = ((spec.float().numpy().T[::-1] - lo) / max(hi - lo, 1e-6)).clip(0, 1)
    return (colormaps["magma"](x)[..., :3] * 255 + 0.5).astype(np.uint8)


def spectrogram_rows(audio: Tensor, hidden: Tensor | None, rec: Tensor | None, patch: Sequence[int],
                     scale: int = 2) -> Image.Image:
    """The log-mel spectrogram (2.56 s x 128 mel bins), what the encoder saw, the reconstruction.
    ``audio``/``rec``: ``[1, 256, 128]`` normalised; ``hidden``: ``[16, 8]`` (time x mel patches)."""
    spec = audio[0]
    lo, hi = float(spec.min()), float(spec.max())
    base = _spectrogram_rgb(spec, lo, hi)
    rows = [("log-mel spectrogram (time ->, low pitch at the bottom)", base)]
    if hidden is not None:
        cell = _upsample(hidden.numpy().T[::-1], patch[1], patch[0])  # (mel, time) like the picture
        rows.append(("what the encoder saw (grey: hidden patches)", _veil(base, cell)))
    if rec is not None:
        rows.append(("rebuilt by the decoder (hidden patches with their own mean and contrast)", _spectrogram_rgb(rec[0], lo, hi)))
    out = []
    for title, img in rows:
        im = Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
        out.append(_label(im, title))
    return _stack(out)


def reconstruction_panel(video: Tensor, audio: Tensor, rec_video: Tensor, rec_audio: Tensor, video_hidden: Tensor,
                         audio_hidden: Tensor, model) -> Image.Image:
    """Face rows above spectrogram rows (the recipe's end-of-run picture)."""
    return _stack([face_rows(video, video_hidden, rec_video, model.video.patch_size),
                   spectrogram_rows(audio, audio_hidden, rec_audio, model.audio.patch_size)], gap=12)


def probability_plot(classes: Sequence[str], probs: Sequence[float], used: str,
                     alone: dict[str, Sequence[float]] | None = None) -> Image.Image:
    """Horizontal bars of the emotion probabilities (the top one highlighted), with what each modality's
    own head says as markers when both were there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(classes) + 1.2), dpi=100)
    y = np.arange(len(classes))[::-1]
    top = int(np.argmax(probs))
    ax.barh(y, probs, color=["#d95f02" if i == top else "#7f9fbf" for i in range(len(classes))],
            label=f"prediction ({used})")
    marks = {"voice alone": ("o", "#1b9e77"), "face alone": ("s", "#7570b3")}
    for name, p in (alone or {}).items():
        m, c = marks.get(name, ("x", "k"))
        ax.scatter(p, y, marker=m, color=c, zorder=3, label=name)
    ax.set_yticks(y, classes)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
