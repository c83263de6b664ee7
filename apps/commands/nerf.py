"""``maskworks`` commands of the NeRF domain: fit a radiance grid, reconstruct masked grids, evaluate."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def fit(argv: list[str]) -> int:
    """``maskworks eval nerf/fit SCENE --out DIR``: a voxel radiance field fitted to posed images."""
    from maskworks.domains.nerf.fit import FitConfig, fit_radiance_grid
    from maskworks.domains.nerf.grid import write_grid
    from maskworks.domains.nerf.scenes import read_posed_images

    d = FitConfig()
    p = argparse.ArgumentParser(prog="maskworks eval nerf/fit", description=
                                "Fit an explicit voxel radiance field (density + RGB, DVGO/Plenoxels style) to posed "
                                "images by differentiable volume rendering, on CPU or GPU. Every 10th view (index "
                                "5, 15, ...) is held out; its PSNR is reported. Writes <out>/<name>.npz (NeRF-MAE's "
                                "rgbsigma layout), <name>.fit.json and <name>.heldout.png (truth | render).")
    p.add_argument("scene", help="a folder or .zip with transforms.json (or transforms_train.json) and its images")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--name", help="output name (default: the scene's folder or zip name)")
    p.add_argument("--resolution", type=int, default=d.resolution, help="final grid side along the longest axis (default %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps, help="fine optimisation steps (default %(default)s)")
    p.add_argument("--coarse-steps", type=int, default=d.coarse_steps, help="coarse steps that find the object (default %(default)s)")
    p.add_argument("--rays", type=int, default=d.rays, help="rays per step (default %(default)s)")
    p.add_argument("--samples", type=int, default=d.samples, help="samples per ray (default %(default)s)")
    p.add_argument("--downscale", type=int, default=1, help="divide the image resolution by this (default 1)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: the machine is shared)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ray sampling (default 0)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    scene = read_posed_images(a.scene, downscale=a.downscale)
    cfg = FitConfig(resolution=a.resolution, steps=a.steps, coarse_steps=a.coarse_steps, rays=a.rays,
                    samples=a.samples, seed=a.seed)
    name = a.name or Path(a.scene).name.removesuffix(".zip")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    def show(step: int, total: int, rec: dict) -> None:
        print(f"step {step}/{total} {rec['stage']} res {rec['resolution']} train PSNR {rec['psnr']:.2f} dB "
              f"({rec['seconds']} s)", flush=True)

    res = fit_radiance_grid(scene, cfg, progress=show)
    write_grid(out / f"{name}.npz", res.grid)
    body = {"scene": str(a.scene), "downscale": a.downscale, **res.to_json(), "config": vars(cfg) | {"growth": list(cfg.growth)}}
    (out / f"{name}.fit.json").write_text(json.dumps(body, indent=2))
    if res.renders:
        import numpy as np
        from PIL import Image

        rows = [np.concatenate([t, r], 1) for t, r in res.renders[:3]]
        Image.fromarray((np.concatenate(rows, 0) * 255).round().astype(np.uint8)).save(out / f"{name}.heldout.png")
    print(json.dumps(body, indent=2))
    return 0
