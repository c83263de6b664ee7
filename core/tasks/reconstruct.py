"""The image MAE job, shared by the "Image MAE" tab, ``maskworks predict image-mae`` and Python users:
an image file -> a seeded random mask -> the reconstruction -> a picture and JSON.

    from maskworks.core.tasks.reconstruct import ImageReconstructor
    r = ImageReconstructor.load().predict_file("chest.png", ratio=0.75, seed=0)
    r.to_json()["masked_patch_mse"]; r.write(Path("out/chest"))   # out/chest_reconstruction.png
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from maskworks.core.datasets import load_image
from maskworks.core.inpaint import baseline_predictions
from maskworks.core.losses import masked_mse
from maskworks.core.masking import Mask, RandomMasking, gather_tokens
from maskworks.core.device import default_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def default_weights() -> Path:
    """The user's own ``runs/image-mae-cxr`` when there is one, else the shipped model."""
    own = Path("runs/image-mae-cxr/model.safetensors")
    if own.is_file():
        return own
    from maskworks.data import data_path

    return data_path("weights", "image-mae-cxr.safetensors")


@dataclass
class Reconstruction:
    source: str
    image: torch.Tensor  # [1, C, H, W] in [0, 1], as the model saw it
    mask: Mask
    recon: torch.Tensor  # [1, C, H, W]
    loss: float          # the model's own loss (on normalised patches when it trains so)
    mse: dict[str, float]  # masked-patch MSE in pixel space: the model and the two in-painters
    seed: int

    def to_json(self) -> dict:
        return {"file": Path(self.source).name, "mask_ratio": round(self.mask.ratio, 4), "seed": self.seed,
                "masked_patches": self.mask.num_masked, "patches": self.mask.num_tokens,
                "masked_patch_loss": self.loss, "masked_patch_mse": self.mse}

    def write(self, base: Path) -> list[Path]:
        from maskworks.core.viz import save_reconstruction_grid

        path = Path(str(base) + "_reconstruction.png")
        save_reconstruction_grid(self.image.cpu(), self.mask.to("cpu"), self.recon.cpu(), path)
        return [path]


class ImageReconstructor:
    """A trained image MAE (``maskworks train image-mae-cxr``) that reads image files."""

    def __init__(self, model: torch.nn.Module, cfg: dict) -> None:
        self.model, self.cfg = model.eval(), cfg

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | None = None) -> "ImageReconstructor":
        from maskworks.core.training.task import load_trained

        device = default_device(device)
        task, model = load_trained(weights or default_weights(), device)
        return cls(model, task.cfg)

    @property
    def size(self) -> int:
        return int(self.model.input_size[0])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def read(self, path: str | Path) -> torch.Tensor:
        """The image as the model takes it, ``[1, C, size, size]`` in [0, 1] (:class:`InputError` when unreadable)."""
        return load_image(path, int(self.cfg["data"].get("channels", 1)), self.size)[None]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, ratio: float | None = None, seed: int = 0, source: str = "<array>") -> Reconstruction:
        """Mask ``x`` with a seeded random mask (``ratio``: the model's own by default) and reconstruct it."""
        m = self.model
        strategy = RandomMasking(float(ratio)) if ratio is not None else m.masking
        mask = strategy(1, m.grid, generator=torch.Generator().manual_seed(int(seed))).to(self.device)
        x = x.to(self.device)
        out = m(x, mask)
        patches = m.patchify(x)
        target = gather_tokens(patches, mask.ids_mask)
        pred = out.pred
        if m.norm_pix_loss:  # compare in pixel space
            pred = pred * (target.var(-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(-1, keepdim=True)
        preds = {"maskworks MAE": pred, **baseline_predictions(patches, mask, m.grid)}
        mse = {k: float(masked_mse(v, target)) for k, v in preds.items()}
        return Reconstruction(source, x, mask, m.reconstruct(x, mask), float(out.loss), mse, int(seed))

    def predict_file(self, path: str | Path, ratio: float | None = None, seed: int = 0) -> Reconstruction:
        return self.predict(self.read(path), ratio, seed, str(path))


def to_uint8(x: torch.Tensor, size: int = 256) -> np.ndarray:
    """``[1, 1, H, W]`` in [0, 1] -> a ``size`` x ``size`` uint8 picture (nearest neighbour: patches stay sharp)."""
    from PIL import Image

    a = (x[0, 0].clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(a).resize((size, size), Image.NEAREST))
