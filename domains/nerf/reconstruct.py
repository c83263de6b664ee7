"""The reconstruction job: any input -> its grid -> 75 % of its 4^3 patches hidden -> NeRF-MAE fills them in.

One read -> predict -> write module for the tab, ``maskworks predict nerf/reconstruct`` and Python users.
Reports the masked-voxel errors of the model and of the nearest-visible-patch baseline (NeRF-MAE's loss
terms: alpha MSE on hidden valid voxels, RGB MSE where the target alpha > 0.01) and renders the original
and the reconstruction from two viewpoints with their PSNR.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from maskworks.core.masking.registry import build_masking

from .grid import ALPHA_THRESHOLD, RadianceGrid, write_grid
from .inputs import read_input
from .nerf_mae import PATCH, nearest_visible_patch, nerf_mae_loss, voxel_mask
from .pretrain import cube_box, model_input
from .render import orbit_camera, psnr, render

SHIPPED_WEIGHTS = "shipped:weights/nerf-mae.safetensors"
VIEWS = ((35.0, 25.0), (215.0, 25.0))  # (azimuth, elevation) in degrees
RENDER_MIN_ALPHA = 0.1  # renders empty voxels below this alpha (all three grids alike); errors never do


def cube_grid(rgba: np.ndarray, grid: RadianceGrid) -> RadianceGrid:
    """A model-side ``[4, S, S, S]`` grid as a :class:`RadianceGrid` over the padded cube around ``grid``'s box."""
    lo, hi = cube_box(grid, rgba.shape[-1])
    return RadianceGrid.from_alpha(np.moveaxis(rgba[:3], 0, -1), rgba[3], lo, hi, grid.source)


