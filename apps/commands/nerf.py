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


def _reconstruct_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="a NeRF-MAE model.safetensors or its run folder (default: the shipped model)")
    p.add_argument("--mask-ratio", type=float, default=0.75, help="fraction of 4^3 patches hidden (default %(default)s)")
    p.add_argument("--masking", choices=["random", "grid_block"], default="random",
                   help="random patches (NeRF-MAE) or 2x2x2-patch blocks (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask (default 0)")
    p.add_argument("--resolution", type=int, default=64, help="voxels along a mesh's longest side before the model's "
                   "resampling (default %(default)s)")
    p.add_argument("--up", choices=["y", "z"], default="y", help="a mesh's up axis (default y, as glTF/most OBJ/PLY)")
    p.add_argument("--render-min-alpha", type=float, default=0.1, help="for the rendered views only, empty voxels below "
                   "this alpha in all three grids (the model spreads alpha 0.01-0.1 over empty space, which renders as "
                   "fog; default %(default)s, 0 renders the grids as they are). The errors are never affected")


def reconstruct(argv: list[str]) -> int:
    """``maskworks predict nerf/reconstruct FILES --out DIR``."""
    from maskworks.apps.commands.common import add_batch_options, run_predict
    from maskworks.domains.nerf.inputs import SUFFIXES
    from maskworks.domains.nerf.reconstruct import GridReconstructor

    p = argparse.ArgumentParser(prog="maskworks predict nerf/reconstruct", description=
                                "Hide 75 %% of a radiance grid's 4^3 patches and let NeRF-MAE fill them in. Inputs: "
                                "NeRF-MAE grids (.npz, rgbsigma layout), meshes (.ply .obj .glb .stl .off: occupancy + "
                                "surface colour) or zips of transforms.json + images (a radiance field is fitted first, "
                                "about a minute on a CPU). Writes <name>.json (masked-voxel errors of the model and of "
                                "the nearest-visible-patch baseline, render PSNRs), <name>.reconstruction.npz, "
                                "<name>.slices.png and <name>.views.png.")
    add_batch_options(p, "grids (.npz), meshes or zips of posed images")
    _reconstruct_options(p)
    a = p.parse_args(argv)
    job = GridReconstructor.load(a.weights, a.device)

    def describe(item, r) -> str:
        j = r.to_json()
        return (f"{item.path}: masked-voxel loss {j['model']['loss']:.4f} (nearest patch {j['nearest_visible_patch']['loss']:.4f}); "
                f"render PSNR {j['views'][0]['psnr_recon']:.2f} dB")

    return run_predict(a, SUFFIXES, lambda path: job.predict_file(path, a.mask_ratio, a.masking, a.seed, a.resolution, a.up, a.render_min_alpha),
                       "nerf/reconstruct", describe)


class _GridResult:
    def __init__(self, grid) -> None:
        self.grid = grid

    def to_json(self) -> dict:
        g = self.grid
        return {"resolution": list(g.resolution), "bbox_min": g.bbox_min.tolist(), "bbox_max": g.bbox_max.tolist(),
                "occupied_voxels": int((g.alpha > 0.01).sum()), "notes": g.notes}

    def write(self, base: Path) -> list[Path]:
        from maskworks.domains.nerf.grid import write_grid

        return [write_grid(base.with_name(base.name + ".grid.npz"), self.grid)]


def grid(argv: list[str]) -> int:
    """``maskworks predict nerf/grid FILES --out DIR``: inputs -> NeRF-MAE .npz grids."""
    from maskworks.apps.commands.common import add_batch_options, run_predict
    from maskworks.domains.nerf.inputs import SUFFIXES, read_input

    p = argparse.ArgumentParser(prog="maskworks predict nerf/grid", description=
                                "Turn meshes (.ply .obj .glb .stl .off) and zips of transforms.json + images into "
                                "radiance grids in NeRF-MAE's .npz layout (rgbsigma [X, Y, Z, 4], raw log-density; "
                                "bbox_min, bbox_max, resolution). .npz inputs are checked and rewritten.")
    add_batch_options(p, "meshes, zips of posed images or .npz grids")
    p.add_argument("--resolution", type=int, default=64, help="voxels along a mesh's longest side (default %(default)s)")
    p.add_argument("--up", choices=["y", "z"], default="y", help="a mesh's up axis (default y)")
    a = p.parse_args(argv)
    return run_predict(a, SUFFIXES, lambda path: _GridResult(read_input(path, a.resolution, a.up)), "nerf/grid")


def _inputs(entries: list[str], suffixes: tuple[str, ...]) -> list[Path]:
    from maskworks.core.io import resolve_shipped

    out: list[Path] = []
    for e in entries:
        p = resolve_shipped(e)
        out += sorted(q for q in p.rglob("*") if q.suffix.lower() in suffixes) if p.is_dir() else [p]
    return out


