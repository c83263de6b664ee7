"""Image MAE pre-training (recipe ``image-mae-cxr``): any images/ + labels.csv folder."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from maskworks.core.datasets import LabelledImageFolder
from maskworks.core.io import resolve_shipped
from maskworks.core.mae import MaskedAutoencoder
from maskworks.core.masking.registry import build_masking
from maskworks.core.training.task import StepContext, Task, unwrap
from torch import Tensor


def random_resized_crop(x: Tensor, scale: tuple[float, float], u: Tensor) -> Tensor:
    """Batched random-resized crop (square, aspect 1); ``u`` ``[B, 3]`` uniform draws (area, x, y)."""
    b = x.shape[0]
    area = scale[0] + u[:, 0] * (scale[1] - scale[0])
    side = area.sqrt()
    # affine grid: zoom by side, shift within the image
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = side
    theta[:, 1, 1] = side
    theta[:, 0, 2] = (u[:, 1] * 2 - 1) * (1 - side)
    theta[:, 1, 2] = (u[:, 2] * 2 - 1) * (1 - side)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ImageMAETask(Task):
    """MAE on grayscale images. Data: ``data.root`` (``images/`` + ``labels.csv``), ``data.split``,
    ``data.size``; model: :class:`MaskedAutoencoder` arguments; ``masking``: a strategy spec."""

    def build_model(self) -> MaskedAutoencoder:
        m = dict(self.cfg.get("model", {}))
        d = self.cfg["data"]
        size = int(d["size"])
        return MaskedAutoencoder(input_size=(size, size), in_chans=int(d.get("channels", 1)),
                                 masking=build_masking(self.cfg.get("masking")), **m)

    def build_dataset(self, split: str = "train") -> LabelledImageFolder:
        d = self.cfg["data"]
        split_name = d.get("split") if split == "train" else d.get("val_split")
        return LabelledImageFolder(resolve_shipped(d["root"]), split=split_name, size=int(d["size"]),
                                   channels=int(d.get("channels", 1)))

    def training_step(self, model, batch, ctx: StepContext):
        x = batch["image"]
        aug = self.cfg.get("augment", {})
        if aug.get("crop_scale"):
            x = random_resized_crop(x, tuple(aug["crop_scale"]), ctx.rand(3))
        raw = unwrap(model)
        mask = ctx.mask(raw.masking, raw.grid)
        return model(x, mask).loss

    def on_fit_end(self, model: MaskedAutoencoder, run_dir: Path) -> dict:
        """Reconstruction picture of held-out images, and their masked-patch MSE."""
        from maskworks.core.viz import save_reconstruction_grid

        try:
            ds = self.build_dataset("val")
        except Exception:
            ds = self.build_dataset("train")
        x = ds.images[:8].to(next(model.parameters()).device)
        g = torch.Generator().manual_seed(1234)
        mask = model.make_mask(x.shape[0], g).to(x.device)
        with torch.no_grad():
            loss = float(model(x, mask).loss)
            recon = model.reconstruct(x, mask)
        path = Path(run_dir) / "reconstruction.png"
        save_reconstruction_grid(x, mask, recon, path)
        return {"val_masked_mse": round(loss, 5), "reconstruction": str(path)}