def masked_errors(pred: np.ndarray, target: np.ndarray, hidden: np.ndarray, valid: np.ndarray) -> dict:
    """NeRF-MAE's loss terms on one grid (``[4, S, S, S]`` arrays; masks ``[S, S, S]``)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]
    total, rgb, alpha = nerf_mae_loss(t(pred), t(target), t(hidden)[:, None] if hidden.ndim == 3 else t(hidden),
                                      t(valid)[:, None])
    return {"loss": float(total), "rgb_mse": float(rgb), "alpha_mse": float(alpha)}


@dataclass
class ReconstructionResult:
    name: str
    grid: RadianceGrid            # as read (full resolution)
    x: np.ndarray                 # [4, S, S, S] model input
    valid: np.ndarray             # [S, S, S]
    hidden: np.ndarray            # [S, S, S] voxels of masked patches
    recon: np.ndarray             # [4, S, S, S] visible copied, hidden predicted
    baseline: np.ndarray          # [4, S, S, S] hidden copied from the nearest visible patch
    model_errors: dict
    baseline_errors: dict
    views: list[dict]             # per view: psnr of reconstruction and baseline vs original
    images: dict[str, np.ndarray] = field(default_factory=dict)  # view renders
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        occ = float(((self.x[3] > ALPHA_THRESHOLD) & self.valid).sum() / max(1, self.valid.sum()))
        return {"name": self.name, "grid_resolution": list(self.grid.resolution), "model_side": int(self.x.shape[-1]),
                "bbox_min": self.grid.bbox_min.tolist(), "bbox_max": self.grid.bbox_max.tolist(),
                "occupied_fraction": round(occ, 4), **self.settings,
                "masked_patches": int(self.hidden.reshape(-1).sum() // PATCH ** 3),
                "model": {k: round(v, 6) for k, v in self.model_errors.items()},
                "nearest_visible_patch": {k: round(v, 6) for k, v in self.baseline_errors.items()},
                "views": self.views, "notes": self.notes}

    def reconstruction_grid(self) -> RadianceGrid:
        return cube_grid(self.recon, self.grid)

    def write(self, base: Path) -> list[Path]:
        from PIL import Image

        base = Path(base)
        base.parent.mkdir(parents=True, exist_ok=True)
        out = [write_grid(base.with_name(base.name + ".reconstruction.npz"), self.reconstruction_grid())]
        for key, img in (("slices", slices_image(self)), ("views", views_image(self))):
            p = base.with_name(f"{base.name}.{key}.png")
            Image.fromarray(img).save(p)
            out.append(p)
        return out


def _show(rgba: np.ndarray, bg: float = 0.12) -> np.ndarray:
    """``[4, a, b]`` slice -> RGB over a dark background by alpha."""
    a = np.clip(rgba[3], 0, 1)[..., None]
    return np.moveaxis(rgba[:3], 0, -1) * a + bg * (1 - a)


def slices_image(r: ReconstructionResult, cell: int = 160) -> np.ndarray:
    """Rows: original, masked input (hidden patches blue), reconstruction, nearest-patch baseline; columns:
    the x-y slice through the most occupied height, the x-z and y-z slices through the centre."""
    from PIL import Image, ImageDraw

    s = r.x.shape[-1]
    occ = (r.x[3] > ALPHA_THRESHOLD).sum((0, 1))
    zc = int(occ.argmax()) if occ.any() else s // 2
    masked = r.x * ~r.hidden[None]
    rows = [("original", r.x), ("masked input", masked), ("NeRF-MAE", r.recon), ("nearest patch", r.baseline)]
    cuts = [(f"x-y at z={zc}", lambda a: a[:, :, :, zc]), (f"x-z at y={s // 2}", lambda a: a[:, :, s // 2, :]),
            (f"y-z at x={s // 2}", lambda a: a[:, s // 2, :, :])]
    label_w, head_h = 110, 44
    canvas = Image.new("RGB", (label_w + cell * len(cuts), head_h + cell * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, (title, _) in enumerate(cuts):
        draw.text((label_w + j * cell + 6, head_h - 16), title, fill=(0, 0, 0))
    hid = {"x-y": lambda h: h[:, :, zc], "x-z": lambda h: h[:, s // 2, :], "y-z": lambda h: h[s // 2, :, :]}
    for i, (name, vol) in enumerate(rows):
        draw.text((6, head_h + i * cell + cell // 2 - 6), name, fill=(0, 0, 0))
        for j, (title, cut) in enumerate(cuts):
            img = _show(cut(vol))
            if name == "masked input":
                h = hid[title[:3]](r.hidden)[..., None]
                img = np.where(h, np.array([0.55, 0.7, 0.95]) * 0.6 + img * 0.4, img)
            pic = Image.fromarray((np.clip(np.rot90(img), 0, 1) * 255).astype(np.uint8)).resize((cell - 4, cell - 4), Image.NEAREST)
            canvas.paste(pic, (label_w + j * cell + 2, head_h + i * cell + 2))
    return np.asarray(canvas)


def views_image(r: ReconstructionResult, cell: int = 192) -> np.ndarray:
    """Rows: viewpoints; columns: original, NeRF-MAE reconstruction, nearest-patch baseline (PSNR vs original)."""
    from PIL import Image, ImageDraw

    cols = [("original", "original"), ("NeRF-MAE", "recon"), ("nearest patch", "baseline")]
    head_h = 44  # room for the app's label over the picture
    canvas = Image.new("RGB", (cell * len(cols), head_h + (cell + 16) * len(r.views)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, (title, _) in enumerate(cols):
        draw.text((j * cell + 6, head_h - 16), title, fill=(0, 0, 0))
    for i, v in enumerate(r.views):
        y0 = head_h + i * (cell + 16)
        for j, (title, key) in enumerate(cols):
            pic = Image.fromarray((r.images[f"{key}_{i}"] * 255).round().astype(np.uint8)).resize((cell - 4, cell - 4))
            canvas.paste(pic, (j * cell + 2, y0))
            text = f"az {v['azimuth']:.0f} el {v['elevation']:.0f}" if key == "original" else \
                f"PSNR {v['psnr_' + key]:.2f} dB"
            draw.text((j * cell + 6, y0 + cell - 2), text, fill=(0, 0, 0))
    return np.asarray(canvas)


class GridReconstructor:
    """A trained NeRF-MAE (shipped by default) and how to mask: ``predict_file`` / ``predict_grid``."""

    def __init__(self, model: torch.nn.Module, cfg: dict | None = None, device: torch.device | str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.cfg = cfg or {}
        self.device = torch.device(device)

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | torch.device | None = None) -> "GridReconstructor":
        from maskworks.core.io import resolve_shipped
        from maskworks.core.training.task import load_trained

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        task, model = load_trained(resolve_shipped(weights or SHIPPED_WEIGHTS), device)
        return cls(model, task.cfg, device)

    @property
    def side(self) -> int:
        return int(self.model.input_size)

    def predict_grid(self, grid: RadianceGrid, name: str = "grid", mask_ratio: float = 0.75, masking: str = "random",
                     seed: int = 0, render_size: int = 128, render_min_alpha: float = RENDER_MIN_ALPHA) -> ReconstructionResult:
        """``render_min_alpha`` > 0 renders all three grids (original, reconstruction, baseline) with voxels
        below that alpha emptied: the model spreads alpha of 0.01-0.1 over empty space, which renders as fog
        (the errors in the JSON are always on the unaltered grids)."""
        spec = {"name": masking, "ratio": mask_ratio} | ({"block": 2} if masking == "grid_block" else {})
        strategy = build_masking(spec)
        x, valid = model_input(grid, self.side)
        g = self.model.grid
        mask = strategy(1, g, generator=torch.Generator().manual_seed(seed))
        xt = torch.from_numpy(x)[None].to(self.device)
        with torch.no_grad():
            recon = self.model.reconstruct(xt, mask.to(self.device))[0].float().cpu().numpy()
        base = nearest_visible_patch(torch.from_numpy(x)[None], mask)[0].numpy()
        recon, base = recon * valid, base * valid  # the padding is known to be empty
        hidden = voxel_mask(mask)[0, 0].numpy()
        res = ReconstructionResult(name, grid, x, valid, hidden, recon, base,
                                   masked_errors(recon, x, hidden, valid), masked_errors(base, x, hidden, valid), [],
                                   settings={"mask_ratio": mask_ratio, "masking": masking, "seed": seed,
                                             "render_min_alpha": render_min_alpha},
                                   notes=list(grid.notes))
        res.notes += calibration_notes(x, valid)
        cut = lambda a: np.concatenate([a[:3], np.where(a[3:] < render_min_alpha, 0.0, a[3:])]) if render_min_alpha > 0 else a
        grids = {"original": cube_grid(cut(x), grid), "recon": cube_grid(cut(recon), grid),
                 "baseline": cube_grid(cut(base), grid)}
        for i, (az, el) in enumerate(VIEWS):
            cam = orbit_camera(grids["original"], az, el, render_size)
            imgs = {k: render(v, cam, device=self.device) for k, v in grids.items()}
            res.images.update({f"{k}_{i}": v for k, v in imgs.items()})
            res.views.append({"azimuth": az, "elevation": el, "psnr_recon": round(psnr(imgs["recon"], imgs["original"]), 3),
                              "psnr_baseline": round(psnr(imgs["baseline"], imgs["original"]), 3)})
        return res

    def predict_file(self, path: str | Path, mask_ratio: float = 0.75, masking: str = "random", seed: int = 0,
                     resolution: int = 64, up: str = "y", render_min_alpha: float = RENDER_MIN_ALPHA,
                     progress: Callable[[int, int, dict], None] | None = None) -> ReconstructionResult:
        grid = read_input(path, resolution=resolution, up=up, progress=progress)
        return self.predict_grid(grid, Path(path).name, mask_ratio, masking, seed, render_min_alpha=render_min_alpha)


# the shipped (pre-training) grids fill 6 % (lego) to 59 % (fox, with its wall) of their valid region at 32^3
OCCUPANCY_RANGE = (0.02, 0.75)


def calibration_notes(x: np.ndarray, valid: np.ndarray) -> list[str]:
    """Say so when a grid is unlike the object grids the model was pre-trained on."""
    occ = float(((x[3] > ALPHA_THRESHOLD) & valid).sum() / max(1, valid.sum()))
    notes = []
    if occ < OCCUPANCY_RANGE[0]:
        notes.append(f"Only {occ:.1%} of the grid is occupied: the model was pre-trained on grids that fill 6-59 % "
                     "of their box; expect a poor reconstruction.")
    elif occ > OCCUPANCY_RANGE[1]:
        notes.append(f"{occ:.0%} of the grid is occupied (a dense scene or a fog-like field): the model was pre-trained "
                     "on grids that fill 6-59 % of their box; treat its output with care.")
    return notes


def to_json_text(result: ReconstructionResult) -> str:
    return json.dumps(result.to_json(), indent=2)
