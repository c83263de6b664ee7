"""Demo tab: NeRF-MAE on radiance grids. Upload a mesh, a NeRF-MAE grid (.npz) or a zip of posed images
(transforms.json + images; a radiance field is fitted first), or pick a shipped grid; see slices of the
grid, the masked grid, the reconstruction and the nearest-visible-patch baseline, and rendered views of
the original and the reconstruction with their PSNR. Runs :mod:`maskworks.domains.nerf.reconstruct`, the
same job as ``maskworks predict nerf/reconstruct``.
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

UPLOAD_TYPES = [".npz", ".ply", ".obj", ".glb", ".stl", ".off", ".zip"]


@lru_cache(maxsize=1)
def reconstructor():
    """The shipped NeRF-MAE, loaded once (GPU when present)."""
    from maskworks.domains.nerf.reconstruct import GridReconstructor

    return GridReconstructor.load()


def examples() -> dict[str, Path]:
    """Shipped inputs: the example meshes and the grids the model was pre-trained on."""
    from maskworks.data import data_path

    out: dict[str, Path] = {}
    try:
        for p in sorted(data_path("nerf", "grids").glob("*.npz")):
            kind = "fitted scene" if p.stem in ("lego_160", "fox_270x480") else "mesh grid"
            out[f"{p.stem} ({kind}, .npz)"] = p
        for p in sorted(data_path("nerf", "meshes").iterdir()):
            out[f"{p.name} (mesh)"] = p
    except FileNotFoundError:
        pass
    return out


def summary(j: dict) -> str:
    """Markdown lines for a result's JSON (what the page shows above the pictures)."""
    m, b = j["model"], j["nearest_visible_patch"]
    views = "; ".join(f"view {i + 1}: **{v['psnr_recon']:.2f} dB** (nearest patch {v['psnr_baseline']:.2f} dB)"
                      for i, v in enumerate(j["views"]))
    cut = f" (voxels below alpha {j['render_min_alpha']:g} hidden in all three)" if j["render_min_alpha"] else ""
    lines = [f"**{j['name']}**: grid {' x '.join(map(str, j['grid_resolution']))} -> {j['model_side']}^3 for the model; "
             f"{j['masked_patches']} of {(j['model_side'] // 4) ** 3} patches hidden ({j['masking']}, seed {j['seed']}).",
             "",
             "| hidden voxels | NeRF-MAE | nearest visible patch |", "|---|---|---|",
             f"| loss (RGB + alpha) | {m['loss']:.4f} | {b['loss']:.4f} |",
             f"| RGB MSE (alpha > 0.01) | {m['rgb_mse']:.4f} | {b['rgb_mse']:.4f} |",
             f"| alpha MSE | {m['alpha_mse']:.4f} | {b['alpha_mse']:.4f} |",
             "", f"Render PSNR against the original{cut}: {views}."]
    lines += [f"- {n}" for n in j["notes"]]
    return "\n".join(lines)


def run(path: str | None, ratio: float, masking: str, seed: float, min_alpha: float = 0.1, progress=None):
    """(markdown, slices image, views image, downloads, JSON) for one file; bad input -> gr.Error."""
    import gradio as gr

    from maskworks.core.io import InputError
    from maskworks.domains.nerf.reconstruct import slices_image, views_image

    if not path:
        raise gr.Error("Upload a mesh, a .npz grid or a zip of posed images, or pick a shipped example.")

    def fit_progress(step: int, total: int, rec: dict) -> None:
        if progress is not None:
            progress(step / total, desc=f"fitting a radiance field: step {step}/{total}, train PSNR {rec['psnr']:.1f} dB")

    try:
        result = reconstructor().predict_file(path, float(ratio), masking, int(seed), render_min_alpha=float(min_alpha),
                                              progress=fit_progress)
    except InputError as e:
        raise gr.Error(e.short()) from None
    j = result.to_json()
    out = Path(tempfile.mkdtemp(prefix="maskworks-nerf-"))
    base = out / Path(path).name.split(".")[0]
    files = result.write(base)
    jpath = base.with_name(base.name + ".json")
    jpath.write_text(json.dumps(j, indent=2))
    return summary(j), slices_image(result), views_image(result), [str(f) for f in [jpath, *files]], j


def build_tab() -> None:
    """Creates the tab's components."""
    import gradio as gr

    gr.Markdown("NeRF-MAE on radiance grids (RGB + density on a voxel grid): 4^3 patches of a 32^3 grid hidden and "
                "filled in by the shipped model (a small MONAI Swin encoder + UNETR-style decoder, pre-trained on the "
                "8 shipped grids; see the README for what it learned). Upload a **mesh** (.ply, .obj, .glb, .stl, .off; "
                "y up), a **NeRF-MAE grid** (.npz with `rgbsigma`), or a **zip** of `transforms.json` + images (a voxel "
                "radiance field is fitted first: about a minute), or pick a shipped example.")
    ex = examples()
    path = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="mesh, .npz grid or .zip of posed images", type="filepath", file_types=UPLOAD_TYPES,
                             elem_id="nerf-upload")
            default = next((k for k in ex if k.startswith("spot (")), next(iter(ex), None))
            example = gr.Dropdown(list(ex), value=default, label="or a shipped example", elem_id="nerf-example")
            ratio = gr.Slider(0.25, 0.9, value=0.75, step=0.05, label="fraction of patches hidden", elem_id="nerf-ratio")
            masking = gr.Radio(["random", "grid_block"], value="random", label="masking (grid_block: 2x2x2-patch blocks)",
                               elem_id="nerf-masking")
            seed = gr.Number(0, precision=0, label="mask seed", elem_id="nerf-seed")
            min_alpha = gr.Slider(0.0, 0.5, value=0.1, step=0.05, elem_id="nerf-min-alpha",
                                  label="views only: hide voxels below this alpha (0 shows the model's low-alpha fog)")
            go = gr.Button("Reconstruct example", variant="primary", elem_id="nerf-example-go")
            info = gr.Markdown(elem_id="nerf-info")
            files = gr.File(label="downloads: JSON, reconstruction .npz, pictures", file_count="multiple",
                            elem_id="nerf-downloads")
        with gr.Column(scale=2):
            views = gr.Image(label="rendered views: original | NeRF-MAE | nearest visible patch", elem_id="nerf-views")
            slices = gr.Image(label="slices (rows: original, masked input, NeRF-MAE, nearest patch)", elem_id="nerf-slices")
            js = gr.JSON(label="result (as `maskworks predict nerf/reconstruct` writes it)", elem_id="nerf-json")
    outputs = [info, slices, views, files, js]

    def handler(p, r, m, s, a, progress=gr.Progress()):
        return run(p, r, m, s, a, progress)

    def from_example(name):
        if name not in ex:
            raise gr.Error("No shipped examples found (data/nerf).")
        return str(ex[name])

    def clear():
        return "", None, None, None, None

    # old outputs are cleared first, so an error never leaves the previous file's pictures on show
    go.click(from_example, example, path).then(clear, None, outputs).then(handler, [path, ratio, masking, seed, min_alpha], outputs, api_name="nerf_reconstruct")
    upload.upload(lambda f: f, upload, path).then(clear, None, outputs).then(handler, [path, ratio, masking, seed, min_alpha], outputs)


def launch(host: str = "127.0.0.1", port: int = 7863, block: bool = True):
    """This tab on its own (binds 127.0.0.1, caps uploads at 25 MB, one model call at a time)."""
    from maskworks.apps.demo import launch_tab

    return launch_tab("NeRF-MAE on radiance grids", build_tab, host, port, "25mb", block)


if __name__ == "__main__":
    launch()
