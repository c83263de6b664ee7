"""Pictures of a mask over its input, for humans (README figures, the demo's masking tab)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _to_rgb_uint8(image: Tensor | np.ndarray) -> np.ndarray:
    a = image.detach().cpu().float().numpy() if isinstance(image, Tensor) else np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # CHW -> HWC
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    lo, hi = float(a.min()), float(a.max())
    if hi > 1.0 or lo < 0.0:
        a = (a - lo) / max(hi - lo, 1e-8)
    return (np.clip(a, 0, 1) * 255).astype(np.uint8)


def draw_mask(image: Tensor | np.ndarray, mask: Tensor, *, color: tuple[int, int, int] = (40, 40, 40),
              alpha: float = 0.85, grid_lines: bool = True) -> np.ndarray:
    """Overlay a 2-D token mask (``[h, w]`` bool, True = masked) on an image (HW, HWC or CHW).

    Masked patches are painted ``color`` at opacity ``alpha``; returns ``[H, W, 3]`` uint8.
    """
    rgb = _to_rgb_uint8(image).astype(np.float32)
    m = mask.detach().cpu().numpy().astype(bool) if isinstance(mask, Tensor) else np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"draw_mask takes a 2-D token mask, got shape {m.shape}")
    h, w = rgb.shape[:2]
    if h % m.shape[0] or w % m.shape[1]:
        raise ValueError(f"image {h}x{w} is not divisible by mask grid {m.shape}")
    ph, pw = h // m.shape[0], w // m.shape[1]
    big = np.kron(m, np.ones((ph, pw), dtype=bool))
    rgb[big] = rgb[big] * (1 - alpha) + np.asarray(color, np.float32) * alpha
    if grid_lines and ph >= 6:
        rgb[::ph, :, :] = rgb[::ph, :, :] * 0.6
        rgb[:, ::pw, :] = rgb[:, ::pw, :] * 0.6
    return rgb.clip(0, 255).astype(np.uint8)


def mask_gallery(image: Tensor | np.ndarray, masks: dict[str, Tensor], cols: int = 4):
    """A matplotlib figure with one panel per named mask over ``image``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(masks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, m) in zip(axes.flat, masks.items()):
        ax.imshow(draw_mask(image, m))
        ratio = float(torch.as_tensor(m).float().mean())
        ax.set_title(f"{name}\n{ratio:.0%} masked", fontsize=9)
    fig.tight_layout()
    return fig