def evaluate_reconstruction(argv: list[str]) -> int:
    """``maskworks eval nerf/reconstruction INPUTS``: masked-voxel error, NeRF-MAE vs nearest visible patch."""
    import numpy as np

    from maskworks.core.io import InputError
    from maskworks.domains.nerf.inputs import SUFFIXES, read_input
    from maskworks.domains.nerf.reconstruct import GridReconstructor

    p = argparse.ArgumentParser(prog="maskworks eval nerf/reconstruction", description=
                                "Masked reconstruction error of NeRF-MAE against the nearest-visible-patch baseline "
                                "(NeRF-MAE's loss terms on hidden valid voxels: alpha MSE, and RGB MSE where the target "
                                "alpha > 0.01), over several masks per input, and the render PSNR of both.")
    p.add_argument("inputs", nargs="+", help="grids, meshes or folders of them (shipped:nerf/grids for the shipped ones)")
    p.add_argument("--masks", type=int, default=4, help="masks (seeds 0..N-1) per input (default %(default)s)")
    p.add_argument("--out", help="write the per-input figures to this JSON file")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    _reconstruct_options(p)
    a = p.parse_args(argv)
    job = GridReconstructor.load(a.weights, a.device)
    rows = []
    for f in _inputs(a.inputs, SUFFIXES):
        try:
            g = read_input(f, a.resolution, a.up)
        except InputError as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        for s in range(a.masks):
            r = job.predict_grid(g, f.name, a.mask_ratio, a.masking, s, render_min_alpha=a.render_min_alpha).to_json()
            rows.append({"input": f.name, "seed": s, "model": r["model"], "baseline": r["nearest_visible_patch"],
                         "psnr_model": float(np.mean([v["psnr_recon"] for v in r["views"]])),
                         "psnr_baseline": float(np.mean([v["psnr_baseline"] for v in r["views"]]))})
        last = rows[-a.masks:]
        print(f"{f.name}: loss {np.mean([x['model']['loss'] for x in last]):.4f} vs nearest patch "
              f"{np.mean([x['baseline']['loss'] for x in last]):.4f}; render PSNR "
              f"{np.mean([x['psnr_model'] for x in last]):.2f} vs {np.mean([x['psnr_baseline'] for x in last]):.2f} dB", flush=True)
    if not rows:
        print("no readable inputs", file=sys.stderr)
        return 2
    mean = lambda k, m: float(np.mean([x[k][m] for x in rows]))
    summary = {"inputs": len(rows) // a.masks, "masks_per_input": a.masks, "mask_ratio": a.mask_ratio, "masking": a.masking,
               "render_min_alpha": a.render_min_alpha,
               "model": {m: mean("model", m) for m in ("loss", "rgb_mse", "alpha_mse")},
               "nearest_visible_patch": {m: mean("baseline", m) for m in ("loss", "rgb_mse", "alpha_mse")},
               "render_psnr_model_db": float(np.mean([x["psnr_model"] for x in rows])),
               "render_psnr_baseline_db": float(np.mean([x["psnr_baseline"] for x in rows])),
               "model_better_on": sum(x["model"]["loss"] < x["baseline"]["loss"] for x in rows), "of": len(rows)}
    print(json.dumps(summary, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    return 0


def evaluate_labelling(argv: list[str]) -> int:
    """``maskworks eval nerf/labelling``: voxel labelling, pre-trained NeRF-MAE vs random init."""
    from maskworks.core.io import resolve_shipped
    from maskworks.core.training.task import load_trained
    from maskworks.domains.nerf.labelling import labelled_grid, pretrained_vs_scratch
    from maskworks.domains.nerf.mesh import MESH_SUFFIXES

    p = argparse.ArgumentParser(prog="maskworks eval nerf/labelling", description=
                                "Downstream task: label every voxel of a mesh's grid as empty, inside, or surface facing "
                                "up / down / sideways, from the RGB + alpha grid alone. Fine-tunes the same Swin + "
                                "UNETR network twice with the same data, steps and seed, once from the NeRF-MAE "
                                "weights and once from random init, and reports mean IoU over the four occupied "
                                "classes on the test meshes.")
    p.add_argument("--train", nargs="+", required=True, help="labelled training meshes (files or folders)")
    p.add_argument("--test", nargs="+", required=True, help="test meshes (files or folders): none of them should have "
                   "been in the pre-training set")
    p.add_argument("--z-up", nargs="*", default=[], help="mesh names (stems) whose up axis is z (default: y for all)")
    p.add_argument("--weights", default="shipped:weights/nerf-mae.safetensors", help="pre-trained NeRF-MAE (Swin) weights")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps for each model (default %(default)s)")
    p.add_argument("--batch", type=int, default=4, help="grids per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, cosine decay (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, sampling and augmentation (default 0)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--out", help="write the figures to this JSON file")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    _, model = load_trained(resolve_shipped(a.weights))
    side = int(model.input_size)
    load = lambda files: [labelled_grid(f, side, "z" if f.stem in a.z_up else "y") for f in files]
    train, test = load(_inputs(a.train, MESH_SUFFIXES)), load(_inputs(a.test, MESH_SUFFIXES))
    overlap = {t.name for t in train} & {t.name for t in test}
    if overlap:
        print(f"maskworks eval nerf/labelling: {sorted(overlap)} in both --train and --test", file=sys.stderr)
        return 2
    res = pretrained_vs_scratch(model, train, test, a.steps, a.batch, a.lr, a.seed,
                                progress=lambda init, s, l: print(f"{init} step {s}/{a.steps} loss {l:.4f}", flush=True))
    res["weights"] = a.weights
    print(json.dumps({k: v for k, v in res.items()}, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))
    return 0
