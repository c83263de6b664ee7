"""Figures shared by recipes: reconstruction grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from maskworks.core.masking import Mask
from maskworks.core.masking.viz import draw_mask


def save_reconstruction_grid(x: torch.Tensor, mask: Mask, recon: torch.Tensor, path: str | Path) -> Path:
    """Rows of (original | masked input | reconstruction) for 2-D images ``[B, C, H, W]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = x.shape[0]
    fig, axes = plt.subplots(b, 3, figsize=(6, 2 * b), squeeze=False)
    for i in range(b):
        orig = x[i].detach().cpu().float().clamp(0, 1)
        rec = recon[i].detach().cpu().float().clamp(0, 1)
        panels = [orig.permute(1, 2, 0).numpy(), draw_mask(orig, mask.mask[i].cpu(), grid_lines=False),
                  rec.permute(1, 2, 0).numpy()]
        for ax, img, title in zip(axes[i], panels, ["original", f"masked {mask.ratio:.0%}", "reconstruction"]):
            ax.imshow(np.squeeze(img), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
