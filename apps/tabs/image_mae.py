"""Demo tab: mask a chest X-ray and see what the shipped image MAE fills in (UI over
:class:`~maskworks.core.tasks.reconstruct.ImageReconstructor`, as ``maskworks predict image-mae``)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=1)
def reconstructor():
    """The shipped image MAE, loaded once (on the GPU when there is one)."""
    from maskworks.core.tasks.reconstruct import ImageReconstructor
    from maskworks.data import data_path

    return ImageReconstructor.load(data_path("weights", "image-mae-cxr.safetensors"))


def reconstruct(image: str | None, ratio: float, seed: int):
    """(what the encoder sees, the reconstruction, text, JSON report) for one uploaded image."""
    import gradio as gr
    from maskworks.core.io import InputError
    from maskworks.core.masking.viz import draw_mask
    from maskworks.core.tasks.reconstruct import to_uint8
    from PIL import Image

    if not image:
        raise gr.Error("Upload an image (PNG or JPEG) or pick the example first.")
    rec = reconstructor()
    try:
        r = rec.predict_file(image, float(ratio), int(seed))
    except InputError as e:  # clear the last image's result and keep the reason on the page
        gr.Warning(e.short())
        return None, None, f"⚠ **Cannot use {e.short()}**", {}
    a = r.image[0, 0].cpu().numpy()
    masked = np.asarray(Image.fromarray(draw_mask(a, r.mask.mask[0].cpu(), grid_lines=False)).resize((256, 256), Image.NEAREST))
    mse = r.mse
    text = (f"**{Path(image).name}**: {r.mask.num_masked} of {r.mask.num_tokens} patches hidden; masked-patch MSE "
            f"**{mse['maskworks MAE']:.4f}** (copying the nearest visible patch: {mse['nearest visible patch']:.4f}; "
            f"the mean visible pixel: {mse['mean visible pixel']:.4f}). The model sees the image at {rec.size} px.")
    return masked, to_uint8(r.recon), text, r.to_json()


def build_tab() -> None:
    import gradio as gr
    from maskworks.apps.mask_gallery import default_image

    gr.Markdown("The shipped MAE was pre-trained on 539 NIH chest X-rays at 64 px "
                "(`maskworks train image-mae-cxr`). It sees only the visible patches.")
    with gr.Row():
        image = gr.File(label="chest X-ray (PNG/JPEG)", value=str(default_image()), file_types=[".png", ".jpg", ".jpeg"],
                        elem_id="mae-input")
        masked = gr.Image(label="what the encoder sees", height=256, elem_id="mae-masked")
        recon = gr.Image(label="reconstruction", height=256, elem_id="mae-recon")
    with gr.Row():
        ratio = gr.Slider(0.1, 0.95, value=0.75, step=0.05, label="mask ratio")
        seed = gr.Number(value=0, precision=0, label="seed")
        go = gr.Button("Reconstruct", variant="primary", elem_id="mae-go")
    info = gr.Markdown(elem_id="mae-info")
    report = gr.JSON(label="report (as `maskworks predict image-mae` writes it)", visible=False)
    go.click(reconstruct, [image, ratio, seed], [masked, recon, info, report], api_name="image_mae")
