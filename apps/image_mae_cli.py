"""``maskworks eval image-mae`` and ``maskworks predict image-mae``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from maskworks.core.masking import Mask, gather_tokens


def _default_weights() -> str:
    """The user's own run when there is one, else the shipped model."""
    own = Path("runs/image-mae-cxr/model.safetensors")
    if own.is_file():
        return str(own)
    from maskworks.data import data_path

    return str(data_path("weights", "image-mae-cxr.safetensors"))


def baseline_predictions(patches: torch.Tensor, mask: Mask, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Two training-free in-painters for the masked patches: the image's mean visible pixel, and a
    copy of the nearest visible patch on the grid."""
    b, n, p = patches.shape
    vis = ~mask.flat
    mean = (patches * vis[..., None]).sum((1, 2)) / (vis.sum(1) * p)
    mean_pred = mean[:, None, None].expand(b, mask.num_masked, p)
    yy, xx = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], -1).float()
    d = torch.cdist(pos, pos)  # [N, N]
    d = d[None].expand(b, n, n).clone()
    d.masked_fill_(~vis[:, None, :], float("inf"))  # only visible sources
    nearest = d.argmin(-1)  # [B, N]
    near_pred = gather_tokens(patches, torch.gather(nearest, 1, mask.ids_mask))
    return {"mean visible pixel": mean_pred, "nearest visible patch": near_pred}


def evaluate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="maskworks eval image-mae", description=
                                "Masked-patch reconstruction error of a trained image MAE on a data folder "
                                "(images/ + labels.csv), next to two training-free baselines on the same masks.")
    p.add_argument("--weights", help="model.safetensors or its run folder (default: runs/image-mae-cxr, else the shipped model)")
    p.add_argument("--data", help="data folder (default: the one the model was trained on)")
    p.add_argument("--split", help="split to evaluate (default: the recipe's validation split)")
    p.add_argument("--repeats", type=int, default=3, help="masks drawn per image (seeded)")
    p.add_argument("--json", help="write the results here too")
    a = p.parse_args(argv)
    from maskworks.core.datasets import LabelledImageFolder
    from maskworks.core.losses import masked_mse
    from maskworks.core.tasks.image_mae import resolve_data_root
    from maskworks.core.training.task import load_trained

    task, model = load_trained(a.weights or _default_weights())
    d = task.cfg["data"]
    root = Path(a.data) if a.data else resolve_data_root(d["root"])
    split = a.split if a.split is not None else (d.get("val_split") if not a.data else None)
    ds = LabelledImageFolder(root, split=split, size=int(d["size"]), channels=int(d.get("channels", 1)))
    g = torch.Generator().manual_seed(0)
    sums: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for _ in range(a.repeats):
            for i in range(0, len(ds), 64):
                x = ds.images[i:i + 64]
                mask = model.make_mask(x.shape[0], g)
                patches = model.patchify(x)
                target = gather_tokens(patches, mask.ids_mask)
                preds = {"maskworks MAE": model(x, mask).pred}
                if model.norm_pix_loss:  # compare in pixel space
                    t = target
                    preds["maskworks MAE"] = preds["maskworks MAE"] * (t.var(-1, keepdim=True) + 1e-6) ** 0.5 + t.mean(-1, keepdim=True)
                preds |= baseline_predictions(patches, mask, model.grid)
                for k, v in preds.items():
                    sums[k] = sums.get(k, 0.0) + float(masked_mse(v, target)) * x.shape[0]
                count += x.shape[0]
    res = {k: v / count for k, v in sums.items()}
    out = {"data": str(root), "split": split, "images": len(ds), "repeats": a.repeats,
           "mask_ratio": model.masking.ratio, "masked_patch_mse": res}
    print(f"{len(ds)} images from {root} (split {split}), {a.repeats} masks each at {model.masking.ratio:.0%}:")
    print("| predictor | masked-patch MSE |\n|---|---|")
    for k, v in sorted(res.items(), key=lambda kv: kv[1]):
        print(f"| {k} | {v:.5f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


def predict(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="maskworks predict image-mae", description=
                                "Mask each image, reconstruct it with a trained image MAE, and write "
                                "<name>_reconstruction.png and <name>.json (masked-patch MSE) to --out.")
    p.add_argument("files", nargs="+", help="PNG/JPEG images")
    p.add_argument("--weights", help="model.safetensors or its run folder (default: runs/image-mae-cxr, else the shipped model)")
    p.add_argument("--out", default="predictions", help="output folder (default %(default)s, created)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random mask (default 0; the same seed, the same mask)")
    a = p.parse_args(argv)
    from maskworks.core.datasets import DataLayoutError, load_image
    from maskworks.core.training.task import load_trained
    from maskworks.core.viz import save_reconstruction_grid

    task, model = load_trained(a.weights or _default_weights())
    d = task.cfg["data"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for f in a.files:
        try:
            x = load_image(f, int(d.get("channels", 1)), int(d["size"]))[None]
        except DataLayoutError as e:
            print(f"skipped: {e}")
            failed += 1
            continue
        mask = model.make_mask(1, torch.Generator().manual_seed(a.seed))
        with torch.no_grad():
            loss = float(model(x, mask).loss)
            recon = model.reconstruct(x, mask)
        stem = Path(f).stem
        save_reconstruction_grid(x, mask, recon, out / f"{stem}_reconstruction.png")
        (out / f"{stem}.json").write_text(json.dumps({"file": str(f), "masked_patch_loss": loss,
                                                     "mask_ratio": mask.ratio}, indent=2))
        print(f"{f}: masked-patch loss {loss:.4f} -> {out / (stem + '_reconstruction.png')}")
    return 1 if failed == len(a.files) else 0
